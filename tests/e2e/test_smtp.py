"""test_smtp.py - inbound Internet mail end to end: a real imsd on loopback, real SMTP clients
(Python's smtplib, swaks, raw sockets), mail checked by reading the recipients' Maildirs.

Each test runs its own service as the calling user (IMS_ROOT in a temp dir, a free port) and
stops it at teardown."""
import glob
import os
import resource
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import IMS_BIN, REPO

WAIT = 20  # seconds any wait may take at most


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(prog, *args, env, check=True):
    p = subprocess.run([os.path.join(IMS_BIN, prog), *args], env=env, capture_output=True,
                       text=True, stdin=subprocess.DEVNULL, timeout=60)
    if check:
        assert p.returncode == 0, (prog, args, p.stdout, p.stderr)
    return p


def wait_for(pred, what):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def partial_work_files(root):
    """What Work holds besides the recycled files (free.N) that finished messages leave there
    for new ones: files named by queue id, of messages being written or left by a crash."""
    work = os.path.join(root, "imcdata", "Work")
    return [f for f in os.listdir(work) if not f.startswith(".") and not f.startswith("free.")]


def dead(pid):
    """pid has exited with all its threads (gone, or a zombie whose parent has not reaped it
    yet), so its files and pid lock are released and a new start is not told "already
    running". After SIGKILL the main thread is a zombie at once, but a thread in the middle of
    an fdatasync finishes it first, holding the process's files till then."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            if not f.read().rsplit(") ", 1)[1].startswith("Z"):
                return False
        return len(os.listdir(f"/proc/{pid}/task")) <= 1
    except (FileNotFoundError, ProcessLookupError):
        return True


# Parameters values that lift the per-client limits, for tests that load the service from one
# address (127.0.0.1) as a benchmark would.
NO_CLIENT_LIMITS = [("MaxConnectionsPerClient", "REG_DWORD", "0"),
                    ("MaxConnectionRatePerClient", "REG_DWORD", "0"),
                    ("MaxMessageRatePerClient", "REG_DWORD", "0"),
                    ("MaxRecipientRatePerClient", "REG_DWORD", "0")]


class Service:
    def __init__(self, root, port, extra_params=(), diag=(), start=True):
        self.root = root
        self.port = port
        self.env = dict(os.environ, IMS_ROOT=root,
                        IMS_MAPISVC=os.path.join(REPO, "data", "mapisvc.inf"))
        account = [] if os.geteuid() else ["--account", "nobody"]
        run("imsctl", "install", *account, "--listen", f"127.0.0.1:{port}", env=self.env)
        run("imsadm", "domain", "add", "example.com", env=self.env)
        run("imsadm", "domain", "add", "example.org", env=self.env)
        run("imsadm", "mailbox", "add", "alice", "--address", "alice@example.com",
            "a.smith@example.org", "--name", "Alice Smith", env=self.env)
        run("imsadm", "mailbox", "add", "bob", "--address", "bob@example.com", env=self.env)
        for name, typ, data in extra_params:
            run("reg", "add", r"HKLM\System\CurrentControlSet\Services\MSExchangeIMC\Parameters",
                "/v", name, "/t", typ, "/d", data, "/f", env=self.env)
        for name, level in diag:
            run("reg", "add", r"HKLM\System\CurrentControlSet\Services\MSExchangeIMC\Diagnostics",
                "/v", name, "/t", "REG_DWORD", "/d", level, "/f", env=self.env)
        if start:
            self.start()

    def start(self):
        run("imsctl", "start", env=self.env)

    def start_console(self, nofile=None):
        """imsd -console in the foreground (events on its stderr); returns once it is ready.
        nofile: its open files limit (soft and hard)."""
        status = os.path.join(self.root, "run", "imsd.status")

        def limit():
            if nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        p = subprocess.Popen([os.path.join(IMS_BIN, "imsd"), "-console"], env=self.env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, preexec_fn=limit)
        try:
            wait_for(lambda: os.path.exists(status) or p.poll() is not None, "imsd -console")
        except AssertionError:
            p.kill()
            raise
        assert p.poll() is None, p.communicate()[1]
        return p

    def stop_console(self, p):
        """Stop an imsd from start_console; returns its stderr."""
        if p is None:
            return ""
        self.stop()
        try:
            return p.communicate(timeout=WAIT)[1]
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()

    def stop(self):
        run("imsctl", "stop", env=self.env, check=False)

    def pid(self):
        with open(os.path.join(self.root, "run", "imsd.pid")) as f:
            return int(f.read().strip())

    def mail(self, alias):
        return sorted(glob.glob(os.path.join(self.root, "store", alias, "new", "*")))

    def wait_mail(self, alias, n):
        return wait_for(lambda: len(self.mail(alias)) >= n and self.mail(alias), f"{n} in {alias}")


@pytest.fixture
def svc():
    root = tempfile.mkdtemp(prefix="ims-smtp-")
    os.chmod(root, 0o755)
    s = Service(root, free_port())
    yield s
    s.stop()
    shutil.rmtree(root, ignore_errors=True)


def smtp(svc):
    return smtplib.SMTP("127.0.0.1", svc.port, timeout=WAIT)


def test_delivery_to_maildir(svc):
    with smtp(svc) as c:
        code, caps = c.ehlo("client.test")
        assert code == 250
        for ext in (b"SIZE", b"PIPELINING", b"8BITMIME", b"ENHANCEDSTATUSCODES", b"DSN"):
            assert ext in caps
        c.sendmail("sender@remote.test", ["alice@example.com", "bob@example.com",
                                          "a.smith@example.org"],
                   b"Subject: hi\r\n\r\nHello there.\r\n")
    [a] = svc.wait_mail("alice", 1)  # two addresses of one mailbox: one copy? see below
    [b] = svc.wait_mail("bob", 1)
    text = open(b, "rb").read()
    # Stored with LF line ends (Maildir as Postfix, Dovecot and mutt have it), its size in S=.
    assert text.startswith(b"Return-Path: <sender@remote.test>\n")
    assert b"Received: from client.test ([127.0.0.1])\n" in text
    assert text.endswith(b"\nSubject: hi\n\nHello there.\n") and b"\r" not in text
    assert b.endswith(f",S={len(text)}")
    # 1013 (transferred in) is logged once the copies are durable, a moment after they show.
    def tracked():
        tracking = glob.glob(os.path.join(svc.root, "Tracking.log", "*.log"))
        lines = open(tracking[0]).read().splitlines() if tracking else []
        return lines if sum("\t1013\t" in l for l in lines) >= 3 else None
    lines = wait_for(tracked, "three 1013 lines in the tracking log")
    assert sum("\t1012\t" in l for l in lines) == 3, lines


def test_unknown_user_and_relay_tricks(svc):
    with smtp(svc) as c:
        c.ehlo("client.test")
        assert c.mail("s@remote.test")[0] == 250
        assert c.rcpt("nobody@example.com")[0] == 550
        for trick in ["victim@gmail.com", "victim%gmail.com@example.com",
                      '"victim@gmail.com"@example.com', "@example.com:victim@gmail.com",
                      "gmail.com!victim@example.com", "alice@[127.0.0.1]",
                      "alice@example.com."]:
            code, msg = c.rcpt(trick)
            assert code in (550, 553), (trick, code, msg)
        assert c.rcpt("ALICE@EXAMPLE.COM")[0] == 250
        c.rset()


def test_size_limit(tmp_path):
    root = tempfile.mkdtemp(prefix="ims-smtp-")
    os.chmod(root, 0o755)
    s = Service(root, free_port(), [("InboundSizeLimit", "REG_DWORD", "1000")])
    try:
        with smtp(s) as c:
            c.ehlo("client.test")
            assert b"SIZE 1000" in c.ehlo_resp or c.esmtp_features.get("size") == "1000"
            code, _ = c.docmd("MAIL FROM:<s@remote.test> SIZE=5000")
            assert code == 552
            c.rset()
            c.mail("s@remote.test")
            c.rcpt("alice@example.com")
            code, _ = c.data(b"Subject: big\r\n\r\n" + b"x" * 3000 + b"\r\n")
            assert code == 552
        assert s.mail("alice") == []
    finally:
        s.stop()
        shutil.rmtree(root, ignore_errors=True)


def raw_session(svc, data, expect_close=True):
    """Send raw bytes, return everything the server said until it closed or went quiet."""
    with socket.create_connection(("127.0.0.1", svc.port), timeout=WAIT) as sk:
        sk.settimeout(2)
        out = b""
        out += sk.recv(4096)
        sk.sendall(data)
        try:
            while True:
                chunk = sk.recv(65536)
                if not chunk:
                    break
                out += chunk
        except socket.timeout:
            pass
    return out.decode("latin-1")


def test_pipelining(svc):
    out = raw_session(svc, b"EHLO c.test\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<bob@example.com>\r\n"
                           b"RCPT TO:<nobody@example.com>\r\nDATA\r\n"
                           b"Subject: p\r\n\r\npipelined\r\n.\r\nQUIT\r\n")
    codes = [l[:3] for l in out.split("\r\n") if l[:3].isdigit() and l[3:4] == " "]
    assert codes == ["220", "250", "250", "250", "550", "354", "250", "221"], out
    svc.wait_mail("bob", 1)


def test_bare_lf_and_smuggling_refused(svc):
    body = (b"EHLO c.test\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"
            b"Subject: smuggle\r\n\r\nhello\n.\nMAIL FROM:<evil@r.test>\r\n.\r\nQUIT\r\n")
    out = raw_session(svc, body)
    assert "550 5.6.0" in out, out
    assert svc.mail("bob") == []


def test_bad_commands_and_long_lines(svc):
    out = raw_session(svc, b"EHLO c.test\r\nFOO\r\n" + b"NOOP " + b"x" * 5000 + b"\r\n" +
                      b"MAIL FROM:<a@b>\r\nRCPT TO:<bob@example.com>\r\nRCPT\x00TO\r\nQUIT\r\n")
    assert "500" in out and "5.5.2" in out, out
    assert "221" in out


def test_long_content_lines(svc):
    """Lines of 2,000 and 4,096 octets (generated HTML mail has them) are accepted and
    delivered byte for byte: MaxLineLength (1000) bounds command lines only."""
    line2000 = b"<p>" + bytes(ord("a") + i % 26 for i in range(1991)) + b"</p>"  # + CRLF: 2000
    line4096 = b"x" * 2047 + b"\xc3\xa9" + b"y" * 2045                          # + CRLF: 4096
    assert len(line2000) + 2 == 2000 and len(line4096) + 2 == 4096
    sent = []
    with smtp(svc) as c:
        for subject, line in (("l2000", line2000), ("l4096", line4096)):
            body = b"Subject: " + subject.encode() + b"\r\n\r\nbefore\r\n" + line + \
                b"\r\nafter\r\n"
            c.ehlo("client.test")
            code, resp = c.docmd("MAIL FROM:<s@remote.test> BODY=8BITMIME")
            assert code == 250, resp
            assert c.rcpt("bob@example.com")[0] == 250
            code, resp = c.data(body)
            assert code == 250, resp
            sent.append(line)
    files = svc.wait_mail("bob", 2)
    texts = [open(f, "rb").read() for f in files]
    for line in sent:
        assert sum(b"\nbefore\n" + line + b"\nafter\n" in t for t in texts) == 1, \
            (len(line), [len(t) for t in texts])


def test_swaks(svc):
    p = subprocess.run(["swaks", "--server", f"127.0.0.1:{svc.port}", "--from", "s@remote.test",
                        "--to", "alice@example.com", "--body", "from swaks"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    [m] = svc.wait_mail("alice", 1)
    assert b"from swaks" in open(m, "rb").read()


def test_stalled_client_costs_only_its_session(svc):
    """A client that connects and says nothing does not stop others."""
    stalled = socket.create_connection(("127.0.0.1", svc.port), timeout=WAIT)
    try:
        stalled.recv(4096)
        with smtp(svc) as c:
            c.sendmail("s@remote.test", ["bob@example.com"], b"Subject: x\r\n\r\nok\r\n")
        svc.wait_mail("bob", 1)
    finally:
        stalled.close()


def test_kill_during_load_loses_nothing_acknowledged():
    """kill -9 imsd while four clients send; restart; every message that got 250 is in
    exactly one copy per recipient, and nothing half-made remains in Work."""
    import threading
    root = tempfile.mkdtemp(prefix="ims-smtp-")
    os.chmod(root, 0o755)
    s = Service(root, free_port())
    acked, lock, stop = [], threading.Lock(), threading.Event()

    def sender(t):
        for i in range(10000):
            if stop.is_set():
                return
            seq = t * 100000 + i
            try:
                with smtp(s) as c:
                    c.sendmail("s@remote.test", ["alice@example.com", "bob@example.com"],
                               f"Subject: n{seq}\r\nX-Seq: {seq}\r\n\r\nbody\r\n".encode())
                with lock:
                    acked.append(seq)
            except (smtplib.SMTPException, OSError):
                return

    try:
        threads = [threading.Thread(target=sender, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        wait_for(lambda: len(acked) >= 80, "80 acknowledged messages")
        pid = s.pid()
        os.kill(pid, signal.SIGKILL)
        stop.set()
        # A process killed in the middle of its syncs takes a moment to die; until it has,
        # its lock is held and "imsctl start" would find it "already running".
        wait_for(lambda: dead(pid), "imsd to die")
        for t in threads:
            t.join(WAIT)
        with lock:
            acked_now = set(acked)
        s.start()  # recovery, then delivery of what was acknowledged
        for alias in ("alice", "bob"):
            def complete():
                seqs = []
                for f in s.mail(alias):
                    for line in open(f, "rb").read().split(b"\n"):
                        if line.startswith(b"X-Seq: "):
                            seqs.append(int(line[7:].strip()))
                return seqs if acked_now <= set(seqs) else None
            seqs = wait_for(complete, f"every acknowledged message in {alias}")
            assert len(seqs) == len(set(seqs)), f"a duplicate in {alias}"
        assert partial_work_files(root) == []
    finally:
        stop.set()
        s.stop()
        shutil.rmtree(root, ignore_errors=True)
