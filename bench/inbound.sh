#!/bin/sh
# inbound.sh BIN_DIR - inbound mail benchmark: imsd against a private, equally durable Postfix on
# loopback, both driven by smtp-source; prints a table (text and markdown), asserts nothing. Root.
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 BIN_DIR  (env: IMS_BENCH_SCALE=1 IMS_BENCH_ROUNDS=2 IMS_BENCH_IDLE=500 IMS_BENCH_HOLD=5)" >&2
    exit 2
fi
BIN=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
ME=inbound.sh
# shellcheck source=bench/servers.sh
. "$HERE/servers.sh"
REPO=$(dirname "$HERE")
IDLE=${IMS_BENCH_IDLE:-500} # idle connections held open against each server
ACCOUNT=nobody              # imsd's service account; Postfix's virtual(8) delivers as it too
# Sessions either server takes at once: above the load's 100 sessions and the idle connections.
SESSION_LIMIT=$((IDLE + 200))

if [ "$(id -u)" != 0 ]; then
    echo "inbound.sh: run as root (Postfix's master and imsd's install need it)" >&2
    exit 1
fi
for f in "$BIN/imsd" "$BIN/imsctl" "$BIN/imsadm" "$BIN/reg" /usr/sbin/smtp-source /usr/sbin/postfix; do
    if [ ! -x "$f" ]; then
        echo "inbound.sh: need $f (make; sh tools/deps.sh installs postfix)" >&2
        exit 1
    fi
done

# Both servers and the client inherit this: K idle connections take K descriptors in imsd.
# (ulimit -n is not POSIX, but dash and bash, Debian's sh and bash, both have it.)
want=$((IDLE + 1024))
# shellcheck disable=SC3045
nofile=$(ulimit -n)
if [ "$nofile" != unlimited ] && [ "$nofile" -lt "$want" ]; then
    # shellcheck disable=SC3045
    ulimit -n "$want" 2>/dev/null || echo "inbound.sh: cannot raise the descriptor limit" >&2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ims-bench-inbound-XXXXXX")
chmod 0755 "$WORK" # imsd (as nobody) and Postfix's daemons (as postfix) must traverse it
export IMS_ROOT="$WORK/imsd"
export IMS_MAPISVC="$REPO/data/mapisvc.inf"
PF="$WORK/postfix"
UID_NOBODY=$(id -u "$ACCOUNT")
GID_NOBODY=$(id -g "$ACCOUNT")


# --- imsd ---------------------------------------------------------------------------------

imsd_setup() {
    mkdir -m 0755 "$IMS_ROOT"
    IMSD_PORT=$(free_port)
    "$BIN/imsctl" install --account "$ACCOUNT" --listen "127.0.0.1:$IMSD_PORT" >/dev/null
    "$BIN/imsadm" domain add example.com >/dev/null
    "$BIN/imsadm" mailbox add bench --address bench@example.com >/dev/null
    # The same session limit as Postfix's smtpd process limit below (imsd's default is 30).
    "$BIN/reg" add 'HKLM\System\CurrentControlSet\Services\MSExchangeIMC\Parameters' \
        /v MaxInboundConnections /t REG_DWORD /d "$SESSION_LIMIT" /f >/dev/null
    # smtp-source sends from one address: no per-client limits (as Postfix's anvil has none
    # for its mynetworks by default).
    for v in MaxConnectionsPerClient MaxConnectionRatePerClient MaxMessageRatePerClient \
        MaxRecipientRatePerClient; do
        "$BIN/reg" add 'HKLM\System\CurrentControlSet\Services\MSExchangeIMC\Parameters' /v "$v" /t REG_DWORD /d 0 /f >/dev/null
    done
    "$BIN/imsctl" start >/dev/null
}

pf_setup() {
    mkdir -p "$PF/etc" "$PF/spool" "$PF/data" "$PF/mail"
    chown postfix:postfix "$PF/data"
    chown "$UID_NOBODY:$GID_NOBODY" "$PF/mail"
    PF_PORT=$(free_port)
    cat >"$PF/etc/main.cf" <<EOF
# A private instance for bench/inbound.sh: loopback only, virtual(8) Maildir delivery.
compatibility_level = 3.6
queue_directory = $PF/spool
data_directory = $PF/data
maillog_file = $PF/maillog
maillog_file_prefixes = $PF
myhostname = bench.localdomain
mydomain = localdomain
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
smtpd_peername_lookup = no
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
in_flow_delay = 0
virtual_mailbox_domains = example.com
virtual_mailbox_base = $PF/mail
virtual_mailbox_maps = texthash:$PF/etc/vmailbox
virtual_uid_maps = static:$UID_NOBODY
virtual_gid_maps = static:$GID_NOBODY
EOF
    echo "bench@example.com bench/" >"$PF/etc/vmailbox"
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
        echo "inbound.sh: postfix check failed:" >&2
        postfix -c "$PF/etc" check >&2 || true
        exit 1
    }
    pf_start
}

cleanup() {
    set +e
    imsd_stop
    pf_stop
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

imsd_setup
pf_setup
echo "inbound.sh: imsd on 127.0.0.1:$IMSD_PORT (IMS_ROOT=$IMS_ROOT), Postfix $(postconf -d -h mail_version)" \
    "on 127.0.0.1:$PF_PORT (config $PF/etc); $(nproc) CPUs" >&2

servers() {
    echo --imsd "$IMSD_PORT" "$IMS_ROOT/store/bench" "$IMS_ROOT/run/imsd.pid" \
        --postfix "$PF_PORT" "$PF/mail/bench" "$PF/spool/pid/master.pid"
}
# shellcheck disable=SC2046
python3 "$HERE/inbound.py" load $(servers) --out "$WORK/load.json"

# The idle test starts both servers afresh, so that nothing left from the load (Postfix's
# idle smtpd processes, imsd's grown heap) is counted or reused.
imsd_stop
pf_stop
"$BIN/imsctl" start >/dev/null
pf_start
sleep 1
# shellcheck disable=SC2046
python3 "$HERE/inbound.py" idle $(servers) --out "$WORK/idle.json"

echo
python3 "$HERE/inbound.py" report "$WORK/load.json" "$WORK/idle.json"
