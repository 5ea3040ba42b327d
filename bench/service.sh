#!/bin/sh
# service.sh BIN_DIR - the service benchmark: how long imsd takes from the command to ready
# (READY=1 on a NOTIFY_SOCKET of our own) and to exit after SIGTERM, and its idle memory.
set -eu

RUNS=20 # timed starts, each followed by a stop

if [ $# -ne 1 ]; then
    echo "usage: $0 BIN_DIR" >&2
    exit 2
fi
BIN=$1
if [ ! -x "$BIN/imsd" ]; then
    echo "service.sh: build first (make): need $BIN/imsd" >&2
    exit 1
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ims-bench-service-XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM
# Started as root, imsd runs as the service account, which must reach the state root.
chmod 0755 "$WORK"
export IMS_ROOT="$WORK/root"
mkdir -m 0755 "$IMS_ROOT"

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ACCOUNT=
[ "$(id -u)" = 0 ] && ACCOUNT=nobody # root must name an account that is not root
if [ -x "$BIN/imsctl" ]; then
    "$BIN/imsctl" install ${ACCOUNT:+--account "$ACCOUNT"} --listen "127.0.0.1:$PORT" >/dev/null
    SETUP="imsctl install ${ACCOUNT:+--account $ACCOUNT }--listen 127.0.0.1:$PORT"
elif [ -n "$ACCOUNT" ]; then
    # No imsctl: write the two values root needs by hand.
    KEY='HKLM\System\CurrentControlSet\Services\MSExchangeIMC'
    "$BIN/reg" add "$KEY" /v ObjectName /d "$ACCOUNT" /f >/dev/null
    "$BIN/reg" add "$KEY\\Parameters" /v ListenAddresses /t REG_MULTI_SZ \
        /d "127.0.0.1:$PORT" /f >/dev/null
    SETUP="reg add ObjectName=$ACCOUNT, ListenAddresses=127.0.0.1:$PORT"
else
    SETUP="no install: the defaults (127.0.0.1:2525)"
fi

echo "== imsd start and stop, $RUNS runs (IMS_ROOT=$IMS_ROOT; $SETUP)"
python3 - "$BIN/imsd" "$RUNS" <<'EOF'
import os, signal, socket, statistics, subprocess, sys, time

imsd, runs = sys.argv[1], int(sys.argv[2])
READY_TIMEOUT = 30.0  # seconds: a start slower than this is a failure, not a sample
STOP_TIMEOUT = 60.0


def rank(values, q):
    v = sorted(values)
    return v[max(0, min(len(v) - 1, -(-len(v) * q // 100) - 1))]


def proc_status(pid):
    """VmRSS and VmHWM of pid, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def once(i):
    # An abstract socket of our own, as imsctl start does: no file to clean up.
    name = f"@ims-bench-{os.getpid()}-{i}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name[1:])
    env = dict(os.environ, NOTIFY_SOCKET=name)
    t0 = time.perf_counter()
    p = subprocess.Popen([imsd], env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ready = None
    deadline = t0 + READY_TIMEOUT
    while ready is None:
        left = deadline - time.perf_counter()
        if left <= 0 or p.poll() is not None:
            break
        sock.settimeout(min(left, 0.05))
        try:
            msg = sock.recv(4096).decode(errors="replace")
        except socket.timeout:
            continue
        if "READY=1" in msg.split("\n"):
            ready = time.perf_counter()
    if ready is None:
        p.kill()
        err = p.communicate()[1].decode(errors="replace").strip()
        sys.exit(f"service.sh: imsd did not get ready (exit {p.returncode}): {err}")
    time.sleep(0.1)  # idle: nothing connects
    mem = proc_status(p.pid)
    t1 = time.perf_counter()
    p.send_signal(signal.SIGTERM)
    try:
        _, err = p.communicate(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        sys.exit("service.sh: imsd did not stop after SIGTERM")
    t2 = time.perf_counter()
    sock.close()
    if p.returncode != 0:
        sys.exit(f"service.sh: imsd exited {p.returncode}: {err.decode(errors='replace')}")
    return (ready - t0) * 1e3, (t2 - t1) * 1e3, mem


starts, stops, rss, hwm = [], [], [], []
for i in range(runs):
    start, stop, mem = once(i)
    starts.append(start)
    stops.append(stop)
    rss.append(mem["VmRSS"])
    hwm.append(mem["VmHWM"])

print(f"{'measure':<40} {'runs':>5} {'mean':>9} {'p50':>9} {'p95':>9}  unit")
for label, values, unit in (
    ("start: command to READY=1", starts, "ms"),
    ("stop: SIGTERM to exit 0", stops, "ms"),
    ("idle memory after ready: VmRSS", rss, "KiB"),
    ("idle memory after ready: VmHWM", hwm, "KiB"),
):
    print(f"{label:<40} {len(values):5} {statistics.mean(values):9.1f} "
          f"{rank(values, 50):9.1f} {rank(values, 95):9.1f}  {unit}")
EOF
echo
echo "command: IMS_ROOT=$IMS_ROOT NOTIFY_SOCKET=@ims-bench-<pid>-<n> $BIN/imsd" \
    "(ready at READY=1, stopped with SIGTERM)"
