"""test_outbound_more.py - more of the outbound side end to end (see test_outbound.py for the
world): MaxRecipients batches, OutboundSizeLimit, the hop limit, NOTIFY=SUCCESS receipts when
the next hop has no DSN, and the administrator's copies of NDRs (AdminNdrCopy)."""
import glob
import os
import smtplib
import socket
import threading
import time

import pytest

from outbound_world import (Rule, final_recipient, message, report_parts, reports, send,
                            wait_out_empty, world)  # noqa: F401  (world: the fixture)
from test_smtp import run, wait_for

ZONE = """
remote.test      MX 10 mx1.remote.test
mx1.remote.test  A  127.0.0.2
"""


def test_max_recipients_batches(world):
    """MaxRecipients 2: five recipients go in three transactions on the peer, each with at
    most two, and every one is delivered once."""
    world.dns(ZONE)
    peer = world.peer("127.0.0.2")
    svc = world.service(params=[("MaxRecipients", "REG_DWORD", "2")])
    rcpts = ["r%d@remote.test" % i for i in range(5)]
    send(svc, "alice@example.com", rcpts, message("batches"))
    msgs = peer.wait_messages(3)
    wait_out_empty(svc)
    msgs = peer.messages()
    assert len(msgs) == 3, [m["rcpts"] for m in msgs]
    assert all(len(m["rcpts"]) <= 2 for m in msgs)
    assert sorted(r for m in msgs for r in m["rcpts"]) == rcpts


def test_outbound_size_limit_ndr(world):
    """A message over OutboundSizeLimit is never sent: its sender gets an NDR (5.3.4)."""
    world.dns(ZONE)
    peer = world.peer("127.0.0.2")
    svc = world.service(params=[("OutboundSizeLimit", "REG_DWORD", "1000")])
    send(svc, "alice@example.com", ["x@remote.test"], message("too big", b"y" * 70 + b"\r\n") * 1
         + b"z" * 2000 + b"\r\n")
    [ndr] = wait_for(lambda: reports(svc, "alice"), "an NDR")
    _, _, blocks = report_parts(ndr)
    [b] = blocks
    assert final_recipient(b) == "x@remote.test"
    assert str(b["Status"]).strip() == "5.3.4"
    wait_out_empty(svc)
    assert peer.messages() == [] and peer.connections == 0


def test_hop_limit_ndr(world):
    """30 Received fields: a loop between gateways, an NDR 5.4.6 and no connection."""
    world.dns(ZONE)
    peer = world.peer("127.0.0.2")
    svc = world.service()
    trace = b"".join(b"Received: from hop%d.test by hop%d.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                     % (i, i + 1) for i in range(30))
    send(svc, "alice@example.com", ["x@remote.test"], trace + message("looping"))
    [ndr] = wait_for(lambda: reports(svc, "alice"), "an NDR")
    _, _, blocks = report_parts(ndr)
    assert str(blocks[0]["Status"]).strip() == "5.4.6"
    wait_out_empty(svc)
    assert peer.messages() == [] and peer.connections == 0


def test_success_notify_relayed_without_peer_dsn(world):
    """NOTIFY=SUCCESS to a peer that does not offer DSN: delivered, and the sender gets a
    "relayed" report; a peer with DSN gets the parameter instead and we send none."""
    world.dns(ZONE + "dsn.test MX 10 mx.dsn.test\nmx.dsn.test A 127.0.0.3\n")
    plain = world.peer("127.0.0.2", dsn=False)
    withdsn = world.peer("127.0.0.3")
    svc = world.service()
    send(svc, "alice@example.com", ["x@remote.test"], message("receipt please"),
         rcpt_options=["NOTIFY=SUCCESS,FAILURE"])
    plain.wait_messages(1)
    [rep] = wait_for(lambda: reports(svc, "alice"), "a relayed report")
    assert str(rep["Subject"]) == "Relayed: receipt please"
    _, _, blocks = report_parts(rep)
    assert str(blocks[0]["Action"]).strip() == "relayed"
    assert str(blocks[0]["Status"]).strip().startswith("2.")
    send(svc, "alice@example.com", ["y@dsn.test"], message("peer reports"),
         rcpt_options=["NOTIFY=SUCCESS"])
    [m] = withdsn.wait_messages(1)
    assert any("NOTIFY=SUCCESS" in p for p in m["rcpt_params"][0]), m["rcpt_params"]
    wait_out_empty(svc)
    assert len(reports(svc, "alice")) == 1  # still only the first


def test_admin_copy_of_ndr(world):
    """AdminNdrCopy 1: the administrator's mailbox (postmaster) gets a copy of the NDR."""
    world.dns(ZONE)
    world.peer("127.0.0.2", rules=[Rule("rcpt", "550 5.1.1 User unknown")])
    svc = world.service(params=[("AdminNdrCopy", "REG_DWORD", "1")])
    run("imsadm", "mailbox", "add", "postmaster", "--address", "postmaster@example.com",
        env=svc.env, check=False)
    send(svc, "alice@example.com", ["x@remote.test"], message("copy the admin"))
    wait_for(lambda: reports(svc, "alice"), "the NDR")
    [copy] = wait_for(lambda: reports(svc, "postmaster"), "the administrator's copy")
    assert str(copy["Subject"]) == "Undeliverable: copy the admin"
    wait_out_empty(svc)


class Listener:
    """A host that is up but does not take mail: each connection gets `greeting` (None:
    nothing) and is closed at once, or after `hold` seconds. It counts them."""

    def __init__(self, family, host, port, greeting=None, hold=0):
        self.count, self.greeting, self.hold = 0, greeting, hold
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.stopping = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.count += 1
            with c:
                if self.greeting:
                    c.sendall(self.greeting)
                if self.hold:
                    time.sleep(self.hold)

    def stop(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


@pytest.mark.parametrize("family", [None, "ipv4"])
def test_address_family(world, family):
    """An exchanger with an IPv6 address that refuses (554) and an IPv4 one that takes the
    mail: by default IPv6 is tried first and the other family follows; with the routing
    entry's AddressFamily ipv4 the IPv6 address is never tried."""
    world.dns("v6.test MX 10 mx.v6.test\nmx.v6.test AAAA ::1\nmx.v6.test A 127.0.0.2\n")
    peer = world.peer("127.0.0.2")
    v6 = Listener(socket.AF_INET6, "::1", world.outport, b"554 5.7.1 no IPv6 clients here\r\n")
    try:
        svc = world.service()
        if family:
            key = r"HKLM\System\CurrentControlSet\Services\MSExchangeIMC\Parameters\Routing\v6.test"
            run("reg", "add", key, "/v", "Host", "/d", "<dns>", "/f", env=svc.env)
            run("reg", "add", key, "/v", "AddressFamily", "/d", family, "/f", env=svc.env)
            svc.stop()
            svc.start()
        send(svc, "alice@example.com", ["x@v6.test"], message("families"))
        peer.wait_messages(1)
        wait_out_empty(svc)
        assert v6.count == (0 if family else 1)
    finally:
        v6.stop()


def test_delivered_receipt_local_and_remote_sender(world):
    """NOTIFY=SUCCESS for a local mailbox: the sender gets a "delivered" report -- in her own
    mailbox when she is ours, through the outbound queue to her exchanger when not."""
    world.dns(ZONE)
    peer = world.peer("127.0.0.2")
    svc = world.service()
    send(svc, "bob@example.com", ["alice@example.com"], message("local receipt"),
         rcpt_options=["NOTIFY=SUCCESS"])
    [rep] = wait_for(lambda: reports(svc, "bob"), "bob's receipt")
    assert str(rep["Subject"]) == "Delivered: local receipt"
    _, _, blocks = report_parts(rep)
    assert final_recipient(blocks[0]) == "alice@example.com"
    assert str(blocks[0]["Action"]).strip() == "delivered"
    send(svc, "x@remote.test", ["alice@example.com"], message("remote receipt"),
         rcpt_options=["NOTIFY=SUCCESS"])
    [m] = peer.wait_messages(1)
    assert m["mail_from"] == "" and m["rcpts"] == ["x@remote.test"]
    assert b"Subject: Delivered: remote receipt" in m["data"]
    # Without NOTIFY=SUCCESS there is none.
    send(svc, "bob@example.com", ["alice@example.com"], message("no receipt"))
    wait_for(lambda: len(svc.mail("alice")) == 3, "alice's three messages")
    wait_out_empty(svc)
    assert len(reports(svc, "bob")) == 1


@pytest.mark.parametrize("hold", [0, 0.1])
def test_dead_destination_costs_few_connections(world, hold):
    """100 messages for a domain whose only host hangs up: the destination is remembered as
    dead, so they are all deferred (each recorded) after a handful of connections, not one
    connection each. With hold, the host keeps each connection a while before it hangs up, so
    that a new message's connection is always open beside the one failing (a slow machine's
    case: the destination must still be marked dead)."""
    world.dns("dead.test MX 10 mx.dead.test\nmx.dead.test A 127.0.0.4\n")
    host = Listener(socket.AF_INET, "127.0.0.4", world.outport, hold=hold)
    try:
        svc = world.service(retry="1")
        with smtplib.SMTP("127.0.0.1", svc.port, timeout=20) as c:
            for i in range(100):
                c.sendmail("alice@example.com", ["u%d@dead.test" % i], message("dead %d" % i))
        out = os.path.join(svc.root, "imcdata", "Out")

        def all_deferred():
            names = [n for n in os.listdir(out) if os.path.isfile(os.path.join(out, n))]
            if len(names) != 100:
                return False
            return all(b"\ndefer 0\t1\t" in open(os.path.join(out, n), "rb").read()
                       for n in names)
        wait_for(all_deferred, "100 deferred messages in Out")
        # Connections: the first window (2) and perhaps one per message that was being
        # handed over before the first failure -- far fewer than 100.
        assert host.count <= 10, host.count
    finally:
        host.stop()


def test_outbound_protocol_log(world):
    """SMTP Protocol Log at Medium: an outbound connection is logged like an inbound one, its
    "+" line naming the host, ">" what we sent and "<" what the peer answered."""
    world.dns(ZONE)
    peer = world.peer("127.0.0.2")
    svc = world.service(diag=[("SMTP Protocol Log", "3")])
    send(svc, "alice@example.com", ["x@remote.test"], message("logged"))
    peer.wait_messages(1)
    wait_out_empty(svc)
    svc.stop()  # the connection ends: its "-" line is written
    logs = glob.glob(os.path.join(svc.root, "imcdata", "Log", "*.LOG"))
    text = "".join(open(f, encoding="utf-8", errors="replace").read() for f in logs)
    out = [l for l in text.splitlines()
           if "\t+\tConnection to [127.0.0.2]:%d (outbound)" % world.outport in l]
    assert len(out) == 1, (logs, text)
    conn = out[0].split("\t")[1]
    mine = [l.split("\t", 3) for l in text.splitlines() if l.split("\t")[1:2] == [conn]]
    sent = [l[3] for l in mine if l[2] == ">"]
    got = [l[3] for l in mine if l[2] == "<"]
    assert any(s.startswith("EHLO ") for s in sent), mine
    assert "RCPT TO:<x@remote.test>" in sent, mine
    assert any(g.startswith("220") for g in got), mine
    assert mine[-1][2] == "-", mine
