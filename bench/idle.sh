#!/bin/sh
# idle.sh BIN_DIR - 10,000 idle connections held by imsd without harm to active sessions: memory
# and CPU per idle connection, and smtp-source's throughput with and without them. Root; asserts nothing.
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 BIN_DIR  (env: IMS_BENCH_IDLE=10000 IMS_BENCH_ROUNDS=3 IMS_BENCH_MSGS=2000" \
        "IMS_BENCH_SESSIONS=20 IMS_BENCH_SIZE=4096 IMS_BENCH_HOLD=5 IMS_BENCH_SOURCES=8" \
        "IMS_BENCH_GAP=5 IMS_BENCH_PERF=DIR)" >&2
    exit 2
fi
BIN=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
ME=idle.sh
# shellcheck source=bench/servers.sh
. "$HERE/servers.sh"
REPO=$(dirname "$HERE")
IDLE=${IMS_BENCH_IDLE:-10000}
ACCOUNT=nobody
# Above the K idle and the load's sessions: none of the load may get a 421.
SESSION_LIMIT=$((IDLE + 200))

if [ "$(id -u)" != 0 ]; then
    echo "idle.sh: run as root (imsd's install runs the service as $ACCOUNT)" >&2
    exit 1
fi
for f in "$BIN/imsd" "$BIN/imsctl" "$BIN/imsadm" "$BIN/reg" /usr/sbin/smtp-source; do
    if [ ! -x "$f" ]; then
        echo "idle.sh: need $f (make; sh tools/deps.sh installs postfix, for smtp-source)" >&2
        exit 1
    fi
done

# imsd and the client inherit this: K idle connections take K descriptors on each side. imsd
# raises its soft limit to the hard one, so the hard limit is what counts for it.
want=$((IDLE + 1024))
# shellcheck disable=SC3045
hard=$(ulimit -H -n)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then
    # shellcheck disable=SC3045
    ulimit -n "$want" 2>/dev/null || echo "idle.sh: cannot raise the descriptor limit to $want" >&2
else
    # shellcheck disable=SC3045
    ulimit -S -n "$want" 2>/dev/null || true
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ims-bench-idle-XXXXXX")
chmod 0755 "$WORK" # imsd (as nobody) must traverse it
export IMS_ROOT="$WORK/imsd"
export IMS_MAPISVC="$REPO/data/mapisvc.inf"

cleanup() {
    set +e
    imsd_stop
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -m 0755 "$IMS_ROOT"
PORT=$(free_port)
"$BIN/imsctl" install --account "$ACCOUNT" --listen "127.0.0.1:$PORT" >/dev/null
"$BIN/imsadm" domain add example.com >/dev/null
"$BIN/imsadm" mailbox add bench --address bench@example.com >/dev/null
"$BIN/reg" add 'HKLM\System\CurrentControlSet\Services\MSExchangeIMC\Parameters' \
    /v MaxInboundConnections /t REG_DWORD /d "$SESSION_LIMIT" /f >/dev/null
# Every connection comes from 127.0.0.1: no per-client limits; and no stress mode, which would
# cut the idle connections this benchmark holds (StressThreshold 0).
for v in MaxConnectionsPerClient MaxConnectionRatePerClient MaxMessageRatePerClient \
    MaxRecipientRatePerClient StressThreshold; do
    "$BIN/reg" add 'HKLM\System\CurrentControlSet\Services\MSExchangeIMC\Parameters' /v "$v" /t REG_DWORD /d 0 /f >/dev/null
done
"$BIN/imsctl" start >/dev/null
pid=$(imsd_pid)
nofile=$(awk '/^Max open files/ { print $4 }' "/proc/$pid/limits")
echo "idle.sh: imsd (pid $pid) on 127.0.0.1:$PORT (IMS_ROOT=$IMS_ROOT), K = $IDLE," \
    "MaxInboundConnections = $SESSION_LIMIT, imsd's open files limit $nofile; $(nproc) CPUs" >&2
if [ "$nofile" != unlimited ] && [ "$nofile" -lt "$((IDLE + 200))" ]; then
    echo "idle.sh: imsd may open only $nofile files, fewer than K + 200" >&2
fi

python3 "$HERE/idle.py" run --port "$PORT" --maildir "$IMS_ROOT/store/bench" \
    --pidfile "$IMS_ROOT/run/imsd.pid" --imsctl "$BIN/imsctl" --out "$WORK/idle.json"
