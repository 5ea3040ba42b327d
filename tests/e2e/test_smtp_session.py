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

from test_smtp import WAIT, Service, free_port, wait_for


@pytest.fixture
def svc():
    root = tempfile.mkdtemp(prefix="ims-sess-")
    os.chmod(root, 0o755)
    s = Service(root, free_port())
    yield s
    s.stop()
    shutil.rmtree(root, ignore_errors=True)


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
