#!/bin/sh
# starttls.sh BIN_DIR [BENCH_DIR] - inbound mail over STARTTLS: imsd against a private, equally
# durable Postfix on loopback, both with the same certificate and TLS 1.3, both driven by
# BENCH_DIR/tlsload (default BIN_DIR/../bench): messages/s at 1, 20 and 100 sessions,
# handshakes/s, memory per idle TLS session. Prints tables (text and markdown), asserts
# nothing. Root. The servers are set up as bench/inbound.sh sets them up, plus TLS.
set -eu

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 BIN_DIR [BENCH_DIR]  (env: IMS_BENCH_SCALE=1 IMS_BENCH_ROUNDS=2 IMS_BENCH_IDLE=1000)" >&2
    exit 2
fi
BIN=$(cd "$1" && pwd)
BENCH=$(cd "${2:-$1/../bench}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
ME=starttls.sh
# shellcheck source=bench/servers.sh
. "$HERE/servers.sh"
REPO=$(dirname "$HERE")
IDLE=${IMS_BENCH_IDLE:-1000} # idle TLS sessions held open against each server
ACCOUNT=nobody               # imsd's service account; Postfix's virtual(8) delivers as it too
# Sessions either server takes at once: above the load's 100 sessions and the idle sessions.
SESSION_LIMIT=$((IDLE + 200))

if [ "$(id -u)" != 0 ]; then
    echo "starttls.sh: run as root (Postfix's master and imsd's install need it)" >&2
    exit 1
fi
for f in "$BIN/imsd" "$BIN/imsctl" "$BIN/imsadm" "$BIN/reg" "$BENCH/tlsload" /usr/sbin/postfix; do
    if [ ! -x "$f" ]; then
        echo "starttls.sh: need $f (make; sh tools/deps.sh installs postfix)" >&2
        exit 1
    fi
done

# Both servers and the client inherit this: K idle sessions take K descriptors in imsd and in
# tlsload. (ulimit -n is not POSIX, but dash and bash, Debian's sh and bash, both have it.)
want=$((IDLE + 1024))
# shellcheck disable=SC3045
nofile=$(ulimit -n)
if [ "$nofile" != unlimited ] && [ "$nofile" -lt "$want" ]; then
    # shellcheck disable=SC3045
    ulimit -n "$want" 2>/dev/null || echo "starttls.sh: cannot raise the descriptor limit" >&2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ims-bench-starttls-XXXXXX")
chmod 0755 "$WORK" # imsd (as nobody) and Postfix's daemons (as postfix) must traverse it
export IMS_ROOT="$WORK/imsd"
export IMS_MAPISVC="$REPO/data/mapisvc.inf"
PF="$WORK/postfix"
PKI="$WORK/pki"
UID_NOBODY=$(id -u "$ACCOUNT")
GID_NOBODY=$(id -g "$ACCOUNT")


# --- the certificate: tests/tls_certs.py's PKI, an EC P-256 key, the chain with its CA ------
pki_setup() {
    PYTHONPATH="$REPO/tests" python3 -c 'import sys, tls_certs; tls_certs.make_pki(sys.argv[1])' \
        "$PKI" || {
        echo "starttls.sh: cannot make the certificates (tests/tls_certs.py)" >&2
        exit 1
    }
    CHAIN="$PKI/chain.pem" # the server's certificate, then the CA's
    KEY="$PKI/server.key"
}

# --- imsd ---------------------------------------------------------------------------------

imsd_setup() {
    mkdir -m 0755 "$IMS_ROOT"
    IMSD_PORT=$(free_port)
    "$BIN/imsctl" install --account "$ACCOUNT" --listen "127.0.0.1:$IMSD_PORT" >/dev/null
    "$BIN/imsadm" domain add example.com >/dev/null
    "$BIN/imsadm" mailbox add bench --address bench@example.com >/dev/null
    params='HKLM\System\CurrentControlSet\Services\MSExchangeIMC\Parameters'
    # The same session limit as Postfix's smtpd process limit below (imsd's default is 30).
    "$BIN/reg" add "$params" /v MaxInboundConnections /t REG_DWORD /d "$SESSION_LIMIT" /f >/dev/null
    # The load comes from one address: no per-client limits.
    for v in MaxConnectionsPerClient MaxConnectionRatePerClient MaxMessageRatePerClient \
        MaxRecipientRatePerClient; do
        "$BIN/reg" add "$params" /v "$v" /t REG_DWORD /d 0 /f >/dev/null
    done
    "$BIN/reg" add "$params" /v TlsCertificateFile /t REG_SZ /d "$CHAIN" /f >/dev/null
    "$BIN/reg" add "$params" /v TlsKeyFile /t REG_SZ /d "$KEY" /f >/dev/null
    "$BIN/imsctl" start >/dev/null
}

pf_setup() {
    mkdir -p "$PF/etc" "$PF/spool" "$PF/data" "$PF/mail"
    chown postfix:postfix "$PF/data"
    chown "$UID_NOBODY:$GID_NOBODY" "$PF/mail"
    PF_PORT=$(free_port)
    # inbound.sh's main.cf, and TLS as imsd has it: TLS 1.2 and 1.3, for 1.2 only ECDHE with
    # AES-GCM or ChaCha20 in the server's order, the protocol and cipher in Received.
    cat >"$PF/etc/main.cf" <<EOF
# A private instance for bench/starttls.sh: loopback only, virtual(8) Maildir delivery, STARTTLS.
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
smtpd_tls_security_level = may
smtpd_tls_cert_file = $CHAIN
smtpd_tls_key_file = $KEY
smtpd_tls_protocols = >=TLSv1.2
smtpd_tls_mandatory_protocols = >=TLSv1.2
tls_medium_cipherlist = ECDHE+AESGCM:ECDHE+CHACHA20
tls_preempt_cipherlist = yes
smtpd_tls_received_header = yes
EOF
    echo "bench@example.com bench/" >"$PF/etc/vmailbox"
    # inbound.sh's master.cf (upstream's service list, no chroot) with tlsmgr, which smtpd's
    # TLS asks for its random seed and session ticket keys.
    cat >"$PF/etc/master.cf" <<EOF
127.0.0.1:$PF_PORT inet n - n - $SESSION_LIMIT smtpd
pickup     unix  n - n 60    1 pickup
cleanup    unix  n - n -     0 cleanup
qmgr       unix  n - n 300   1 qmgr
tlsmgr     unix  - - n 1000? 1 tlsmgr
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
        echo "starttls.sh: postfix check failed:" >&2
        postfix -c "$PF/etc" check >&2 || true
        exit 1
    }
    pf_start
}

# The helper runs in the background so that a signal to this shell is handled at once (a
# foreground child would be waited for first); cleanup ends it. Its tlsload ends by itself when
# the servers are gone (or at its -T): its sessions fail, and an idle hold sees EOF.
PY=
py() {
    python3 "$HERE/starttls.py" "$@" &
    PY=$!
    rc=0
    wait "$PY" || rc=$?
    PY=
    return "$rc"
}

cleanup() {
    set +e
    if [ -n "$PY" ]; then
        kill "$PY" 2>/dev/null
        wait "$PY" 2>/dev/null
    fi
    imsd_stop
    pf_stop
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

pki_setup
imsd_setup
pf_setup
echo "starttls.sh: imsd on 127.0.0.1:$IMSD_PORT (IMS_ROOT=$IMS_ROOT), Postfix $(postconf -d -h mail_version)" \
    "on 127.0.0.1:$PF_PORT (config $PF/etc); $(openssl version); $(nproc) CPUs" >&2

# Both must present the same certificate: one message each, verified against the CA by name.
for port in "$IMSD_PORT" "$PF_PORT"; do
    "$BENCH/tlsload" -T 60 --tls13 --cafile "$PKI/ca.crt" -f sender@remote.test \
        -t bench@example.com -M client.test "127.0.0.1:$port" >/dev/null || {
        echo "starttls.sh: a verified STARTTLS message to 127.0.0.1:$port failed" >&2
        exit 1
    }
done

servers() {
    echo --imsd "$IMSD_PORT" "$IMS_ROOT/store/bench" "$IMS_ROOT/run/imsd.pid" \
        --postfix "$PF_PORT" "$PF/mail/bench" "$PF/spool/pid/master.pid"
}
restart() { # both servers afresh: no idle smtpd processes, no grown heap
    imsd_stop
    pf_stop
    "$BIN/imsctl" start >/dev/null
    pf_start
    sleep 1
}
# shellcheck disable=SC2046
py load "$BENCH/tlsload" $(servers) --out "$WORK/load.json"
# shellcheck disable=SC2046
py handshakes "$BENCH/tlsload" $(servers) --out "$WORK/hs.json"
restart
# shellcheck disable=SC2046
py idle "$BENCH/tlsload" $(servers) --out "$WORK/idle-tls.json"
restart
# shellcheck disable=SC2046
py idle "$BENCH/tlsload" $(servers) --plain --out "$WORK/idle-plain.json"

echo
py report "$WORK/load.json" "$WORK/hs.json" "$WORK/idle-tls.json" \
    "$WORK/idle-plain.json"
