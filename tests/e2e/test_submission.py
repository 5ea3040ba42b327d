"""test_submission.py - the SMTP server under TLS and AUTH, end to end: STARTTLS with Python's
smtplib, swaks and openssl s_client; the STARTTLS injection sequence; bad, expired and
mismatched certificates and a certificate that changes while imsd runs; AUTH PLAIN and LOGIN
with good and wrong passwords (event 4183, the slow-down, the end of the session); the
submission (587) and submissions (465) listeners; relaying and the two submission
restrictions; Received under TLS and AUTH; a protocol log without credentials.

Every test runs its own imsd (IMS_ROOT in a temp dir, free ports, stopped at teardown) with a
throw-away PKI from tls_certs.py."""
import base64
import glob
import os
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile

import pytest

from conftest import IMS_BIN, REPO
from test_smtp import NO_CLIENT_LIMITS, WAIT, Service, free_port, run, wait_for

import sys

sys.path.insert(0, os.path.join(REPO, "tests"))
from tls_certs import make_pki  # noqa: E402

PARAMS = r"HKLM\System\CurrentControlSet\Services\MSExchangeIMC\Parameters"
PASSWORD = "correct horse battery staple"
BOB_PASSWORD = "bobs-own-secret"


@pytest.fixture(scope="module")
def pki():
    d = tempfile.mkdtemp(prefix="ims-pki-")
    os.chmod(d, 0o755)
    p = make_pki(d)
    for f in os.listdir(d):
        os.chmod(os.path.join(d, f), 0o644)  # the service account reads them at a reload
    yield p
    shutil.rmtree(d, ignore_errors=True)


class Tls(Service):
    """A Service with smtp, submission and submissions listeners, mailbox passwords, and
    optionally a certificate; start() or console() starts it."""

    def __init__(self, root, params=(), cert=None, key=None, diag=()):
        self.sub, self.subs = free_port(), free_port()
        extra = list(params)
        if cert:
            extra.append(("TlsCertificateFile", "REG_SZ", cert))
        if key:
            extra.append(("TlsKeyFile", "REG_SZ", key))
        super().__init__(root, free_port(), extra, diag=diag, start=False)
        run("reg", "add", PARAMS, "/v", "ListenAddresses", "/t", "REG_MULTI_SZ", "/d",
            f"127.0.0.1:{self.port}\\0127.0.0.1:{self.sub} submission\\0"
            f"127.0.0.1:{self.subs} submissions", "/f", env=self.env)
        for alias, pw in (("alice", PASSWORD), ("bob", BOB_PASSWORD)):
            p = subprocess.run([os.path.join(IMS_BIN, "imsadm"), "mailbox", "password", alias],
                               input=pw + "\n", env=self.env, text=True, capture_output=True,
                               timeout=60)
            assert p.returncode == 0, p.stderr
        self.console_proc = None

    def console(self):
        self.console_proc = self.start_console()
        os.set_blocking(self.console_proc.stderr.fileno(), False)
        self.seen = ""

    def wait_event(self, text, count=1):
        """Wait until the running service has printed text on its console count times."""
        def look():
            try:
                chunk = os.read(self.console_proc.stderr.fileno(), 65536)
            except BlockingIOError:
                chunk = b""
            self.seen += chunk.decode(errors="replace")
            return self.seen.count(text) >= count
        wait_for(look, text)

    def events(self):
        """Stop the service; its events as printed on the console."""
        os.set_blocking(self.console_proc.stderr.fileno(), True)
        p, self.console_proc = self.console_proc, None
        err = self.seen + self.stop_console(p)
        # Under make test SAN=1 a sanitizer's report lands here too.
        assert "Sanitizer" not in err and "runtime error:" not in err, err
        return err

    def stop(self):
        p, self.console_proc = self.console_proc, None
        if p is not None:
            self.stop_console(p)  # calls stop() again, which then stops the service
        else:
            super().stop()


@pytest.fixture
def make(pki):
    made = []

    def mk(params=(), cert="chain", key="key", diag=(), console=False):
        root = tempfile.mkdtemp(prefix="ims-sub-")
        os.chmod(root, 0o755)
        c = getattr(pki, cert) if cert in ("chain", "cert", "expired_cert", "wrong_cert") \
            else cert
        k = getattr(pki, key) if key in ("key", "expired_key", "wrong_key", "self_key") \
            else key
        s = Tls(root, params, c, k, diag)
        made.append(s)
        if console:
            s.console()
        else:
            s.start()
        return s

    yield mk
    for s in made:
        s.stop()
        shutil.rmtree(s.root, ignore_errors=True)


def context(pki):
    ctx = ssl.create_default_context(cafile=pki.ca)
    return ctx


def client(svc, port=None):
    return smtplib.SMTP("127.0.0.1", port or svc.port, timeout=WAIT)


def auth_plain(user, pw):
    return base64.b64encode(b"\0" + user.encode() + b"\0" + pw.encode()).decode()


def read(path):
    with open(path, "rb") as f:
        return f.read()


# --- STARTTLS ---------------------------------------------------------------------------------


def test_starttls_then_auth_with_smtplib(make, pki):
    svc = make()
    with client(svc) as c:
        code, caps = c.ehlo("client.test")
        assert code == 250 and b"STARTTLS" in caps
        assert b"AUTH" not in caps  # never offered in clear text
        code, msg = c.docmd("AUTH", "PLAIN " + auth_plain("alice", PASSWORD))
        assert code == 530 and msg.startswith(b"5.7.0"), msg
        assert c.starttls(context=context(pki))[0] == 220
        code, caps = c.ehlo("client.test")
        assert b"STARTTLS" not in caps and b"AUTH PLAIN LOGIN" in caps
        assert c.sock.version() in ("TLSv1.3", "TLSv1.2")
        c.login("alice", PASSWORD)
        assert c.sendmail("alice@example.com", ["bob@example.com"],
                          b"Subject: tls\r\n\r\nunder TLS\r\n") == {}
    [m] = svc.wait_mail("bob", 1)
    text = read(m)
    assert b"Received: from client.test ([127.0.0.1])\n\t(using TLSv1.3 with cipher TLS_" in text
    assert b" with ESMTPSA id " in text and b"alice" not in text.split(b"\n\n")[0].split(
        b"Received:")[1].split(b";")[0]


def test_plain_mail_still_plain(make):
    svc = make()
    with client(svc) as c:
        c.sendmail("s@remote.test", ["bob@example.com"], b"Subject: p\r\n\r\nplain\r\n")
    [m] = svc.wait_mail("bob", 1)
    text = read(m)
    assert b" with ESMTP id " in text and b"using TLS" not in text


def test_swaks_tls_and_auth(make, pki):
    svc = make()
    for mech in ("PLAIN", "LOGIN"):
        p = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(svc.sub), "--tls",
                            "--tls-verify", "--tls-ca-path", pki.ca, "--tls-sni", "localhost",
                            "-a", mech, "-au", "alice", "-ap", PASSWORD,
                            "--from", "alice@example.com", "--to", "bob@example.com",
                            "--h-Subject", "swaks " + mech, "--helo", "swaks.test"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "235 2.7.0" in p.stdout, p.stdout
    mails = svc.wait_mail("bob", 2)
    subjects = sorted(l for m in mails for l in read(m).split(b"\n") if l.startswith(b"Subject"))
    assert subjects == [b"Subject: swaks LOGIN", b"Subject: swaks PLAIN"]
    p = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(svc.sub), "--tls",
                        "-a", "PLAIN", "-au", "alice", "-ap", "not the password",
                        "--from", "alice@example.com", "--to", "bob@example.com"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "535 5.7.8" in p.stdout, p.stdout


def s_client(port, *extra, ca=None):
    args = ["openssl", "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{port}",
            "-servername", "localhost", "-brief", "-ign_eof", *extra]
    if ca:
        args += ["-CAfile", ca, "-verify_return_error"]
    return subprocess.run(args, input="EHLO s.test\r\nQUIT\r\n", capture_output=True, text=True,
                          timeout=60)


def test_openssl_s_client_versions_and_ciphers(make, pki):
    svc = make()
    p = s_client(svc.port, ca=pki.ca)
    assert p.returncode == 0, p.stderr
    assert "Protocol version: TLSv1.3" in p.stderr and "Verification: OK" in p.stderr, p.stderr
    assert "250 AUTH PLAIN LOGIN" in p.stdout, p.stdout
    p = s_client(svc.port, "-tls1_2", ca=pki.ca)
    assert p.returncode == 0 and "Protocol version: TLSv1.2" in p.stderr, p.stderr
    assert "ECDHE-ECDSA" in p.stderr and "GCM" in p.stderr or "CHACHA20" in p.stderr, p.stderr
    # No forward secrecy or no AEAD: refused (here a CBC suite), and nothing older than 1.2.
    assert s_client(svc.port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA").returncode != 0
    assert s_client(svc.port, "-tls1_1").returncode != 0


def test_starttls_injection_is_discarded(make, pki):
    """CVE-2011-0411: commands pipelined after STARTTLS in the same packet must not be run
    after the handshake as if the client had sent them under TLS."""
    svc = make()
    with socket.create_connection(("127.0.0.1", svc.port), timeout=WAIT) as sk:
        f = sk.makefile("rb")
        assert f.readline().startswith(b"220 ")
        sk.sendall(b"EHLO inject.test\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        sk.sendall(b"STARTTLS\r\nMAIL FROM:<evil@remote.test>\r\nRCPT TO:<bob@example.com>\r\n")
        assert f.readline().startswith(b"220 2.0.0")
        tls = context(pki).wrap_socket(sk, server_hostname="localhost")
        tf = tls.makefile("rb")
        tls.sendall(b"EHLO inject.test\r\n")
        while not tf.readline().startswith(b"250 "):
            pass
        tls.sendall(b"RCPT TO:<bob@example.com>\r\n")
        assert tf.readline().startswith(b"503 "), "the injected MAIL FROM was run"
        tls.sendall(b"QUIT\r\n")
        assert tf.readline().startswith(b"221 ")


def test_state_is_fresh_after_starttls(make, pki):
    svc = make()
    with client(svc) as c:
        c.ehlo("before.test")
        c.starttls(context=context(pki))
        code, _ = c.docmd("MAIL FROM:<s@remote.test>")  # no EHLO after TLS yet
        assert code == 503
        c.ehlo("after.test")
        assert c.docmd("STARTTLS")[0] == 503  # TLS is on already
        assert c.docmd("MAIL FROM:<s@remote.test>")[0] == 250
        assert c.rcpt("bob@example.com")[0] == 250
        assert c.data(b"Subject: fresh\r\n\r\nx\r\n")[0] == 250
    [m] = svc.wait_mail("bob", 1)
    assert b"Received: from after.test " in read(m)


# --- certificates -----------------------------------------------------------------------------


@pytest.mark.parametrize("cert,key,why", [
    ("expired_cert", "expired_key", "expired"),
    ("chain", "wrong_key", "does not belong"),
    ("/nonexistent/cert.pem", "key", "not a readable PEM"),
])
def test_unusable_certificate(make, cert, key, why):
    svc = make(cert=cert, key=key, console=True)
    with client(svc) as c:
        code, caps = c.ehlo("client.test")
        assert code == 250 and b"STARTTLS" not in caps
        assert c.docmd("STARTTLS")[0] in (502, 454)
    # submissions cannot speak without a certificate: the connection is closed at once.
    with socket.create_connection(("127.0.0.1", svc.subs), timeout=WAIT) as sk:
        assert sk.recv(100) == b""
    # Mail still comes in plain text.
    with client(svc) as c:
        c.sendmail("s@remote.test", ["bob@example.com"], b"Subject: p\r\n\r\nplain\r\n")
    svc.wait_mail("bob", 1)
    events = svc.events()
    assert "Event 4168" in events and why in events, events


@pytest.fixture
def files():
    """A folder the service account can read (pytest's tmp_path is under a 0700 one)."""
    d = tempfile.mkdtemp(prefix="ims-certs-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_certificate_garbage_file(make, files):
    bad = os.path.join(files, "garbage.pem")
    with open(bad, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    svc = make(cert=str(bad), key=str(bad), console=True)
    with client(svc) as c:
        assert b"STARTTLS" not in c.ehlo("client.test")[1]
    assert "Event 4168" in svc.events()


def test_certificate_reloaded_on_change(make, pki, files):
    """The files appear (and later change) while imsd runs: used without a restart."""
    from pathlib import Path
    tmp_path = Path(files)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    svc = make(cert=str(cert), key=str(key), console=True)
    with client(svc) as c:
        assert b"STARTTLS" not in c.ehlo("client.test")[1]
    shutil.copy(pki.chain, tmp_path / ".cert.pem")
    shutil.copy(pki.key, tmp_path / ".key.pem")
    for n in ("cert.pem", "key.pem"):
        os.chmod(tmp_path / ("." + n), 0o644)
    os.rename(tmp_path / ".key.pem", key)
    os.rename(tmp_path / ".cert.pem", cert)

    def offered():
        with client(svc) as c:
            return b"STARTTLS" in c.ehlo("client.test")[1]
    wait_for(offered, "STARTTLS offered after the certificate appeared")
    with client(svc) as c:
        c.ehlo("client.test")
        c.starttls(context=context(pki))
        peer = c.sock.getpeercert()
        assert ("DNS", "mail.example.test") in peer["subjectAltName"]
    svc.wait_event("Event 4169")
    # A broken replacement is refused and the good pair stays in use.
    with open(cert, "w") as f:
        f.write("half-written\n")
    svc.wait_event("Event 4168", 2)  # the first: at start, when the files were not there
    with client(svc) as c:
        c.ehlo("client.test")
        c.starttls(context=context(pki))
        assert c.noop()[0] == 250
    events = svc.events()
    assert "The certificate read before stays in use" in events, events


# --- AUTH -------------------------------------------------------------------------------------


def test_wrong_password_and_unknown_account_look_the_same(make, pki):
    svc = make(console=True)
    replies = []
    with client(svc, svc.sub) as c:
        c.ehlo("c.test")
        c.starttls(context=context(pki))
        c.ehlo("c.test")
        for user, pw in (("alice", "wrong"), ("nosuchuser", "wrong")):
            replies.append(c.docmd("AUTH", "PLAIN " + auth_plain(user, pw)))
        c.login("alice", PASSWORD)  # the session goes on after failures
    assert replies[0] == replies[1] == (535, b"5.7.8 Authentication credentials invalid")
    events = svc.events()
    lines = [l for l in events.splitlines() if "Event 4183" in l]
    assert len(lines) == 2, events
    assert "client 127.0.0.1" in lines[0] and 'account "alice"' in lines[0]
    assert 'account "nosuchuser"' in lines[1]


def test_auth_login_and_cancel(make, pki):
    svc = make()
    with client(svc) as c:
        c.ehlo("c.test")
        c.starttls(context=context(pki))
        c.ehlo("c.test")
        assert c.docmd("AUTH", "LOGIN")[0] == 334
        assert c.docmd("*")[0] == 501  # cancelled (RFC 4954 4)
        code, _ = c.docmd("AUTH", "LOGIN " + base64.b64encode(b"bob@example.com").decode())
        assert code == 334
        assert c.docmd(base64.b64encode(BOB_PASSWORD.encode()).decode())[0] == 235
        assert c.docmd("AUTH", "PLAIN " + auth_plain("bob", BOB_PASSWORD))[0] == 503


def test_failures_slow_down_then_end_the_session(make, pki):
    svc = make(console=True)
    with client(svc, svc.sub) as c:
        c.ehlo("c.test")
        c.starttls(context=context(pki))
        c.ehlo("c.test")
        codes = [c.docmd("AUTH", "PLAIN " + auth_plain("alice", "guess%d" % i))[0]
                 for i in range(5)]
        assert codes == [535] * 5, codes
        # ... and the fifth ends the session: 421 4.7.0 follows it, then the close.
        code, msg = c.docmd("NOOP")  # reads the 421 that was sent after the fifth 535
        assert code == 421 and msg.startswith(b"4.7.0"), msg
    events = svc.events()
    lines = [l for l in events.splitlines() if "Event 4183" in l]
    assert len(lines) == 5, events
    assert "next attempt waits" not in lines[1]
    assert "(3 failures from this address; its next attempt waits 1 s)" in lines[2], lines
    assert "(4 failures from this address; its next attempt waits 2 s)" in lines[3], lines


def test_auth_failures_per_client_refuse_its_connections(make, pki):
    """MaxAuthFailuresPerClient 3: after three failed AUTHs from 127.0.0.1 its next
    connection gets 421 4.7.0 at once (one event), on every listener; 127.0.0.2 is served."""
    svc = make(params=[("MaxAuthFailuresPerClient", "REG_DWORD", "3")], console=True)
    with client(svc, svc.sub) as c:
        c.ehlo("c.test")
        c.starttls(context=context(pki))
        c.ehlo("c.test")
        codes = [c.docmd("AUTH", "PLAIN " + auth_plain("alice", "guess%d" % i))[0]
                 for i in range(3)]
        assert codes == [535] * 3, codes
    for port in (svc.port, svc.sub):
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sk:
                line = sk.makefile("rb").readline()
            assert line.startswith(b"421 4.7.0 ") and b"authentication" in line, line
    with smtplib.SMTP("127.0.0.1", svc.port, timeout=WAIT, source_address=("127.0.0.2", 0)) as c:
        assert c.noop()[0] == 250
    events = svc.events()
    lines = [l for l in events.splitlines() if "Event 2021 " in l]
    assert len(lines) == 1 and "MaxAuthFailuresPerClient" in lines[0], events


def test_allow_auth_without_tls_and_disable_auth(make, pki):
    svc = make(params=[("AllowAuthWithoutTls", "REG_DWORD", "1")])
    with client(svc) as c:
        assert b"AUTH PLAIN LOGIN" in c.ehlo("c.test")[1]
        c.login("alice", PASSWORD)
    svc2 = make(params=[("DisableAuth", "REG_DWORD", "1")])
    with client(svc2) as c:
        c.ehlo("c.test")
        c.starttls(context=context(pki))
        assert b"AUTH" not in c.ehlo("c.test")[1]
        assert c.docmd("AUTH", "PLAIN " + auth_plain("alice", PASSWORD))[0] in (502, 503)
    with client(svc2, svc2.sub) as c:  # submission keeps AUTH
        c.ehlo("c.test")
        c.starttls(context=context(pki))
        assert b"AUTH PLAIN LOGIN" in c.ehlo("c.test")[1]
        c.login("alice", PASSWORD)


# --- the submission listeners and their rules ------------------------------------------------


def test_submission_port_requires_auth_and_relays(make, pki):
    svc = make()
    with client(svc, svc.sub) as c:
        c.ehlo("c.test")
        code, msg = c.docmd("MAIL FROM:<alice@example.com>")
        assert code == 530 and msg.startswith(b"5.7.0"), msg
        c.starttls(context=context(pki))
        c.ehlo("c.test")
        assert c.docmd("MAIL FROM:<alice@example.com>")[0] == 530
        c.login("alice", PASSWORD)
        assert c.docmd("MAIL FROM:<alice@example.com>")[0] == 250
        assert c.rcpt("friend@remote.test")[0] == 250  # relayed for a logged-on client
        c.rset()


def test_smtp_port_relays_only_with_bit_8(make, pki):
    for flags, want in (("0", 550), ("8", 250)):
        svc = make(params=[("RelayFlags", "REG_DWORD", flags)])
        with client(svc) as c:
            c.ehlo("c.test")
            c.starttls(context=context(pki))
            c.ehlo("c.test")
            c.login("alice", PASSWORD)
            c.mail("alice@example.com")
            assert c.rcpt("friend@remote.test")[0] == want, flags
            c.rset()
        svc.stop()


def test_submissions_port_implicit_tls(make, pki):
    svc = make()
    with smtplib.SMTP_SSL("127.0.0.1", svc.subs, timeout=WAIT, context=context(pki)) as c:
        code, caps = c.ehlo("c.test")
        assert b"STARTTLS" not in caps and b"AUTH PLAIN LOGIN" in caps
        assert c.docmd("MAIL FROM:<alice@example.com>")[0] == 530
        c.login("alice@example.com", PASSWORD)  # an address names the account too
        c.sendmail("alice@example.com", ["bob@example.com"], b"Subject: 465\r\n\r\nimplicit\r\n")
    [m] = svc.wait_mail("bob", 1)
    assert b" with ESMTPSA id " in read(m)


@pytest.mark.parametrize("setting,sender,want", [
    ("ClientSubmitMatchAccount", "alice@example.com", 250),
    ("ClientSubmitMatchAccount", "a.smith@example.org", 250),  # alice's other address
    ("ClientSubmitMatchAccount", "bob@example.com", 550),
    ("ClientSubmitMatchAccount", "someone@remote.test", 550),
    ("ClientSubmitHomedOnly", "bob@example.com", 250),
    ("ClientSubmitHomedOnly", "someone@remote.test", 550),
    ("ClientSubmitHomedOnly", "", 250),  # the null sender is nobody's
])
def test_submission_restrictions(make, pki, setting, sender, want):
    svc = make(params=[(setting, "REG_DWORD", "1")])
    with client(svc, svc.sub) as c:
        c.ehlo("c.test")
        c.starttls(context=context(pki))
        c.ehlo("c.test")
        c.login("alice", PASSWORD)
        code, msg = c.docmd(f"MAIL FROM:<{sender}>")
        assert code == want, msg
        if want == 550:
            assert msg.startswith(b"5.7.1"), msg
        c.rset()


def test_protocol_log_hides_credentials(make, pki):
    svc = make(diag=[("SMTP Protocol Log", "5")])
    secret = auth_plain("alice", PASSWORD)
    with client(svc, svc.sub) as c:
        c.ehlo("c.test")
        c.starttls(context=context(pki))
        c.ehlo("c.test")
        assert c.docmd("AUTH", "PLAIN " + secret)[0] == 235
    svc.stop()
    logs = "".join(open(f, errors="replace").read()
                   for f in glob.glob(os.path.join(svc.root, "imcdata", "Log", "*")))
    assert "TLS started: TLSv1.3" in logs, logs
    assert "AUTH PLAIN *" in logs, logs
    assert secret not in logs and PASSWORD not in logs


def test_idle_tls_sessions_do_not_block_plain_mail(make, pki):
    """Sessions that finished a handshake and went quiet, and connections that never start
    theirs, hold no thread and block nothing: plain mail and new TLS sessions go on."""
    svc = make(params=[("MaxInboundConnections", "REG_DWORD", "1000")] + NO_CLIENT_LIMITS)
    held = []
    try:
        for _ in range(150):
            c = client(svc)
            c.ehlo("idle.test")
            c.starttls(context=context(pki))
            c.ehlo("idle.test")
            held.append(c)
        for _ in range(50):  # a TCP connection to 465 that never sends its ClientHello
            held.append(socket.create_connection(("127.0.0.1", svc.subs), timeout=WAIT))
        with client(svc) as c:
            assert c.sendmail("s@remote.test", ["bob@example.com"],
                              b"Subject: beside idle\r\n\r\nx\r\n") == {}
        with smtplib.SMTP_SSL("127.0.0.1", svc.subs, timeout=WAIT, context=context(pki)) as c:
            c.login("alice", PASSWORD)
            c.sendmail("alice@example.com", ["bob@example.com"], b"Subject: tls beside\r\n\r\ny\r\n")
        svc.wait_mail("bob", 2)
        for c in held[:150]:  # and the idle ones still work
            assert c.noop()[0] == 250
    finally:
        for c in held:
            try:
                c.close()
            except OSError:
                pass
