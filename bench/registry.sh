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

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/timecmd.sh
. "$HERE/timecmd.sh"

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
