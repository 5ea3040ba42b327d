#!/bin/sh
# queues.sh - the cost of `imsctl queues` with N messages (default 100,000) waiting in Out
# (each deferred once, next try a day away): imsd's start until the queue is loaded, its
# memory, then the listing as JSON, as text, the summary by domain, a filter and one id.
# Timings printed, never asserted. Run as root (the service account is nobody) or as a user.
# Usage: sh bench/queues.sh [BIN_DIR] [N]   (default build/bin, 100000)
set -eu
BIN=${1:-build/bin}
N=${2:-100000}
ME=queues.sh
HERE=$(dirname "$0")
. "$HERE/servers.sh"
ROOT=$(mktemp -d "${TMPDIR:-/tmp}/ims-queues-bench.XXXXXX")
chmod 0755 "$ROOT"
export IMS_ROOT="$ROOT"
trap 'imsd_stop; rm -rf "$ROOT"' EXIT INT TERM

ms() { # wall time of one run, in milliseconds (output discarded)
    s=$(date +%s%N)
    "$@" >/dev/null
    e=$(date +%s%N)
    echo $(((e - s) / 1000000))
}

PORT=$(free_port)
if [ "$(id -u)" = 0 ]; then
    "$BIN/imsctl" install --account nobody --listen "127.0.0.1:$PORT" >/dev/null
else
    "$BIN/imsctl" install --listen "127.0.0.1:$PORT" >/dev/null
fi
echo "$ME: generating $N messages in $ROOT/imcdata/Out"
/usr/bin/python3 "$HERE/queuegen.py" "$ROOT/imcdata/Out" "$N"
[ "$(id -u)" = 0 ] && chown -R nobody "$ROOT/imcdata"
du -sh "$ROOT/imcdata/Out" | sed 's/^/queue size: /'
sync

loaded() {
    "$BIN/imsctl" stats --json 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["counters"]["queue_messages.outbound"])' 2>/dev/null || echo 0
}
s=$(date +%s%N)
"$BIN/imsctl" start >/dev/null
ready=$(date +%s%N)
i=0
while [ "$(loaded)" != "$N" ] && [ $i -lt 1200 ]; do # bounded: 2 minutes
    sleep 0.1
    i=$((i + 1))
done
e=$(date +%s%N)
echo "start: ready after $(((ready - s) / 1000000)) ms, the $N messages loaded after $(((e - s) / 1000000)) ms"
pid=$(imsd_pid)
grep VmRSS "/proc/$pid/status" | sed 's/^/imsd memory: /'

for i in 1 2 3; do echo "queues --json (all $N): $(ms "$BIN/imsctl" queues --json) ms"; done
for i in 1 2; do echo "queues (text): $(ms "$BIN/imsctl" queues) ms"; done
echo "queues --summary: $(ms "$BIN/imsctl" queues --summary) ms"
echo "queues --domain d7.test ($((N / 50)) messages): $(ms "$BIN/imsctl" queues --domain d7.test) ms"
id=$("$BIN/imsctl" queues --json --domain d7.test | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
echo "queues --id $id: $(ms "$BIN/imsctl" queues --id "$id") ms"
echo "hold, release of one message: $(ms "$BIN/imsctl" queues hold "$id") ms, $(ms "$BIN/imsctl" queues release "$id") ms"
"$BIN/imsctl" queues --summary | head -4
