"""test_smtp_peer.py - the test peer (tests/smtp_peer.py) itself, driven by smtplib and raw
sockets: each behaviour the outbound tests rely on, with assertions that fail if it broke.
No imsd here; everything is on 127.0.0.2 (another loopback host, as the outbound tests use)."""
import json
import os
import smtplib
import socket
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import smtp_peer  # noqa: E402
from smtp_peer import DROP, STALL, Peer, Rule, parse_rule  # noqa: E402

HOST = "127.0.0.2"
WAIT = 10


@pytest.fixture
def make_peer(tmp_path):
    made = []

    def make(**kw):
        p = Peer(HOST, 0, str(tmp_path / ("peer%d" % len(made))), **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


def client(peer):
    return smtplib.SMTP(HOST, peer.port, timeout=WAIT)


def raw(peer, data, wait_close=True):
    """Send raw bytes after the greeting; everything the peer said until it closed or went
    quiet for a second."""
    with socket.create_connection((HOST, peer.port), timeout=WAIT) as sk:
        out = sk.recv(4096)
        sk.sendall(data)
        sk.settimeout(1)
        try:
            for _ in range(1000):
                chunk = sk.recv(65536)
                if not chunk:
                    break
                out += chunk
        except socket.timeout:
            pass
        except ConnectionResetError:
            # A peer that closes with our input unread (421) makes the kernel send RST.
            pass
    return out.decode("latin-1")


def codes(text):
    return [l[:3] for l in text.split("\r\n") if l[:3].isdigit() and l[3:4] == " "]


def test_records_message_exactly(make_peer):
    peer = make_peer()
    body = b"Subject: t\r\n\r\n.leading dot\r\n..two\r\nlast\r\n"
    with client(peer) as c:
        c.ehlo("me.test")
        c.sendmail("a@src.test", ["x@remote.test", "y@remote.test"], body,
                   mail_options=["BODY=8BITMIME"], rcpt_options=["NOTIFY=FAILURE"])
    [m] = peer.wait_messages(1)
    # smtplib dot-stuffs; the peer unstuffs: the data is what the client meant.
    assert m["data"] == body
    assert m["helo"] == "me.test" and m["ehlo"] is True
    assert m["mail_from"] == "a@src.test" and m["mail_params"] == ["BODY=8BITMIME"]
    assert m["rcpts"] == ["x@remote.test", "y@remote.test"]
    assert m["rcpt_params"] == [["NOTIFY=FAILURE"], ["NOTIFY=FAILURE"]]
    assert m["peer"].startswith("127.0.0.1:") and m["acked"] is True and m["violations"] == []
    # The files are there for a peer run as a program too.
    d = peer.directory
    assert open(os.path.join(d, "1.eml"), "rb").read() == body
    assert json.load(open(os.path.join(d, "1.json")))["rcpts"] == m["rcpts"]
    assert peer.connections == 1 and peer.transactions == 1
    assert peer.commands()[:2] == ["ehlo me.test", "mail FROM:<a@src.test> BODY=8BITMIME"]


def test_pipelining_in_one_packet(make_peer):
    peer = make_peer()
    # EHLO alone first (a client cannot know PIPELINING before its reply), then one packet.
    with socket.create_connection((HOST, peer.port), timeout=WAIT) as sk:
        out = sk.recv(4096)
        sk.sendall(b"EHLO c.test\r\n")
        for _ in range(100):
            out += sk.recv(4096)
            if b"250 " in out:
                break
        sk.sendall(b"MAIL FROM:<s@r.test>\r\nRCPT TO:<a@remote.test>\r\n"
                   b"RCPT TO:<b@remote.test>\r\nDATA\r\nSubject: p\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        for _ in range(1000):
            chunk = sk.recv(65536)
            if not chunk:
                break
            out += chunk
    out = out.decode("latin-1")
    assert codes(out) == ["220", "250", "250", "250", "250", "354", "250", "221"], out
    [m] = peer.messages()
    assert m["rcpts"] == ["a@remote.test", "b@remote.test"] and m["data"] == b"Subject: p\r\n\r\nhi\r\n"
    assert peer.violations == []


def test_pipelining_without_offer_is_a_violation(make_peer):
    peer = make_peer(pipelining=False)
    with client(peer) as c:
        c.ehlo("c.test")
        assert "pipelining" not in c.esmtp_features
    raw(peer, b"EHLO c.test\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<a@remote.test>\r\nQUIT\r\n")
    assert any("pipelining without PIPELINING" in v for _, v in peer.violations), peer.violations


def test_extensions_switchable(make_peer):
    full = make_peer(size=1000)
    with client(full) as c:
        c.ehlo("c.test")
        f = c.esmtp_features
        assert {"pipelining", "8bitmime", "dsn", "enhancedstatuscodes"} <= set(f)
        assert f["size"] == "1000"
        assert c.docmd("MAIL FROM:<s@r.test> SIZE=5000")[0] == 552
        assert c.docmd("MAIL FROM:<s@r.test> SIZE=500")[0] == 250
        c.rcpt("x@remote.test")
        code, msg = c.data(b"x" * 2000 + b"\r\n")
        assert code == 552, msg
    assert full.messages() == []
    bare = make_peer(pipelining=False, eightbitmime=False, dsn=False, enhancedstatuscodes=False)
    with client(bare) as c:
        c.ehlo("c.test")
        assert not {"pipelining", "8bitmime", "dsn", "enhancedstatuscodes", "size"} & \
            set(c.esmtp_features), c.esmtp_features
        # Parameters of extensions not offered are refused.
        assert c.docmd("MAIL FROM:<s@r.test> BODY=8BITMIME")[0] == 555
        assert c.docmd("MAIL FROM:<s@r.test> RET=HDRS")[0] == 555
        code, msg = c.docmd("MAIL FROM:<s@r.test>")
        assert code == 250 and not msg[:1].isdigit(), msg  # no enhanced status code
        assert c.docmd("RCPT TO:<x@remote.test> NOTIFY=NEVER")[0] == 555


def test_eight_bit_without_body_param_is_a_violation(make_peer):
    peer = make_peer(eightbitmime=False)
    out = raw(peer, b"EHLO c.test\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<a@remote.test>\r\n"
                    b"DATA\r\nSubject: e\r\n\r\ncaf\xc3\xa9\r\n" + b"y" * 1200 + b"\r\n.\r\nQUIT\r\n")
    assert codes(out)[-2:] == ["250", "221"], out
    [m] = peer.messages()
    assert "8-bit data without BODY=8BITMIME" in m["violations"]
    assert "data line of 1202 octets" in m["violations"]


def test_helo_only(make_peer):
    peer = make_peer(helo_only=True)
    with client(peer) as c:
        # smtplib's sendmail tries EHLO, gets 500, falls back to HELO.
        c.sendmail("s@r.test", ["x@remote.test"], b"Subject: h\r\n\r\nhelo\r\n")
    [m] = peer.wait_messages(1)
    assert m["ehlo"] is False and m["helo"]
    cmds = [l.split()[0].upper() for l in peer.commands()]
    assert cmds[:2] == ["EHLO", "HELO"], cmds
    with client(peer) as c:
        c.helo("c.test")
        assert c.docmd("MAIL FROM:<s@r.test> BODY=8BITMIME")[0] == 555


@pytest.mark.parametrize("code", [421, 554])
def test_greeting_code(make_peer, code):
    peer = make_peer(greeting=code)
    out = raw(peer, b"EHLO c.test\r\nQUIT\r\n")
    assert out.startswith(str(code)), out
    if code == 421:
        assert codes(out) == ["421"], out  # closed at once
    else:
        assert codes(out) == ["554", "503", "221"], out  # RFC 5321 3.1: waits for QUIT
    assert peer.messages() == []


def test_rule_first_n_times_across_connections(make_peer):
    peer = make_peer(rules=[Rule("dot", "451 4.3.0 Try again later", times=1)])
    msg = b"Subject: r\r\n\r\nretry\r\n"
    with client(peer) as c:
        with pytest.raises(smtplib.SMTPDataError) as e:
            c.sendmail("s@r.test", ["x@remote.test"], msg)
        assert e.value.smtp_code == 451
    assert peer.messages() == []
    with client(peer) as c:  # a new connection: the rule has fired its once
        c.sendmail("s@r.test", ["x@remote.test"], msg)
    assert len(peer.messages()) == 1 and peer.connections == 2


def test_rules_per_stage_and_address(make_peer):
    peer = make_peer(rules=[parse_rule("rcpt/bad@remote.test=550 5.1.1 User unknown")])
    with client(peer) as c:
        refused = c.sendmail("s@r.test", ["good@remote.test", "BAD@remote.test"],
                             b"Subject: a\r\n\r\nx\r\n")
        assert refused == {"BAD@remote.test": (550, b"5.1.1 User unknown")}
    assert peer.messages()[0]["rcpts"] == ["good@remote.test"]
    peer.set_rules([Rule("mail", "452 4.3.1 Insufficient storage")])
    with client(peer) as c:
        c.ehlo("c.test")
        assert c.docmd("MAIL FROM:<s@r.test>")[0] == 452
    peer.set_rules([Rule("rcpt", "550 5.7.1 No")])
    with client(peer) as c:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            c.sendmail("s@r.test", ["a@remote.test"], b"x\r\n")
    peer.set_rules([Rule("data", "554 5.3.0 No data today")])
    with client(peer) as c:
        with pytest.raises(smtplib.SMTPDataError) as e:
            c.sendmail("s@r.test", ["a@remote.test"], b"x\r\n")
        assert e.value.smtp_code == 554
    peer.clear_rules()
    with client(peer) as c:
        c.sendmail("s@r.test", ["a@remote.test"], b"x\r\n")
    assert len(peer.messages()) == 2


def test_parse_rule():
    r = parse_rule("dot*2=451 4.3.0 later")
    assert (r.stage, r.action, r.address, r.times) == ("dot", "451 4.3.0 later", None, 2)
    r = parse_rule("rcpt/X@Remote.test=drop")
    assert (r.stage, r.action, r.address) == ("rcpt", DROP, "x@remote.test")
    assert parse_rule("data*1=stall").action == STALL
    with pytest.raises(ValueError):
        parse_rule("nosuchstage=250 ok")
    with pytest.raises(ValueError):
        parse_rule("mail=hello")


def test_drop_after_data(make_peer):
    peer = make_peer(drop_after_data=1)
    msg = b"Subject: d\r\n\r\ndropped once\r\n"
    with client(peer) as c:
        with pytest.raises(smtplib.SMTPServerDisconnected):
            c.sendmail("s@r.test", ["x@remote.test"], msg)
    # Received whole but not acknowledged: recorded as such, not among messages().
    assert peer.messages() == []
    [d] = peer.messages(include_dropped=True)
    assert d["acked"] is False and d["data"] == msg
    with client(peer) as c:
        c.sendmail("s@r.test", ["x@remote.test"], msg)
    assert [m["acked"] for m in peer.messages(include_dropped=True)] == [False, True]


def test_stall_greeting(make_peer):
    peer = make_peer(stall="greeting")
    with socket.create_connection((HOST, peer.port), timeout=WAIT) as sk:
        sk.settimeout(1)
        with pytest.raises(socket.timeout):
            sk.recv(10)
    assert peer.connections == 1


def test_stall_at_stage(make_peer):
    peer = make_peer(stall="rcpt")
    with socket.create_connection((HOST, peer.port), timeout=WAIT) as sk:
        assert sk.recv(4096).startswith(b"220")
        sk.sendall(b"HELO c.test\r\nMAIL FROM:<s@r.test>\r\n")
        got = b""
        for _ in range(10):
            got += sk.recv(4096)
            if got.count(b"\r\n") >= 2:
                break
        assert codes(got.decode()) == ["250", "250"]
        sk.sendall(b"RCPT TO:<x@remote.test>\r\n")
        sk.settimeout(1)
        with pytest.raises(socket.timeout):
            sk.recv(10)


def test_close_421_at_stage(make_peer):
    peer = make_peer(close_421="mail")
    out = raw(peer, b"EHLO c.test\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<x@remote.test>\r\n")
    assert codes(out) == ["220", "250", "421"], out


def test_max_connections(make_peer):
    peer = make_peer(max_connections=2)
    held = [socket.create_connection((HOST, peer.port), timeout=WAIT) for _ in range(2)]
    try:
        for s in held:
            assert s.recv(4096).startswith(b"220")
        with socket.create_connection((HOST, peer.port), timeout=WAIT) as third:
            assert third.recv(4096).startswith(b"421")
            assert third.recv(4096) == b""  # closed
        assert peer.refused == 1
    finally:
        for s in held:
            s.close()
    # Once those went, a new connection is served again.
    for _ in range(100):
        if peer.active == 0:
            break
        time.sleep(0.02)
    with client(peer) as c:
        assert c.noop()[0] == 250


def test_bounded_command_line(make_peer):
    peer = make_peer(max_line=600)
    out = raw(peer, b"EHLO c.test\r\nNOOP " + b"x" * 5000 + b"\r\n")
    assert codes(out) == ["220", "250", "500"], out


def test_stop_joins_stalled_connections(make_peer):
    peer = make_peer(stall="greeting")
    socks = [socket.create_connection((HOST, peer.port), timeout=WAIT) for _ in range(3)]
    try:
        for _ in range(100):
            if peer.active == 3:
                break
            time.sleep(0.02)
        t0 = time.monotonic()
        peer.stop()
        assert all(not t.is_alive() for t in peer._threads)
        assert time.monotonic() - t0 < 5
    finally:
        for s in socks:
            s.close()


def test_program(tmp_path):
    """As a program: prints its port, records to --dir, stops at end of stdin."""
    d = tmp_path / "rec"
    p = subprocess.Popen([sys.executable, smtp_peer.__file__, "--address", HOST, "--port", "0",
                          "--dir", str(d), "--reply", "rcpt/no@remote.test=550 5.1.1 No",
                          "--exit-on-eof"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert line.startswith("port "), line
        port = int(line.split()[1])
        with smtplib.SMTP(HOST, port, timeout=WAIT) as c:
            refused = c.sendmail("s@r.test", ["yes@remote.test", "no@remote.test"], b"x\r\n")
            assert list(refused) == ["no@remote.test"]
        [m] = smtp_peer.read_messages(str(d))
        assert m["rcpts"] == ["yes@remote.test"] and m["data"] == b"x\r\n"
        p.stdin.close()
        assert p.wait(WAIT) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
