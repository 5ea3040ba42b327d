"""test_smtp_session.py - the SMTP conversation as real clients hold it: transactions reset by
RSET, EHLO or HELO in every state, then reused; clients on IPv6 (::1) and how they are written
in Received and the tracking log; mail for postmaster. A real imsd on loopback each time."""
import glob
import os
import shutil
import smtplib
import socket
import tempfile

import pytest

from test_smtp import WAIT, Service, free_port, run, svc, wait_for  # noqa: F401 (svc: fixture)


# What each state is reached by, on a connection that said EHLO: (commands, their codes).
STATES = [
    ("greeted", []),
    ("mail", [("MAIL FROM:<s@remote.test>", 250)]),
    ("rcpt accepted", [("MAIL FROM:<s@remote.test>", 250), ("RCPT TO:<alice@example.com>", 250)]),
    ("rcpt refused", [("MAIL FROM:<s@remote.test>", 250), ("RCPT TO:<alice@example.com>", 250),
                      ("RCPT TO:<nobody@example.com>", 550)]),
    ("after a message", [("MAIL FROM:<s@remote.test>", 250), ("RCPT TO:<alice@example.com>", 250),
                         ("DATA", 354), ("Subject: first\r\n\r\nfirst.\r\n.", 250)]),
    ("after a refused message", [("MAIL FROM:<s@remote.test>", 250),
                                 ("RCPT TO:<alice@example.com>", 250),
                                 ("DATA", 354), ("Subject: bad\r\n\r\nbare\nLF\r\n.", 550)]),
]
RESETS = ["RSET", "EHLO again.test", "HELO again.test"]


class Raw:
    """A client that sends exactly the bytes it is given and reads whole replies."""

    def __init__(self, host, port, family=socket.AF_INET):
        self.sk = socket.socket(family, socket.SOCK_STREAM)
        self.sk.settimeout(WAIT)
        self.sk.connect((host, port))
        self.buf = b""
        assert self.reply()[0] == 220

    def reply(self):
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sk.recv(65536)
                assert chunk, f"connection closed after {lines}"
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode())
            if line[3:4] != b"-":
                return int(line[:3]), "\n".join(lines)

    def cmd(self, text):
        self.sk.sendall(text.encode() + b"\r\n")
        return self.reply()

    def close(self):
        self.sk.close()


@pytest.mark.parametrize("reset", RESETS)
def test_reset_in_every_state_then_deliver(svc, reset):
    """After the reset the connection carries a message for bob alone (the bug: the server's
    own list of the transaction's mailboxes outlived the reset, and DATA got 451 forever)."""
    sent_to_alice = 0
    c = Raw("127.0.0.1", svc.port)
    try:
        assert c.cmd("EHLO client.test")[0] == 250
        for i, (state, steps) in enumerate(STATES):
            for cmd, want in steps:
                code, msg = c.cmd(cmd)
                assert code == want, (state, cmd, code, msg)
            if state == "after a message":
                sent_to_alice += 1
            assert c.cmd(reset)[0] == 250, (state, reset)
            assert c.cmd("MAIL FROM:<s@remote.test>")[0] == 250, state
            assert c.cmd("RCPT TO:<bob@example.com>")[0] == 250, state
            assert c.cmd("DATA")[0] == 354, state
            code, msg = c.cmd(f"Subject: after {state}\r\n\r\nbody {i}.\r\n.")
            assert code == 250, (state, reset, code, msg)
        assert c.cmd("QUIT")[0] == 221
    finally:
        c.close()
    bob = svc.wait_mail("bob", len(STATES))
    assert len(bob) == len(STATES)
    subjects = sorted(open(f, "rb").read().split(b"Subject: ")[1].split(b"\n")[0].strip()
                      for f in bob)
    assert subjects == sorted(f"after {s}".encode() for s, _ in STATES)
    assert len(svc.mail("alice")) == sent_to_alice  # the reset recipients got nothing


def has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def tracking_lines(svc, code, n):
    def ready():
        files = glob.glob(os.path.join(svc.root, "Tracking.log", "*.log"))
        lines = [l for f in files for l in open(f).read().splitlines() if f"\t{code}\t" in l]
        return lines if len(lines) >= n else None
    return wait_for(ready, f"{n} tracking lines {code}")


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
def test_ipv6_client_written_as_rfc5321_says():
    """A client on ::1: Received says [IPv6:::1] (RFC 5321 4.1.3, no port, no nested
    brackets) and the tracking log's client field is the bare address; an IPv4 client beside it
    gets [127.0.0.1]."""
    root = tempfile.mkdtemp(prefix="ims-sess-")
    os.chmod(root, 0o755)
    port = free_port()
    s = Service(root, port, start=False)
    try:
        account = [] if os.geteuid() else ["--account", "nobody"]
        run("imsctl", "install", *account, "--listen", f"127.0.0.1:{port}",
            "--listen", f"[::1]:{port}", env=s.env)
        s.start()
        c = Raw("::1", port, socket.AF_INET6)
        try:
            assert c.cmd("EHLO v6.client.test")[0] == 250
            assert "[::1]" in c.cmd("HELO v6.client.test")[1]  # the greeting names the client
            assert c.cmd("MAIL FROM:<s@remote.test>")[0] == 250
            assert c.cmd("RCPT TO:<alice@example.com>")[0] == 250
            assert c.cmd("DATA")[0] == 354
            assert c.cmd("Subject: v6\r\n\r\nover IPv6.\r\n.")[0] == 250
        finally:
            c.close()
        with smtplib.SMTP("127.0.0.1", port, timeout=WAIT) as v4:
            v4.ehlo("v4.client.test")
            v4.sendmail("s@remote.test", ["bob@example.com"], b"Subject: v4\r\n\r\nover IPv4.\r\n")
        [a] = s.wait_mail("alice", 1)
        [b] = s.wait_mail("bob", 1)
        head = open(a, "rb").read().split(b"Subject:")[0]
        assert b"Received: from v6.client.test ([IPv6:::1])" in head, head
        assert b"]:" not in head and b"[[" not in head, head
        head = open(b, "rb").read().split(b"Subject:")[0]
        assert b"Received: from v4.client.test ([127.0.0.1])" in head, head
        lines = tracking_lines(s, 1012, 2)
        fields = [l.split("\t") for l in lines]
        assert any("::1" in f for f in fields), lines
        assert any("127.0.0.1" in f for f in fields), lines
        for l in lines:  # no "address:port" and no brackets in any field
            assert "[" not in l and "::1]" not in l and "127.0.0.1:" not in l, l
    finally:
        s.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_dsn_parameters_kept_in_the_spool(svc):
    """RFC 3461's NOTIFY, ORCPT, ENVID and RET are kept with the message (they were parsed and
    dropped): a delivery held back by an unwritable Maildir leaves the spool file in In to read."""
    new = os.path.join(svc.root, "store", "bob", "new")
    os.chmod(new, 0o500)
    try:
        c = Raw("127.0.0.1", svc.port)
        try:
            assert c.cmd("EHLO client.test")[0] == 250
            assert c.cmd("MAIL FROM:<s@remote.test> RET=HDRS ENVID=QQ+2B314")[0] == 250
            assert c.cmd("RCPT TO:<bob@example.com> NOTIFY=failure,SUCCESS "
                         "ORCPT=rfc822;Bob+40example.com")[0] == 250
            assert c.cmd("RCPT TO:<alice@example.com>")[0] == 250
            assert c.cmd("DATA")[0] == 354
            assert c.cmd("Subject: dsn\r\n\r\nkept.\r\n.")[0] == 250
        finally:
            c.close()
        in_dir = os.path.join(svc.root, "imcdata", "In")

        def spooled():
            names = [n for n in os.listdir(in_dir) if n != "Archive"]
            return names
        [name] = wait_for(spooled, "the message in In")
        head = open(os.path.join(in_dir, name), "rb").read().split(b"\n\n")[0].decode()
        lines = head.splitlines()
        assert "envid QQ+2B314" in lines and "ret HDRS" in lines, lines
        rcpts = [l.split("\t") for l in lines if l.startswith("rcpt ")]
        assert rcpts[0][:3] == ["rcpt SUCCESS,FAILURE", "rfc822;Bob+40example.com",
                                "bob@example.com"], rcpts
        assert rcpts[1][:3] == ["rcpt -", "-", "alice@example.com"], rcpts
    finally:
        os.chmod(new, 0o700)
    svc.wait_mail("bob", 1)  # the retry delivers it once the Maildir is writable again
