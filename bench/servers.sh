# servers.sh - what bench/inbound.sh, outbound.sh and starttls.sh share, sourced by them: a free
# loopback port, stopping their imsd, and starting and stopping their private Postfix instance.
# The caller sets ME (its name, for messages), BIN, IMS_ROOT and PF.
# shellcheck shell=sh

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

imsd_pid() {
    cat "$IMS_ROOT/run/imsd.pid" 2>/dev/null || true
}

imsd_stop() {
    [ -d "$IMS_ROOT/run" ] || return 0
    pid=$(imsd_pid)
    "$BIN/imsctl" stop >/dev/null 2>&1 || true
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -9 "$pid" 2>/dev/null || true
    fi
}

# --- Postfix: a private instance, nothing shared with a system one but the programs ----------
pf_alive() { # is any process of the instance (process group $1, not a zombie) left?
    ps -e -o pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { found = 1 } END { exit !found }'
}

pf_stop() {
    [ -f "$PF/spool/pid/master.pid" ] || return 0
    mpid=$(tr -d ' \n' <"$PF/spool/pid/master.pid")
    [ -n "$mpid" ] || return 0
    postfix -c "$PF/etc" stop >/dev/null 2>&1 || true
    i=0
    while pf_alive "$mpid" && [ $i -lt 100 ]; do # bounded: 10 s
        sleep 0.1
        i=$((i + 1))
    done
    # The master runs in a process group of its own, with all its children: end what is left.
    if pf_alive "$mpid"; then
        kill -9 -- "-$mpid" 2>/dev/null || true
    fi
    rm -f "$PF/spool/pid/master.pid"
}

pf_start() {
    postfix -c "$PF/etc" start >/dev/null 2>&1 || {
        echo "$ME: postfix did not start; its log:" >&2
        tail -n 20 "$PF/maillog" >&2 || true
        exit 1
    }
    i=0
    while [ ! -s "$PF/spool/pid/master.pid" ] && [ $i -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
}
