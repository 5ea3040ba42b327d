"""test_outbound.py - outbound Internet mail end to end: a real imsd relays what an SMTP client
gives it to recording peers (tests/smtp_peer.py) found by DNS MX (tests/dns_server.py) or a
smart host, retries what was deferred, and returns NDRs and delay notices to the sender.

Each test builds its own world (outbound_world.py): imsd in a temp root relaying for
127.0.0.1, the DNS server, peers on 127.0.0.2..9 at one port (imsd's OutboundPort). Time-outs
and delay notices are tested without waiting by restarting imsd with IMS_TIME_OFFSET. Waits
are bounded (test_smtp.WAIT); nothing measures time."""
import email
import email.policy
import glob
import os
import re

import pytest

from outbound_world import (Rule, final_recipient, flat, message, rcpt_commands,
                            report_parts, reports, restart, send, tracked, wait_out_empty,
                            world)  # noqa: F401  (world: the fixture)
from test_smtp import free_port, wait_for

ZONE = """
remote.test      MX 10 mx1.remote.test
mx1.remote.test  A  127.0.0.2
second.test      MX 10 mx1.second.test
mx1.second.test  A  127.0.0.3
"""
FAST_RETRY = ".0003"  # hours: about 1 s between tries, the last interval repeating


def trace_prefix_only(prefix):
    """prefix (what the relay put before the original) is trace header fields only: one or
    more Received fields, folded or not."""
    lines = prefix.split(b"\r\n")
    assert lines[-1] == b"", prefix
    fields = [l for l in lines[:-1] if not l[:1] in (b" ", b"\t")]
    assert fields, "no Received header added"
    assert all(f.lower().startswith(b"received:") for f in fields), prefix
    return fields


def ndr_for(svc, alias, n=1):
    """The reports in alias's mailbox once there are n of them."""
    return wait_for(lambda: len(reports(svc, alias)) >= n and reports(svc, alias),
                    f"{n} report(s) in {alias}")


def check_ndr(msg, addr, status_re, subject):
    """msg is an NDR for addr with an Action failed and a Status matching status_re."""
    assert str(msg["Subject"]) == "Undeliverable: " + subject
    assert msg["To"].addresses[0].addr_spec.lower() == "alice@example.com"
    text, _, rcpts = report_parts(msg)
    assert "Your message did not reach some or all of the intended recipients." in text
    assert "MSEXCH:IMS:" in text
    [block] = [b for b in rcpts if final_recipient(b) == addr]
    assert str(block["Action"]).strip() == "failed", str(block)
    status = str(block["Status"]).strip()
    assert re.fullmatch(status_re, status), (status, str(block))
    return block


# --- 1. relay by MX ----------------------------------------------------------------------------


def test_relay_via_mx(world):
    world.dns(ZONE)
    peer = world.peer("127.0.0.2")
    svc = world.service()
    original = message("relay one", b"Line one.\r\n.Dotted line.\r\n\r\nLast.\r\n")
    send(svc, "alice@example.com", ["x@remote.test"], original)
    [m] = peer.wait_messages(1)
    assert m["mail_from"] == "alice@example.com"
    assert m["rcpts"] == ["x@remote.test"]
    # Byte for byte, apart from the trace header(s) imsd puts on top.
    assert m["data"].endswith(original), m["data"]
    trace_prefix_only(m["data"][:-len(original)])
    assert m["violations"] == [], m["violations"]
    wait_out_empty(svc)
    # Tracking: 1010 queued outbound, then 1011 transferred to the peer, for the recipient.
    wait_for(lambda: tracked(svc, 1011, "x@remote.test"), "a 1011 tracking line")
    assert tracked(svc, 1010, "x@remote.test"), "no 1010 tracking line"
    assert len(peer.messages()) == 1


# --- 2. local and remote recipients of one message ------------------------------------------------


def test_split_local_and_remote(world):
    world.dns(ZONE)
    peer = world.peer("127.0.0.2")
    svc = world.service()
    original = message("split")
    send(svc, "sender@client.test", ["alice@example.com", "x@remote.test"], original)
    [a] = svc.wait_mail("alice", 1)
    assert open(a, "rb").read().endswith(original.replace(b"\r\n", b"\n"))
    [m] = peer.wait_messages(1)
    assert m["rcpts"] == ["x@remote.test"]  # only the remote recipient goes out
    assert m["data"].endswith(original)
    wait_out_empty(svc)
    assert len(peer.messages()) == 1 and len(svc.mail("alice")) == 1


# --- 3. smart host ---------------------------------------------------------------------------------


def test_smart_host(world):
    peer = world.peer("127.0.0.5")
    # No DnsServers: the smart host spec names an address, so nothing is looked up (and
    # remote.test / second.test are in no DNS this test has).
    svc = world.service(dns=False, smarthost="[127.0.0.5]:%d" % world.outport)
    send(svc, "alice@example.com", ["x@remote.test", "y@second.test"], message("smart"))
    wait_for(lambda: sorted(r for m in peer.messages() for r in m["rcpts"]) ==
             ["x@remote.test", "y@second.test"], "both recipients at the smart host")
    wait_out_empty(svc)
    assert sorted(r for m in peer.messages() for r in m["rcpts"]) == \
        ["x@remote.test", "y@second.test"]


# --- 4. 4xx, then success ------------------------------------------------------------------------


def test_transient_then_delivered_once(world):
    world.dns(ZONE)
    peer = world.peer("127.0.0.2", rules=[Rule("dot", "451 4.3.0 Try again later", times=1)])
    svc = world.service(retry=FAST_RETRY)
    send(svc, "alice@example.com", ["x@remote.test"], message("retry"))
    peer.wait_messages(1)
    wait_out_empty(svc)
    assert len(peer.messages()) == 1
    assert peer.transactions >= 2  # the deferred one and the one that went through
    assert reports(svc, "alice") == []  # no delay notice, no NDR


# --- 5. a dead first exchanger ---------------------------------------------------------------------


def test_dead_first_mx_falls_back_to_second(world):
    world.dns("""
remote.test      MX 10 mx1.remote.test
remote.test      MX 20 mx2.remote.test
mx1.remote.test  A  127.0.0.3
mx2.remote.test  A  127.0.0.2
""")
    peer = world.peer("127.0.0.2")  # nothing listens on 127.0.0.3 at that port
    svc = world.service()
    send(svc, "alice@example.com", ["x@remote.test"], message("fallback"))
    [m] = peer.wait_messages(1)
    assert m["rcpts"] == ["x@remote.test"]
    wait_out_empty(svc)
    assert reports(svc, "alice") == []


# --- 6. 5xx at RCPT: an NDR ------------------------------------------------------------------------


def test_permanent_rcpt_failure_ndr(world):
    world.dns(ZONE)
    world.peer("127.0.0.2", rules=[Rule("rcpt", "550 5.1.1 <x@remote.test>: User unknown",
                                        address="x@remote.test")])
    svc = world.service()
    send(svc, "alice@example.com", ["x@remote.test"], message("bounce me"))
    [ndr] = ndr_for(svc, "alice")
    block = check_ndr(ndr, "x@remote.test", r"5\.1\.1", "bounce me")
    assert "550 5.1.1" in flat(block["Diagnostic-Code"])
    assert str(ndr["Auto-Submitted"]) == "auto-replied"
    wait_out_empty(svc)
    wait_for(lambda: tracked(svc, 1017, ""), "a 1017 (NDR generated) tracking line")
    assert len(reports(svc, "alice")) == 1  # exactly one


# --- 7. null sender: no NDR --------------------------------------------------------------------------


def test_null_sender_permanent_failure_no_ndr(world):
    world.dns(ZONE)
    peer = world.peer("127.0.0.2", rules=[Rule("rcpt", "550 5.1.1 User unknown")])
    svc = world.service()
    # From <> (itself a report): its failure must not be reported to anyone (RFC 5321
    # 6.1: no bounce of a bounce). The administrator may get a copy (event 4120, to Bad).
    send(svc, "", ["x@remote.test"], message("null sender"))
    wait_for(lambda: rcpt_commands(peer, "x@remote.test"), "the peer to see the RCPT")
    wait_out_empty(svc)
    assert svc.mail("alice") == [] and svc.mail("bob") == []
    assert peer.messages() == []  # nothing, not even a report, went out


# --- 8. the message time-out ----------------------------------------------------------------------


def test_expired_timeout_ndr(world):
    world.dns(ZONE)
    peer = world.peer("127.0.0.2", rules=[Rule("rcpt", "451 4.3.0 Try again later")])
    svc = world.service(params=[("MessageTimeoutNormal", "REG_DWORD", "2880")])
    send(svc, "alice@example.com", ["x@remote.test"], message("too late"))
    wait_for(lambda: rcpt_commands(peer), "the first, deferred attempt")
    # Three days on (past the 48 h time-out): the recipient expires.
    restart(svc, offset=3 * 86400)
    ndrs = wait_for(lambda: [r for r in reports(svc, "alice")
                             if str(r["Subject"]).startswith("Undeliverable: ")],
                    "an NDR in alice's mailbox")
    check_ndr(ndrs[0], "x@remote.test", r"4\.\d{1,3}\.\d{1,3}", "too late")
    wait_out_empty(svc)
    # One report in all: the NDR. A delay notice is due too (DelayNotification, 4 h), but
    # a message that has expired is failed, not delayed: a notice now would only say less.
    assert len(reports(svc, "alice")) == 1, [str(r["Subject"]) for r in reports(svc, "alice")]
    assert peer.messages() == []


# --- 9. one delay notice ------------------------------------------------------------------------


def test_delay_notice_once_then_delivered(world):
    world.dns(ZONE)
    peer = world.peer("127.0.0.2", rules=[Rule("rcpt", "451 4.3.0 Try again later")])
    svc = world.service(retry=FAST_RETRY)  # DelayNotification: its default, 240 minutes
    send(svc, "alice@example.com", ["x@remote.test"], message("slow"))
    wait_for(lambda: rcpt_commands(peer), "the first, deferred attempt")
    restart(svc, offset=5 * 3600)
    [notice] = ndr_for(svc, "alice")
    assert str(notice["Subject"]).startswith("Delayed: ")
    _, _, rcpts = report_parts(notice)
    [block] = rcpts
    assert final_recipient(block) == "x@remote.test"
    assert str(block["Action"]).strip() == "delayed"
    assert str(block["Status"]).strip().startswith("4.")
    # The same offset again: the notice was sent already, and is not sent twice. The queue
    # has looked at the message again once the peer sees a new attempt.
    before = len(rcpt_commands(peer))
    restart(svc, offset=5 * 3600)
    wait_for(lambda: len(rcpt_commands(peer)) > before, "an attempt after the second restart")
    peer.clear_rules()  # now the peer takes it
    [m] = peer.wait_messages(1)
    assert m["rcpts"] == ["x@remote.test"]
    wait_out_empty(svc)
    assert len(reports(svc, "alice")) == 1


# --- 10. a loop back to ourselves --------------------------------------------------------------


def test_loop_to_myself_ndr(world):
    world.dns("""
loop.test     MX 10 mx.loop.test
mx.loop.test  A  127.0.0.1
""")
    port = free_port()
    # The exchanger is imsd itself: 127.0.0.1 at the port it listens on.
    svc = world.service(port=port, outport=port, diag=[("SMTP Protocol Log", "1")])
    send(svc, "alice@example.com", ["x@loop.test"], message("loop"))
    [ndr] = ndr_for(svc, "alice")
    check_ndr(ndr, "x@loop.test", r"5\.4\.6", "loop")
    assert "loops back to myself" in flat(ndr.as_string()), ndr.as_string()
    wait_out_empty(svc)
    # imsd never connected to itself: its protocol log has only our client's connection.
    log = ""
    for f in glob.glob(os.path.join(svc.root, "imcdata", "Log", "*.LOG")):
        log += open(f, errors="replace").read()
    conns = [l for l in log.splitlines() if "\t+\t" in l and "Connection from" in l]
    assert len(conns) == 1, log
    assert len(svc.mail("alice")) == 1  # the NDR only


# --- 11. HELO-only peers, 8-bit content to a 7-bit peer ----------------------------------------


def test_helo_only_peer(world):
    world.dns(ZONE)
    peer = world.peer("127.0.0.2", helo_only=True)
    svc = world.service()
    original = message("helo only")
    send(svc, "alice@example.com", ["x@remote.test"], original)
    [m] = peer.wait_messages(1)
    assert m["ehlo"] is False and m["helo"]  # EHLO got 500, HELO went through
    assert m["mail_params"] == [] and m["rcpt_params"] == [[]]
    assert m["data"].endswith(original)
    assert m["violations"] == [], m["violations"]


@pytest.mark.parametrize("helo_only", [False, True], ids=["ehlo-no-8bitmime", "helo-only"])
def test_8bit_downgraded_to_quoted_printable(world, helo_only):
    world.dns(ZONE)
    peer = world.peer("127.0.0.2", helo_only=helo_only, eightbitmime=False)
    svc = world.service()
    text = "Grüße aus Köln, café, naïve résumé.\r\nZweite Zeile: €100.\r\n"
    original = message("eight bit", text.encode("utf-8"),
                       extra=b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                             b"Content-Transfer-Encoding: 8bit\r\n")
    send(svc, "alice@example.com", ["x@remote.test"], original, mail_options=["BODY=8BITMIME"])
    [m] = peer.wait_messages(1)
    assert all(b < 128 for b in m["data"]), "an 8-bit byte reached a 7-bit peer"
    assert m["violations"] == [], m["violations"]
    got = email.message_from_bytes(m["data"], policy=email.policy.default)
    assert str(got["Content-Transfer-Encoding"]).strip().lower() == "quoted-printable"
    assert got.get_content().replace("\r\n", "\n") == text.replace("\r\n", "\n")
    assert str(got["Subject"]) == "eight bit"


# --- 12. a connection dropped after the data --------------------------------------------------


def test_drop_after_data_then_retry(world):
    world.dns(ZONE)
    peer = world.peer("127.0.0.2", drop_after_data=1)
    svc = world.service(retry=FAST_RETRY)
    send(svc, "alice@example.com", ["x@remote.test"], message("dropped"))
    peer.wait_messages(1)  # one acknowledged copy
    wait_out_empty(svc)
    everything = peer.messages(include_dropped=True)
    # RFC 1047: a reply lost after the data leaves the client unable to tell whether the
    # server took the message, so it must send again: the receiver may hold it twice (the
    # dropped copy, which a real server may have committed, and the retried one), never
    # more, and exactly one copy was acknowledged.
    assert 1 <= len(everything) <= 2, len(everything)
    assert sum(m["acked"] for m in everything) == 1
    assert reports(svc, "alice") == []


# --- 13. DNS says no: an NDR at once -----------------------------------------------------------


@pytest.mark.parametrize("domain,status", [("nx.test", r"5\.1\.2"), ("nullmx.test", r"5\.1\.10")])
def test_dns_permanent_failure_ndr(world, domain, status):
    world.dns("""
nx.test      NXDOMAIN
nullmx.test  MX 0 .
""")
    # The default RetryInterval (15 min): an NDR within the test's wait is only possible if
    # the failure is taken as permanent at once, as it must be.
    svc = world.service()
    addr = "x@" + domain
    send(svc, "alice@example.com", [addr], message("dns " + domain))
    [ndr] = ndr_for(svc, "alice")
    check_ndr(ndr, addr, status, "dns " + domain)
    wait_out_empty(svc)


# --- 14. a long line ---------------------------------------------------------------------------


def test_long_line_folded(world):
    world.dns(ZONE)
    peer = world.peer("127.0.0.2")
    svc = world.service()
    long_line = bytes(ord("a") + i % 26 for i in range(3000))  # no space to break at
    body = b"before\r\n" + long_line + b"\r\nafter\r\n"
    original = message("long line", body)
    send(svc, "alice@example.com", ["x@remote.test"], original)
    [m] = peer.wait_messages(1)
    lines = m["data"].split(b"\r\n")
    assert max(len(l) + 2 for l in lines) <= 1000, max(len(l) for l in lines)
    assert m["violations"] == [], m["violations"]
    got_body = m["data"].split(b"\r\n\r\n", 1)[1]
    assert got_body != body  # it was folded...
    assert got_body.replace(b"\r\n ", b"") == body  # ...with CRLF SP, and nothing else changed
