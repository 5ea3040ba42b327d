#!/bin/sh
# track.sh - the cost of `imsctl track --message-id X` in 30 days of Tracking.log holding
# 1,000,000 events (or EVENTS in DAYS): cold (no index: it is built), warm (the index read), and without the
# index at all (IMS_TRACK_NO_INDEX=1: every file read whole). Timings printed, never asserted.
# Usage: sh bench/track.sh [BIN_DIR] [EVENTS] [DAYS]   (default build/bin, 1000000, 30)
set -eu
BIN=${1:-build/bin}
EVENTS=${2:-1000000}
DAYS=${3:-30}
SINCE=$(date -u -d "-$((DAYS - 1)) days" +%Y-%m-%d)
HERE=$(dirname "$0")
ROOT=$(mktemp -d "${TMPDIR:-/tmp}/ims-track-bench.XXXXXX")
trap 'rm -rf "$ROOT"' EXIT INT TERM
export IMS_ROOT="$ROOT"
echo "generating $EVENTS events in $DAYS day files under $ROOT"
/usr/bin/python3 "$HERE/trackgen.py" "$ROOT" "$EVENTS" "$DAYS"
du -sh "$ROOT/Tracking.log" | sed 's/^/log size: /'

# ms - wall time of one run of the command, in milliseconds (output discarded).
ms() {
    s=$(date +%s%N)
    "$@" > /dev/null
    e=$(date +%s%N)
    echo $(( (e - s) / 1000000 ))
}
track() { "$BIN/imsctl" track --message-id "<bench-target@client.test>" --since "$SINCE"; }

sync
echo "cold (index built): $(ms track) ms"
track | head -5
du -sh "$ROOT/Tracking.log/.index" | sed 's/^/index size: /'
for i in 1 2 3 4 5; do
    echo "warm run $i: $(ms track) ms"
done
rm -rf "$ROOT/Tracking.log/.index"
for i in 1 2 3; do
    echo "no index (IMS_TRACK_NO_INDEX=1) run $i: $(IMS_TRACK_NO_INDEX=1 ms track) ms"
done
echo "appended 1000 lines to today's file, then:"
today=$(ls "$ROOT/Tracking.log"/*.log | tail -1)
track > /dev/null
tail -n 1000 "$(ls "$ROOT/Tracking.log"/*.log | head -1)" | sed "s/^..........//; s/^/$(date -u +%Y-%m-%d)/" >> "$today"
echo "tail indexed: $(ms track) ms"
echo "warm again: $(ms track) ms"
