#!/bin/sh
# registry_large.sh BIN_DIR BENCH_DIR - `reg query` processes against an HKLM of 1,000,000 keys
# (made by BENCH_DIR/registry_large) and against a hive holding only the queried keys.
set -eu

PARENTS=${IMS_BENCH_PARENTS:-1000} # keys under HKLM\Software\IMS Bench\Large
LEAVES=${IMS_BENCH_LEAVES:-1000}   # subkeys of each of them, a REG_SZ value each
RUNS=${IMS_BENCH_RUNS:-200}        # timed warm processes per command
WARMUP=20
COLD_RUNS=${IMS_BENCH_COLD_RUNS:-20}  # timed processes with the hive out of the page cache
FILL_LIMIT=${IMS_BENCH_FILL_LIMIT:-600} # seconds the big tree may take to make

if [ $# -ne 2 ]; then
    echo "usage: $0 BIN_DIR BENCH_DIR" >&2
    exit 2
fi
BIN=$1
BENCH=$2
HERE=$(cd "$(dirname "$0")" && pwd)
if [ ! -x "$BENCH/registry_large" ] || [ ! -x "$BIN/reg" ]; then
    echo "registry_large.sh: build first (make): need $BENCH/registry_large and $BIN/reg" >&2
    exit 1
fi
# shellcheck source=bench/timecmd.sh
. "$HERE/timecmd.sh"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ims-bench-large-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

MID=$((PARENTS / 2))
PARENT=$(printf 'HKLM\\Software\\IMS Bench\\Large\\Parent%04d' "$MID")
LEAF=$(printf '%s\\Key%04d' "$PARENT" $((LEAVES / 2)))
BIG=$WORK/big
SMALL=$WORK/small
mkdir -p "$BIG" "$SMALL"

echo "== making the trees (HKLM\\Software\\IMS Bench\\Large)"
echo "big:   $PARENTS parents x $LEAVES leaves (at most $FILL_LIMIT s)"
timeout "$FILL_LIMIT" "$BENCH/registry_large" "$BIG" 0 "$PARENTS" "$LEAVES"
echo "small: only Parent$(printf %04d "$MID") and its $LEAVES leaves"
"$BENCH/registry_large" "$SMALL" "$MID" 1 "$LEAVES"
for h in big small; do
    f=$WORK/$h/registry/HKLM/data.mdb
    printf '%-6s data.mdb %s bytes (%s)\n' "$h:" "$(stat -c %s "$f")" "$(du -h "$f" | cut -f1)"
done
echo

TRUE=/bin/true
[ -x "$TRUE" ] || TRUE=/usr/bin/true
row() { printf '%-44s %5s %9s %9s %9s   %s\n' "$@"; }
# on HIVE LABEL RUNS WARMUP CMD... - time_cmd with IMS_ROOT at the big or the small registry.
on() {
    IMS_ROOT=$WORK/$1
    export IMS_ROOT
    shift
    time_cmd "$@"
}

echo "== warm: the hive in the page cache (goal: about 1 ms over the /bin/true floor)"
echo "value:   $BIN/reg query '$LEAF' /v Path"
echo "listing: $BIN/reg query '$PARENT' (1 value, $LEAVES subkeys)"
row command runs "mean ms" "p50 ms" "p95 ms" timer
time_cmd "$TRUE (process start floor)" "$RUNS" "$WARMUP" "$TRUE"
time_cmd "reg /? (start, no registry access)" "$RUNS" "$WARMUP" "$BIN/reg" '/?'
# Big and small alternate, so that a busy machine slows both alike.
for round in 1 2; do
    for h in big small; do
        on "$h" "$h: value (round $round)" "$RUNS" "$WARMUP" \
            "$BIN/reg" query "$LEAF" /v Path
    done
    for h in big small; do
        on "$h" "$h: listing (round $round)" "$RUNS" "$WARMUP" \
            "$BIN/reg" query "$PARENT"
    done
done
echo

echo "== cold: data.mdb dropped from the page cache before each run (as after a boot)"
row command runs "mean ms" "p50 ms" "p95 ms" "per run"
for h in big small; do
    f=$WORK/$h/registry/HKLM/data.mdb
    IMS_ROOT=$WORK/$h
    export IMS_ROOT
    python3 "$HERE/registry_cold.py" "$h: value" "$COLD_RUNS" "$f" \
        "$BIN/reg" query "$LEAF" /v Path
    python3 "$HERE/registry_cold.py" "$h: listing" "$COLD_RUNS" "$f" \
        "$BIN/reg" query "$PARENT"
done
