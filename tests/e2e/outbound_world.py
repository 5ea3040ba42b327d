"""outbound_world.py - what the outbound end-to-end tests share: a "world" of one imsd that
may relay (RelayFlags 2, RelayAllowList 127.0.0.1), the DNS test server (tests/dns_server.py)
with a zone of the test's, and recording SMTP peers (tests/smtp_peer.py) on 127.0.0.2..9 at
one free high port, which imsd's OutboundPort is set to. Everything started is stopped by
World.close(), which the `world` fixture calls at teardown even when the test failed.

Also the helpers to read what came back: NDRs and delay notices in a Maildir, the tracking
log, the outbound queue."""
import email
import email.policy
import glob
import os
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile

import pytest

from conftest import REPO
from test_smtp import WAIT, Service, free_port, run, wait_for

sys.path.insert(0, os.path.join(REPO, "tests"))
from smtp_peer import Peer, Rule  # noqa: E402,F401  (Rule: for the tests' imports)

DNS_SERVER = os.path.join(REPO, "tests", "dns_server.py")
PEER_HOSTS = ["127.0.0.%d" % i for i in range(2, 10)]


def common_free_port():
    """A port free on every peer address (127.0.0.2..9), so that all peers share it and one
    OutboundPort reaches them all. Bounded: a few tries."""
    for _ in range(20):
        p = free_port()
        ok = True
        for h in PEER_HOSTS:
            with socket.socket() as s:
                try:
                    s.bind((h, p))
                except OSError:
                    ok = False
                    break
        if ok:
            return p
    raise AssertionError("no port free on all of 127.0.0.2..9")


class World:
    def __init__(self, tmp):
        self.tmp = str(tmp)
        self.outport = common_free_port()
        self.peers, self.services, self.procs = [], [], []
        self.dns_port = None

    # --- making things ---------------------------------------------------------------------

    def dns(self, zone):
        """Start tests/dns_server.py on 127.0.0.1 with zone (the file's text); its port."""
        path = os.path.join(self.tmp, "zone%d.txt" % len(self.procs))
        with open(path, "w") as f:
            f.write(zone)
        p = subprocess.Popen([sys.executable, DNS_SERVER, "--port", "0", "--zone", path,
                              "--exit-on-eof"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
        self.procs.append(p)
        line = p.stdout.readline()  # "port N" once bound; "" if it died
        assert line.startswith("port "), f"dns_server.py did not start: {line!r}"
        self.dns_port = int(line.split()[1])
        return self.dns_port

    def peer(self, host="127.0.0.2", port=None, **kw):
        d = os.path.join(self.tmp, "peer-%s-%d" % (host, len(self.peers)))
        p = Peer(host, self.outport if port is None else port, d, **kw)
        self.peers.append(p)
        return p

    def service(self, params=(), dns=True, retry=None, smarthost=None, outport=None, diag=(),
                port=None):
        """An imsd that relays for 127.0.0.1, started. dns: DnsServers = our DNS server (the
        dns() of this world must have been called). retry: RetryInterval. smarthost: a
        SmartHost value. outport: OutboundPort (default the peers' port)."""
        root = tempfile.mkdtemp(prefix="ims-out-")
        os.chmod(root, 0o755)
        p = [("RelayFlags", "REG_DWORD", "2"), ("RelayAllowList", "REG_MULTI_SZ", "127.0.0.1"),
             ("OutboundPort", "REG_DWORD", str(self.outport if outport is None else outport))]
        if dns:
            assert self.dns_port, "call world.dns(zone) first"
            p.append(("DnsServers", "REG_MULTI_SZ", "127.0.0.1:%d" % self.dns_port))
        if retry is not None:
            p.append(("RetryInterval", "REG_SZ", retry))
        if smarthost is not None:
            p.append(("SmartHost", "REG_SZ", smarthost))
        p.extend(params)
        svc = Service(root, port or free_port(), extra_params=p, diag=diag, start=False)
        self.services.append(svc)
        svc.start()
        return svc

    def close(self):
        for svc in self.services:
            svc.stop()
            shutil.rmtree(svc.root, ignore_errors=True)
        for p in self.peers:
            p.stop()
        for p in self.procs:
            try:
                p.stdin.close()  # --exit-on-eof
                p.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                p.kill()
                p.wait()


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    try:
        yield w
    finally:
        w.close()


# --- talking to imsd -------------------------------------------------------------------------


def send(svc, sender, rcpts, data, mail_options=(), rcpt_options=()):
    """Submit one message to imsd; smtplib raises if it is not accepted for every recipient."""
    with smtplib.SMTP("127.0.0.1", svc.port, timeout=WAIT) as c:
        c.ehlo("client.test")
        refused = c.sendmail(sender, rcpts, data, mail_options=list(mail_options),
                             rcpt_options=list(rcpt_options))
        assert refused == {}, refused


def message(subject, body=b"Hello.\r\n", extra=b"", msgid=None):
    msgid = msgid or "<%s@client.test>" % re.sub(r"\W", "", subject)
    return (b"From: Alice <alice@example.com>\r\nTo: <x@remote.test>\r\n"
            b"Subject: " + subject.encode() + b"\r\nMessage-ID: " + msgid.encode() +
            b"\r\nDate: Wed, 1 May 2024 13:40:00 +0200\r\n" + extra + b"\r\n" + body)


def restart(svc, offset=None):
    """A clean stop, then a start; with offset, IMS_TIME_OFFSET=<seconds> in imsd's
    environment (imsctl passes its own on): the queue sees every message as that much older."""
    svc.stop()
    env = dict(svc.env)
    if offset is not None:
        env["IMS_TIME_OFFSET"] = str(offset)
    run("imsctl", "start", env=env)


def out_files(svc):
    d = os.path.join(svc.root, "imcdata", "Out")
    return [e.name for e in os.scandir(d) if e.is_file()] if os.path.isdir(d) else []


def in_files(svc):
    d = os.path.join(svc.root, "imcdata", "In")
    return [e.name for e in os.scandir(d) if e.is_file()] if os.path.isdir(d) else []


def wait_out_empty(svc):
    wait_for(lambda: not out_files(svc) and not in_files(svc), "the Out and In queues empty")


def tracking(svc):
    lines = []
    for f in sorted(glob.glob(os.path.join(svc.root, "Tracking.log", "*.log"))):
        with open(f, errors="replace") as fh:
            lines += fh.read().splitlines()
    return lines


def tracked(svc, event, addr):
    """Tracking lines of event for recipient addr (any case)."""
    return [l for l in tracking(svc) if l.split("\t")[1:2] == [str(event)]
            and addr.lower() in l.lower()]


def rcpt_commands(peer, addr=None):
    return [c for c in peer.commands() if c.upper().startswith("RCPT TO:")
            and (addr is None or addr.lower() in c.lower())]


# --- reading reports -------------------------------------------------------------------------


def parse(path):
    with open(path, "rb") as f:
        return email.message_from_bytes(f.read(), policy=email.policy.default)


def reports(svc, alias):
    """The delivery status notifications (multipart/report) in a mailbox."""
    out = []
    for p in svc.mail(alias):
        m = parse(p)
        if m.get_content_type() == "multipart/report":
            out.append(m)
    return out


def report_parts(msg):
    """(text, per-message fields, [per-recipient fields]) of a delivery-status report."""
    assert msg.get_content_type() == "multipart/report", msg.get_content_type()
    assert msg.get_param("report-type") == "delivery-status"
    parts = list(msg.iter_parts())
    assert parts[0].get_content_type() == "text/plain"
    assert parts[1].get_content_type() == "message/delivery-status"
    blocks = parts[1].get_payload()
    return parts[0].get_content(), blocks[0], blocks[1:]


def final_recipient(block):
    """The address of a Final-Recipient field ("rfc822; a@b" or "rfc822;a@b")."""
    v = re.sub(r"\s+", "", str(block["Final-Recipient"]))
    assert v.lower().startswith("rfc822;"), v
    return v[7:].lower()


def flat(text):
    """Text with its folding and runs of white space made single spaces."""
    return " ".join(str(text).split())
