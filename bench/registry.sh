#!/bin/sh
# registry.sh BIN_DIR BENCH_DIR - the registry benchmark: the library (BENCH_DIR/registry), then
# whole `reg query` processes against a fresh IMS_ROOT, and Wine's reg.exe for comparison.
set -eu

RUNS=200        # timed `reg query` processes
WARMUP=20       # untimed runs before them
WINE_RUNS=20    # timed `wine reg query` processes
WINE_WARMUP=3
KEY='HKLM\Bench\Key'
NAME=Name
DATA='C:\Program Files\IMS\bin\imsd.exe'

if [ $# -ne 2 ]; then
    echo "usage: $0 BIN_DIR BENCH_DIR" >&2
    exit 2
fi
BIN=$1
BENCH=$2
if [ ! -x "$BENCH/registry" ] || [ ! -x "$BIN/reg" ]; then
    echo "registry.sh: build first (make): need $BENCH/registry and $BIN/reg" >&2
    exit 1
fi

echo "== library: $BENCH/registry"
"$BENCH/registry"
echo

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ims-bench-sh-XXXXXX")
WINEPFX=
cleanup() {
    if [ -n "$WINEPFX" ]; then
        WINEPREFIX=$WINEPFX wineserver -k >/dev/null 2>&1 || true
        [ -z "${IMS_WINE_PREFIX:-}" ] && rm -rf "$WINEPFX"
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# time_cmd LABEL RUNS WARMUP CMD... - run CMD (output discarded) RUNS times after WARMUP
# untimed runs; print one table row: runs, mean, p50, p95 in ms. hyperfine when present
# (unless IMS_BENCH_TIMER=python), otherwise a loop of subprocess.run timed with
# perf_counter, which adds a little of Python's own process-spawning cost.
time_cmd() {
    label=$1 runs=$2 warmup=$3
    shift 3
    if [ "${IMS_BENCH_TIMER:-}" != python ] && command -v hyperfine >/dev/null 2>&1; then
        # hyperfine -N splits its command like a shell: quote every word.
        quoted=
        for w in "$@"; do
            quoted="$quoted '$w'"
        done
        if ! hyperfine -N --style none --warmup "$warmup" --runs "$runs" \
            --export-json "$WORK/hf.json" "$quoted" >/dev/null 2>"$WORK/hf.err"; then
            cat "$WORK/hf.err" >&2
            return 1
        fi
        python3 - "$label" "$WORK/hf.json" <<'EOF'
import json, statistics, sys
times = sorted(t * 1e3 for t in json.load(open(sys.argv[2]))["results"][0]["times"])
rank = lambda q: times[max(0, min(len(times) - 1, -(-len(times) * q // 100) - 1))]
print(f"{sys.argv[1]:<44} {len(times):5} {statistics.mean(times):9.2f} {rank(50):9.2f} "
      f"{rank(95):9.2f}   hyperfine")
EOF
    else
        python3 - "$label" "$runs" "$warmup" "$@" <<'EOF'
import statistics, subprocess, sys, time
label, runs, warmup, cmd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
def once():
    t0 = time.perf_counter()
    subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    return (time.perf_counter() - t0) * 1e3
for _ in range(warmup):
    once()
times = sorted(once() for _ in range(runs))
rank = lambda q: times[max(0, min(len(times) - 1, -(-len(times) * q // 100) - 1))]
print(f"{label:<44} {len(times):5} {statistics.mean(times):9.2f} {rank(50):9.2f} "
      f"{rank(95):9.2f}   python perf_counter")
EOF
    fi
}

echo "== whole processes (goal: reg query <= 5 ms; Wine's reg.exe ~70 ms)"
export IMS_ROOT="$WORK/root"
mkdir -p "$IMS_ROOT"
"$BIN/reg" add "$KEY" /v "$NAME" /d "$DATA" /f >/dev/null
printf '%-44s %5s %9s %9s %9s   %s\n' "command" "runs" "mean ms" "p50 ms" "p95 ms" "timer"
# The floor: what starting any process costs on this machine.
TRUE=/bin/true
[ -x "$TRUE" ] || TRUE=/usr/bin/true
time_cmd "$TRUE (process start floor)" "$RUNS" "$WARMUP" "$TRUE"
time_cmd "reg /? (start, no registry access)" "$RUNS" "$WARMUP" "$BIN/reg" '/?'
time_cmd "reg query $KEY /v $NAME" "$RUNS" "$WARMUP" "$BIN/reg" query "$KEY" /v "$NAME"

if command -v wine >/dev/null 2>&1 && command -v wineserver >/dev/null 2>&1; then
    WINEPFX=${IMS_WINE_PREFIX:-$WORK/wineprefix}
    export WINEPREFIX="$WINEPFX" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
    unset DISPLAY # headless
    mkdir -p "$WINEPFX"
    # A persistent server (~70 ms a call instead of ~0.5 s), started with no pipes open:
    # Wine's services inherit the descriptors of the call that starts them.
    wineserver -p60 </dev/null >/dev/null 2>&1 || true
    if [ ! -e "$WINEPFX/system.reg" ]; then
        echo "   (making a Wine prefix in $WINEPFX, ~10 s)" >&2
        wineboot -i </dev/null >/dev/null 2>&1
    fi
    wine reg add "$KEY" /v "$NAME" /d "$DATA" /f </dev/null >/dev/null 2>&1
    time_cmd "wine reg query $KEY /v $NAME" "$WINE_RUNS" "$WINE_WARMUP" \
        wine reg query "$KEY" /v "$NAME"
else
    echo "wine reg query: wine is not installed, not measured"
fi
echo
echo "commands: $BIN/reg query '$KEY' /v $NAME (IMS_ROOT=$IMS_ROOT);" \
    "wine reg query '$KEY' /v $NAME (wineserver -p)"
