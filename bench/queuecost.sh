#!/bin/sh
# queuecost.sh BIN_DIR [N] - what a big outbound queue costs imsd (issue 14): start-up, memory
# and inbound throughput with N messages (default 100,000) waiting in Out for a destination
# that answers 4xx, against an empty Out; queuecost.py measures. Root; asserts nothing.
set -eu

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 BIN_DIR [N]  (env: IMS_BENCH_ROUNDS=3 IMS_BENCH_DUE_ROUNDS=2 IMS_BENCH_COLD=1)" >&2
    exit 2
fi
BIN=$(cd "$1" && pwd)
N=${2:-100000}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck disable=SC2034 # servers.sh's messages name the script
ME=queuecost.sh
# shellcheck source=bench/servers.sh
. "$HERE/servers.sh"
REPO=$(dirname "$HERE")
ACCOUNT=nobody # imsd's service account; the 4xx destination runs as it too

if [ "$(id -u)" != 0 ]; then
    echo "queuecost.sh: run as root (imsd's install and the page cache drop need it)" >&2
    exit 1
fi
for f in "$BIN/imsd" "$BIN/imsctl" "$BIN/imsadm" "$BIN/reg" /usr/sbin/smtp-source \
    /usr/sbin/smtp-sink; do
    if [ ! -x "$f" ]; then
        echo "queuecost.sh: need $f (make; sh tools/deps.sh installs postfix)" >&2
        exit 1
    fi
done
want=4096 # 20 client sessions, two imsd, their outbound connections: well below
# shellcheck disable=SC3045
nofile=$(ulimit -n)
if [ "$nofile" != unlimited ] && [ "$nofile" -lt "$want" ]; then
    # shellcheck disable=SC3045
    ulimit -n "$want" 2>/dev/null || echo "queuecost.sh: cannot raise the descriptor limit" >&2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ims-bench-queuecost-XXXXXX")
chmod 0755 "$WORK" # imsd runs as nobody
export IMS_MAPISVC="$REPO/data/mapisvc.inf"
SINK_PID=""

cleanup() {
    set +e
    for r in empty full; do
        export IMS_ROOT="$WORK/$r"
        imsd_stop
    done
    if [ -n "$SINK_PID" ]; then
        kill "$SINK_PID" 2>/dev/null
        wait "$SINK_PID" 2>/dev/null
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The destination every queued message is routed to: smtp-sink answering RCPT with a 4xx
# (-r implies no PIPELINING), so a retry that comes due is deferred again.
SINK_PORT=$(free_port)
/usr/sbin/smtp-sink -4 -u "$ACCOUNT" -r RCPT -m 512 "127.0.0.1:$SINK_PORT" 1024 \
    >"$WORK/sink.out" 2>"$WORK/sink.err" </dev/null &
SINK_PID=$!
ROUTE="[127.0.0.1]:$SINK_PORT"

par() { # par NAME TYPE DATA: one value of imsd's Parameters
    "$BIN/reg" add 'HKLM\System\CurrentControlSet\Services\MSExchangeIMC\Parameters' \
        /v "$1" /t "$2" /d "$3" /f >/dev/null
}

setup() { # setup NAME: an installed, stopped imsd in $WORK/NAME; prints its port
    export IMS_ROOT="$WORK/$1"
    mkdir -m 0755 "$IMS_ROOT"
    port=$(free_port)
    "$BIN/imsctl" install --account "$ACCOUNT" --listen "127.0.0.1:$port" >/dev/null
    "$BIN/imsadm" domain add example.com >/dev/null
    "$BIN/imsadm" mailbox add bench --address bench@example.com >/dev/null
    par MaxInboundConnections REG_DWORD 200 # the default of 30 is enough for 20; as inbound.sh
    par MaxConnectionsPerClient REG_DWORD 0 # the load comes from one address
    par MaxConnectionRatePerClient REG_DWORD 0 # the load comes from one address
    par MaxMessageRatePerClient REG_DWORD 0 # the load comes from one address
    par MaxRecipientRatePerClient REG_DWORD 0 # the load comes from one address
    par SmartHost REG_SZ "$ROUTE"           # new remote mail goes where the queued mail does
    par DelayNotification REG_DWORD 0       # no notice to bench@ may land among the counted
    # Start once, so that the spool, the store and the mailbox exist; the queue is made next.
    "$BIN/imsctl" start >/dev/null
    "$BIN/imsctl" stop >/dev/null
    echo "$port"
}
EMPTY_PORT=$(setup empty)
FULL_PORT=$(setup full)
echo "queuecost.sh: imsd (empty Out) $WORK/empty on 127.0.0.1:$EMPTY_PORT, imsd ($N queued)" \
    "$WORK/full on 127.0.0.1:$FULL_PORT, 4xx destination $ROUTE; $(nproc) CPUs" >&2

python3 "$HERE/queuecost.py" --bin "$BIN" --empty "$WORK/empty" "$EMPTY_PORT" \
    --full "$WORK/full" "$FULL_PORT" --route "$ROUTE" --n "$N" --out "$WORK/result.json"
echo
python3 "$HERE/queuecost.py" report "$WORK/result.json"
