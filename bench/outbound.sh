#!/bin/sh
# outbound.sh BIN_DIR - outbound (relay) benchmark: smtp-source -> imsd or a private, equally
# durable Postfix -> smtp-sink, all on loopback; prints a table (text and markdown), asserts
# nothing. Root.
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 BIN_DIR  (env: IMS_BENCH_SCALE=1 IMS_BENCH_ROUNDS=2 IMS_BENCH_WAIT=60 IMS_BENCH_STALL=15 IMS_BENCH_POINTS='100x4 20x64' IMS_BENCH_PERF=DIR)" >&2
    exit 2
fi
BIN=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
ME=outbound.sh
# shellcheck source=bench/servers.sh
. "$HERE/servers.sh"
REPO=$(dirname "$HERE")
ACCOUNT=nobody # imsd's service account; the sinks run as it too
# Sessions either server takes at once: above the load's 100 sessions.
SESSION_LIMIT=200
# The same outbound limits for both servers: connections to one destination (here the sink,
# every message's next hop) and connections in all. imsd's defaults are 10 and 100; Postfix's
# default_destination_concurrency_limit is 20, default_process_limit 100.
PER_HOST=20
OUTBOUND=100
# The command line, for the report.
COMMAND="IMS_BENCH_SCALE=${IMS_BENCH_SCALE:-1} IMS_BENCH_ROUNDS=${IMS_BENCH_ROUNDS:-2}${IMS_BENCH_POINTS:+ IMS_BENCH_POINTS=\"$IMS_BENCH_POINTS\"} sh bench/outbound.sh $1"

if [ "$(id -u)" != 0 ]; then
    echo "outbound.sh: run as root (Postfix's master and imsd's install need it)" >&2
    exit 1
fi
for f in "$BIN/imsd" "$BIN/imsctl" "$BIN/imsadm" "$BIN/reg" /usr/sbin/smtp-source \
    /usr/sbin/smtp-sink /usr/sbin/postfix; do
    if [ ! -x "$f" ]; then
        echo "outbound.sh: need $f (make; sh tools/deps.sh installs postfix)" >&2
        exit 1
    fi
done

# 100 client sessions, as many inbound on the server, up to 100 outbound, and the sinks'.
# (ulimit -n is not POSIX, but dash and bash, Debian's sh and bash, both have it.)
want=4096
# shellcheck disable=SC3045
nofile=$(ulimit -n)
if [ "$nofile" != unlimited ] && [ "$nofile" -lt "$want" ]; then
    # shellcheck disable=SC3045
    ulimit -n "$want" 2>/dev/null || echo "outbound.sh: cannot raise the descriptor limit" >&2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ims-bench-outbound-XXXXXX")
chmod 0755 "$WORK" # imsd (as nobody) and Postfix's daemons (as postfix) must traverse it
export IMS_ROOT="$WORK/imsd"
export IMS_MAPISVC="$REPO/data/mapisvc.inf"
PF="$WORK/postfix"
SINK_PIDS=""


wait_port() { # wait (at most 5 s) until 127.0.0.1:$1 accepts connections
    python3 -c '
import socket, sys, time
end = time.monotonic() + 5
while True:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        break
    except OSError:
        if time.monotonic() > end:
            sys.exit("outbound.sh: nothing listens on 127.0.0.1:" + sys.argv[1])
        time.sleep(0.05)' "$1"
}

# --- the sinks: one smtp-sink per server, its running counter (-c) into a file ------------
sink_start() { # sink_start NAME: sets SINK_PORT; the counter goes to $WORK/sink-NAME.out
    SINK_PORT=$(free_port)
    # -u: as root it must drop privileges; -m: more sessions at once than either server opens.
    /usr/sbin/smtp-sink -4 -c -u "$ACCOUNT" -m 512 "127.0.0.1:$SINK_PORT" 1024 \
        >"$WORK/sink-$1.out" 2>"$WORK/sink-$1.err" </dev/null &
    SINK_PIDS="$SINK_PIDS $!"
    wait_port "$SINK_PORT" || {
        cat "$WORK/sink-$1.err" >&2
        exit 1
    }
}

sinks_stop() {
    for p in $SINK_PIDS; do
        kill "$p" 2>/dev/null || true
        kill -CONT "$p" 2>/dev/null || true # a stopped sink must get its SIGTERM too
    done
    for p in $SINK_PIDS; do
        wait "$p" 2>/dev/null || true
    done
    SINK_PIDS=""
}

# --- imsd ---------------------------------------------------------------------------------

par() { # par NAME TYPE DATA: one value of imsd's Parameters
    "$BIN/reg" add 'HKLM\System\CurrentControlSet\Services\MSExchangeIMC\Parameters' \
        /v "$1" /t "$2" /d "$3" /f >/dev/null
}

imsd_setup() {
    mkdir -m 0755 "$IMS_ROOT"
    IMSD_PORT=$(free_port)
    "$BIN/imsctl" install --account "$ACCOUNT" --listen "127.0.0.1:$IMSD_PORT" >/dev/null
    "$BIN/imsadm" domain add example.com >/dev/null # a local domain; remote.test is not one
    par RelayFlags REG_DWORD 2                     # relay for the clients of RelayAllowList
    par RelayAllowList REG_MULTI_SZ 127.0.0.1
    par SmartHost REG_SZ "[127.0.0.1]:$IMSD_SINK"   # all remote mail to the sink
    par MaxInboundConnections REG_DWORD "$SESSION_LIMIT" # the default of 30 refuses 100 sessions
    par MaxConnectionsPerClient REG_DWORD 0 # the load comes from one address
    par MaxConnectionRatePerClient REG_DWORD 0 # the load comes from one address
    par MaxMessageRatePerClient REG_DWORD 0 # the load comes from one address
    par MaxRecipientRatePerClient REG_DWORD 0 # the load comes from one address
    par MaxConnectionsPerHost REG_DWORD "$PER_HOST"
    par MaxOutboundConnections REG_DWORD "$OUTBOUND"
    "$BIN/imsctl" start >/dev/null
}

pf_setup() {
    mkdir -p "$PF/etc" "$PF/spool" "$PF/data"
    chown postfix:postfix "$PF/data"
    PF_PORT=$(free_port)
    cat >"$PF/etc/main.cf" <<EOF
# A private instance for bench/outbound.sh: loopback only, relaying for 127.0.0.0/8 through
# the relay host (the sink); nothing is delivered locally.
compatibility_level = 3.6
queue_directory = $PF/spool
data_directory = $PF/data
maillog_file = $PF/maillog
maillog_file_prefixes = $PF
myhostname = bench.localdomain
mydomain = localdomain
mydestination =
relay_domains =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_transport = error:no local delivery
default_transport = smtp
relayhost = [127.0.0.1]:$PF_SINK
default_process_limit = $OUTBOUND
default_destination_concurrency_limit = $PER_HOST
smtp_destination_concurrency_limit = $PER_HOST
smtpd_peername_lookup = no
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
in_flow_delay = 0
EOF
    # Upstream Postfix's master.cf (no chroot), only the services a Postfix always has, and
    # the SMTP listener on our port with a process limit above what the benchmark opens.
    cat >"$PF/etc/master.cf" <<EOF
127.0.0.1:$PF_PORT inet n - n - $SESSION_LIMIT smtpd
pickup     unix  n - n 60    1 pickup
cleanup    unix  n - n -     0 cleanup
qmgr       unix  n - n 300   1 qmgr
rewrite    unix  - - n -     - trivial-rewrite
bounce     unix  - - n -     0 bounce
defer      unix  - - n -     0 bounce
trace      unix  - - n -     0 bounce
verify     unix  - - n -     1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -     - proxymap
proxywrite unix  - - n -     1 proxymap
smtp       unix  - - n -     - smtp
relay      unix  - - n -     - smtp
showq      unix  n - n -     - showq
error      unix  - - n -     - error
retry      unix  - - n -     - error
discard    unix  - - n -     - discard
local      unix  - n n -     - local
virtual    unix  - n n -     - virtual
lmtp       unix  - - n -     - lmtp
anvil      unix  - - n -     1 anvil
scache     unix  - - n -     1 scache
postlog    unix-dgram n - n - 1 postlogd
EOF
    postfix -c "$PF/etc" check >/dev/null 2>&1 || {
        echo "outbound.sh: postfix check failed:" >&2
        postfix -c "$PF/etc" check >&2 || true
        exit 1
    }
    pf_start
}

cleanup() {
    set +e
    imsd_stop
    pf_stop
    sinks_stop
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sink_start imsd
IMSD_SINK=$SINK_PORT
sink_start postfix
PF_SINK=$SINK_PORT
imsd_setup
pf_setup
echo "outbound.sh: imsd on 127.0.0.1:$IMSD_PORT (IMS_ROOT=$IMS_ROOT) -> smtp-sink" \
    "127.0.0.1:$IMSD_SINK; Postfix $(postconf -d -h mail_version) on 127.0.0.1:$PF_PORT" \
    "(config $PF/etc) -> smtp-sink 127.0.0.1:$PF_SINK; $(nproc) CPUs" >&2

IMS_BENCH_COMMAND=$COMMAND python3 "$HERE/outbound.py" load \
    --imsd "$IMSD_PORT" "$IMS_ROOT/run/imsd.pid" "$WORK/sink-imsd.out" \
    --postfix "$PF_PORT" "$PF/spool/pid/master.pid" "$WORK/sink-postfix.out" \
    --out "$WORK/load.json"

echo
python3 "$HERE/outbound.py" report "$WORK/load.json"
