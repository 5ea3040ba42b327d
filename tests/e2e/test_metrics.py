"""test_metrics.py - the performance counters end to end: a real imsd with MetricsAddress on a
free port, mail sent to a mailbox and relayed to a recording peer (outbound_world.py); the
Prometheus endpoint (/metrics, checked by promtool) and `imsctl stats --json` read before and
after move by exactly what was sent; a message held by a peer answering 451 shows in the queue
gauges and in the console's statistics block; the stats-history control command; the
endpoint's limits, and a MetricsAddress that cannot be bound failing the start.

Waits are bounded (test_smtp.WAIT); nothing measures time."""
import json
import os
import re
import select
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import IMS_BIN
from outbound_world import Rule, message, send, wait_out_empty, world  # noqa: F401
from test_smtp import WAIT, Service, free_port, run, wait_for
import tempfile

ZONE = """
remote.test      MX 10 mx1.remote.test
mx1.remote.test  A  127.0.0.2
"""
N = 3
PARAMS = r"HKLM\System\CurrentControlSet\Services\MSExchangeIMC\Parameters"
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def metrics_params(port):
    return [("MetricsAddress", "REG_SZ", "127.0.0.1:%d" % port)]


def fetch(port, path="/metrics"):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=WAIT) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return r.read().decode()


def parse_metrics(text):
    """{'name{labels}': value} of every sample; checks every family has HELP and TYPE first."""
    out, typed, helped = {}, set(), set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
        elif line.startswith("# TYPE "):
            typed.add(line.split()[2])
        elif line:
            m = SAMPLE.match(line)
            assert m, line
            name = m.group(1)
            family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in typed else name
            assert family in typed and family in helped, line
            out[name + (m.group(2) or "")] = float(m.group(3))
    return out


def stats_json(svc):
    p = run("imsctl", "stats", "--json", env=svc.env)
    return json.loads(p.stdout)["counters"]


def promtool_check(text):
    exe = shutil.which("promtool")
    if not exe:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing in CI (tools/deps.sh installs prometheus)")
        return False
    p = subprocess.run([exe, "check", "metrics"], input=text, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, (p.stdout, p.stderr)
    return True


def local_message(i):
    return (b"From: Bob <bob@example.com>\r\nTo: <alice@example.com>\r\n"
            b"Subject: local %d\r\n\r\nHello %d.\r\n" % (i, i))


def delta(after, before, key):
    return after.get(key, 0) - before.get(key, 0)


def test_counters_move_by_what_was_sent(world):
    world.dns(ZONE)
    peer = world.peer("127.0.0.2")
    mport = free_port()
    svc = world.service(params=metrics_params(mport))
    m0, s0 = parse_metrics(fetch(mport)), stats_json(svc)

    local = [local_message(i) for i in range(N)]
    relayed = [message("relayed %d" % i) for i in range(N)]
    for data in local:
        send(svc, "bob@example.com", ["alice@example.com"], data)
    for data in relayed:
        send(svc, "alice@example.com", ["x@remote.test"], data)
    svc.wait_mail("alice", N)
    peer.wait_messages(N)
    wait_out_empty(svc)
    # The remote deliveries count once their results are durable: wait for that, no longer.
    wait_for(lambda: delta(parse_metrics(fetch(mport)), m0,
                           'ims_recipients_delivered_total{route="remote"}') == N,
             "the remote deliveries counted")
    text = fetch(mport)
    m1, s1 = parse_metrics(text), stats_json(svc)

    want = {
        "ims_messages_received_total": 2 * N,
        "ims_connections_inbound_total": 2 * N,  # one session per message
        "ims_spool_messages_committed_total": 2 * N,
        'ims_recipients_delivered_total{route="local"}': N,
        'ims_recipients_delivered_total{route="remote"}': N,
        "ims_messages_sent_total": N,
        "ims_mts_in_messages_entered_total": N,
        "ims_connections_outbound_total": peer.connections,
        "ims_connections_outbound_failed_total": 0,
        "ims_ndrs_sent_total": 0,
        "ims_ndrs_received_total": 0,
        "ims_dns_failures_total": 0,
        'ims_delivery_latency_seconds_count{route="local"}': N,
        'ims_delivery_latency_seconds_count{route="remote"}': N,
        'ims_delivery_latency_seconds_bucket{route="remote",le="+Inf"}': N,
    }
    for key, n in want.items():
        assert delta(m1, m0, key) == n, (key, m0.get(key), m1.get(key))
    # Message bytes as the clients sent them (CRLF lines, no dot-stuffing in these).
    assert delta(m1, m0, "ims_bytes_received_total") == sum(map(len, local + relayed))
    assert delta(m1, m0, "ims_bytes_sent_total") > sum(map(len, relayed))  # plus Received
    assert m1["ims_connections_outbound_total"] >= 1
    # Nothing waits any more.
    for q in ("inbound", "mts-in", "mts-out", "outbound"):
        assert m1['ims_queue_messages{queue="%s"}' % q] == 0, q
    assert m1['ims_queue_bytes{queue="mts-in"}'] == 0
    assert m1["ims_connections_inbound"] == 0
    # Spool rounds: at least one, at most one per message.
    rounds = delta(m1, m0, "ims_spool_commit_rounds_total")
    assert 1 <= rounds <= 2 * N
    # imsctl stats --json tells the same.
    for key, prom in [("messages_received_total", "ims_messages_received_total"),
                      ("messages_sent_total", "ims_messages_sent_total"),
                      ("connections_inbound_total", "ims_connections_inbound_total"),
                      ("recipients_delivered_total.local",
                       'ims_recipients_delivered_total{route="local"}'),
                      ("recipients_delivered_total.remote",
                       'ims_recipients_delivered_total{route="remote"}'),
                      ("bytes_received_total", "ims_bytes_received_total")]:
        assert s1[key] - s0[key] == delta(m1, m0, prom), key
    # Histogram buckets are cumulative.
    for route in ("local", "remote"):
        b = [v for k, v in m1.items()
             if k.startswith('ims_delivery_latency_seconds_bucket{route="%s"' % route)]
        assert b == sorted(b) and b[-1] == m1['ims_delivery_latency_seconds_count{route="%s"}'
                                               % route]
    promtool_check(text)


def test_a_held_message_shows_in_the_queues(world):
    """A peer that answers 451 keeps the message in Out: the outbound gauge says 1, the
    recipient's deferrals count, and the console's Queues line is not zero."""
    world.dns(ZONE)
    world.peer("127.0.0.2", rules=[Rule("rcpt", "451 4.3.0 Try again later")])
    mport = free_port()
    svc = world.service(params=metrics_params(mport) + [("ConsoleStatFrequency", "REG_DWORD",
                                                         "1")])
    send(svc, "alice@example.com", ["x@remote.test"], message("held"))
    m = wait_for(lambda: (lambda x: x if x['ims_recipients_deferred_total{route="remote"}'] >= 1
                          else None)(parse_metrics(fetch(mport))), "a deferral")
    assert m['ims_queue_messages{queue="outbound"}'] == 1
    assert m['ims_queue_recipients{queue="outbound"}'] == 1
    assert m['ims_recipients_delivered_total{route="remote"}'] == 0
    s = stats_json(svc)
    assert s["queue_messages.outbound"] == 1
    # The console's block while it waits (after a restart it is found in Out again).
    svc.stop()
    p = subprocess.Popen([os.path.join(IMS_BIN, "imsd"), "-console"], env=svc.env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    seen = []
    try:
        deadline = time.monotonic() + WAIT
        buf = b""
        found = False
        while time.monotonic() < deadline and not found:
            r, _, _ = select.select([p.stdout], [], [], 0.5)
            if not r:
                continue
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                seen.append(line.decode())
                m = re.match(r"^\s+inbound\s+(\d+)\s+outbound\s+(\d+)$", line.decode())
                if m and int(m.group(2)) == 1:
                    found = True
        assert found, "\n".join(seen[-20:])
        assert any(l.startswith("Queues ") for l in seen)
    finally:
        run("imsctl", "stop", env=svc.env, check=False)
        try:
            p.wait(WAIT)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        p.stdout.close()


@pytest.fixture
def svc_metrics():
    root = tempfile.mkdtemp(prefix="ims-met-")
    os.chmod(root, 0o755)
    mport = free_port()
    s = None
    try:
        s = Service(root, free_port(), extra_params=metrics_params(mport))
        s.mport = mport
        yield s
    finally:
        if s:
            s.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_stats_history_and_table(svc_metrics):
    svc = svc_metrics
    # stats-history through the control socket: a header, then one row per second kept.
    wait_for(lambda: len(history(svc)) >= 3, "three samples")
    rows = history(svc)
    head, data = rows[0], rows[1:]
    assert head[0] == "time" and "messages_received_total" in head
    assert all(len(r) == len(head) for r in data)
    times = [int(r[0]) for r in data]
    assert times == sorted(times) and len(data) <= 300
    # The table names the original's counters.
    p = run("imsctl", "stats", env=svc.env)
    assert "Inbound Messages Total" in p.stdout and "Queued MTS-IN" in p.stdout
    assert re.search(r"^messages_received_total\s+0\s", p.stdout, re.M), p.stdout


def history(svc):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(WAIT)
        s.connect(os.path.join(svc.root, "run", "control"))
        s.sendall(b"stats-history\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    lines = data.decode().split("\n")
    assert lines[-2] == ".OK" and lines[-1] == "", lines[-3:]
    return [l.split("\t") for l in lines[:-2]]


def test_endpoint_limits(svc_metrics):
    port = svc_metrics.mport
    with pytest.raises(urllib.error.HTTPError) as e:
        fetch(port, "/nothing")
    assert e.value.code == 404
    req = urllib.request.Request("http://127.0.0.1:%d/metrics" % port, data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=WAIT)
    assert e.value.code in (405, 501)
    # Headers past the limit (8 KiB) are refused, not stored.
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        answer = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except ConnectionResetError:
            pass
    assert not answer.startswith(b"HTTP/1.1 200"), answer[:100]
    # and the endpoint still serves
    assert "ims_uptime_seconds" in fetch(port)


def test_stats_when_stopped(svc_metrics):
    svc_metrics.stop()
    p = run("imsctl", "stats", env=svc_metrics.env, check=False)
    assert p.returncode == 3
    assert p.stderr.strip() == "imsctl: the service is not running"


def test_metrics_address_taken_fails_the_start():
    root = tempfile.mkdtemp(prefix="ims-met-")
    os.chmod(root, 0o755)
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        taken = holder.getsockname()[1]
        svc = Service(root, free_port(), extra_params=metrics_params(taken), start=False)
        p = run("imsctl", "start", env=svc.env, check=False)
        assert p.returncode == 1, (p.stdout, p.stderr)
        assert "127.0.0.1:%d" % taken in p.stdout + p.stderr
        assert not os.path.exists(os.path.join(root, "run", "imsd.status"))
    finally:
        holder.close()
        run("imsctl", "stop", env=dict(os.environ, IMS_ROOT=root), check=False)
        shutil.rmtree(root, ignore_errors=True)


ZONE2 = """
remote.test      MX 10 mx1.remote.test
mx1.remote.test  A  127.0.0.2
dead.test        MX 10 mx1.dead.test
mx1.dead.test    A  127.0.0.6
"""


@pytest.fixture(scope="module")
def pki():
    import sys
    from conftest import REPO
    sys.path.insert(0, os.path.join(REPO, "tests"))
    from tls_certs import make_pki
    d = tempfile.mkdtemp(prefix="ims-pki-")
    os.chmod(d, 0o755)  # the service account (nobody, under root) reads the key
    try:
        yield make_pki(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def smtp_session(svc):
    import smtplib
    return smtplib.SMTP("127.0.0.1", svc.port, timeout=WAIT)


def test_every_other_counter_moves(world, pki):
    """Each counter the first test leaves at zero moves here by what was done: TLS in and out
    (a failed handshake too), a report received, a DNS failure with its NDR, a refused outbound
    connection, MTS-OUT and the Pickup directory, sessions by state, a refused connection."""
    import smtplib
    import ssl
    world.dns(ZONE2)
    peer = world.peer("127.0.0.2", tls=(pki.chain, pki.key))
    mport = free_port()
    svc = world.service(params=metrics_params(mport) + [
        ("TlsCertificateFile", "REG_SZ", pki.chain), ("TlsKeyFile", "REG_SZ", pki.key),
        ("MaxInboundConnections", "REG_DWORD", "3"), ("RetryInterval", "REG_SZ", "1"),
        ("StressThreshold", "REG_DWORD", "0")])  # the 4th connection is refused, not let in
    m0 = parse_metrics(fetch(mport))

    # Inbound STARTTLS: one handshake that works, one that fails (garbage for a ClientHello).
    ctx = ssl.create_default_context(cafile=pki.ca)
    ctx.check_hostname = False
    with smtp_session(svc) as c:
        c.ehlo("client.test")
        c.starttls(context=ctx)
        c.ehlo("client.test")
        c.sendmail("bob@example.com", ["alice@example.com"], local_message(0))
    with socket.create_connection(("127.0.0.1", svc.port), timeout=WAIT) as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"EHLO client.test\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        s.sendall(b"STARTTLS\r\n")
        assert f.readline().startswith(b"220")
        s.sendall(b"this is no ClientHello\r\n" * 4)
        try:
            f.read()  # until imsd closes (an alert, or a reset for the bytes it left unread)
        except ConnectionResetError:
            pass
    # A report received: from the null sender.
    send(svc, "", ["alice@example.com"], local_message(1))
    # Out: over TLS to the peer; to a domain DNS does not know (failed for good: an NDR);
    # to an exchanger nobody listens on (refused: deferred).
    send(svc, "alice@example.com", ["x@remote.test"], message("tls out"))
    send(svc, "alice@example.com", ["y@nowhere.test"], message("no such domain"))
    send(svc, "alice@example.com", ["z@dead.test"], message("nobody home"))
    # MTS-OUT and the Pickup directory.
    mts = os.path.join(svc.root, "store", "MSExchangeIMC", ".MTS-OUT")
    with open(os.path.join(mts, "tmp", "m1"), "wb") as f:
        f.write(b"X-Sender: <boss@example.org>\nX-Receiver: <alice@example.com>\n"
                b"Subject: from MTS-OUT\n\nHello.\n")
    os.rename(os.path.join(mts, "tmp", "m1"), os.path.join(mts, "new", "m1"))
    pick = os.path.join(svc.root, "imcdata", "Pickup")
    with open(os.path.join(pick, ".p1"), "wb") as f:
        f.write(b"From: Boss <boss@example.org>\nTo: Alice <alice@example.com>\n"
                b"Subject: from Pickup\n\nHello.\n")
    os.chmod(os.path.join(pick, ".p1"), 0o644)
    os.rename(os.path.join(pick, ".p1"), os.path.join(pick, "p1"))

    def settled():
        m = parse_metrics(fetch(mport))
        done = (delta(m, m0, "ims_ndrs_sent_total") >= 1 and
                delta(m, m0, "ims_connections_outbound_failed_total") >= 1 and
                delta(m, m0, "ims_messages_sent_total") >= 1 and
                delta(m, m0, "ims_mts_out_messages_left_total") >= 1 and
                delta(m, m0, "ims_pickup_messages_total") >= 1)
        return m if done else None
    m1 = wait_for(settled, "the outbound results, MTS-OUT and Pickup counted")
    want = {
        'ims_tls_handshakes_total{direction="inbound"}': 1,
        'ims_tls_handshakes_failed_total{direction="inbound"}': 1,
        'ims_tls_handshakes_total{direction="outbound"}': 1,
        'ims_tls_handshakes_failed_total{direction="outbound"}': 0,
        "ims_ndrs_received_total": 1,
        "ims_messages_sent_total": 1,
        "ims_ndrs_sent_total": 1,
        'ims_recipients_failed_total{route="remote"}': 1,
        "ims_mts_out_messages_entered_total": 1,
        "ims_mts_out_messages_left_total": 1,
        "ims_pickup_messages_total": 1,
    }
    for key, n in want.items():
        assert delta(m1, m0, key) == n, (key, m0.get(key), m1.get(key))
    assert delta(m1, m0, "ims_dns_failures_total") >= 1  # nowhere.test (looked up per try)
    assert delta(m1, m0, 'ims_recipients_deferred_total{route="remote"}') >= 1  # dead.test
    assert m1['ims_queue_messages{queue="mts-out"}'] == 0
    assert m1['ims_queue_bytes{queue="mts-out"}'] == 0

    # Sessions by state, and the connection MaxInboundConnections (3) turns away.
    held = []
    try:
        for _ in range(3):
            c = smtplib.SMTP("127.0.0.1", svc.port, timeout=WAIT)
            c.ehlo("client.test")
            held.append(c)
        m2 = parse_metrics(fetch(mport))
        assert m2['ims_sessions_inbound{state="greeted"}'] == 3, m2
        assert m2["ims_connections_inbound"] == 3
        with socket.create_connection(("127.0.0.1", svc.port), timeout=WAIT) as s:
            assert s.makefile("rb").readline().startswith(b"421")
        m3 = wait_for(lambda: (lambda m: m if delta(m, m2, "ims_connections_rejected_total") == 1
                               else None)(parse_metrics(fetch(mport))), "the refusal counted")
        assert delta(m3, m2, "ims_connections_inbound_total") == 1
    finally:
        for c in held:
            c.close()
    promtool_check(fetch(mport))


@pytest.mark.parametrize("per_file", [0, 1])
def test_sync_per_file(world, per_file):
    """SyncPerFile 1: an fdatasync per spool file (the counter moves by one a message);
    0, the default: the round's one syncfs, no fdatasync. Either way every message is
    delivered, and a finished message's file is reused for a later one."""
    svc = world.service(params=[("SyncPerFile", "REG_DWORD", str(per_file))], dns=False)
    s0 = stats_json(svc)
    for i in range(N):
        send(svc, "bob@example.com", ["alice@example.com"], local_message(i))
        svc.wait_mail("alice", i + 1)
    s1 = stats_json(svc)
    assert s1["spool_messages_committed_total"] - s0["spool_messages_committed_total"] == N
    syncs = s1["spool_file_syncs_total"] - s0["spool_file_syncs_total"]
    assert syncs == (N if per_file else 0)
    # A delivered message's file is reused once its leaving In is durable (the next commit's
    # sync, or the delivery thread's own a moment later): a few more messages, one at a time,
    # find one.
    for i in range(N, N + 5):
        if stats_json(svc)["spool_files_reused_total"] > s0["spool_files_reused_total"]:
            break
        time.sleep(0.1)  # not a measurement: lets the delivery thread's own sync come
        send(svc, "bob@example.com", ["alice@example.com"], local_message(i))
        svc.wait_mail("alice", i + 1)
    assert stats_json(svc)["spool_files_reused_total"] > s0["spool_files_reused_total"]
