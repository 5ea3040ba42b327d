"""test_client_limits.py - issue 15: one client cannot stop all mail. Idle connections from one
address (127.0.0.1) are held to MaxConnectionsPerClient and the rest refused with 421 4.7.0 and
one event, while a client on 127.0.0.2 gets its mail delivered; stress mode closes idle sessions
for newcomers and cuts them to StressTimeout; the per-client rates answer 421/450 4.7.0; the
whole-session and whole-DATA deadlines cut off a client that sends just in time each time."""
import os
import shutil
import smtplib
import socket
import tempfile
import time

import pytest

from test_smtp import NO_CLIENT_LIMITS, WAIT, Service, free_port, wait_for
from test_smtp_limits import read_until_closed

MSG = b"From: x@example.net\r\nSubject: limits\r\n\r\nbody\r\n"


@pytest.fixture
def console():
    """console(params) -> a started service whose events (imsd -console's stderr) are in
    .events once the test ends (read them after stop())."""
    made = []

    def make(params=(), nofile=None):
        root = tempfile.mkdtemp(prefix="ims-clients-")
        os.chmod(root, 0o755)
        svc = Service(root, free_port(), extra_params=params, start=False)
        svc.proc, svc.events = None, ""
        made.append(svc)
        svc.proc = svc.start_console(nofile)

        def stop():
            if svc.proc is not None:
                svc.events = svc.stop_console(svc.proc)
                svc.proc = None
            return svc.events
        svc.finish = stop
        return svc

    yield make
    for svc in made:
        svc.finish()
        shutil.rmtree(svc.root, ignore_errors=True)


def events(text, eid):
    return [l for l in text.splitlines() if f"Event {eid} " in l]


def greeting(svc, source="127.0.0.1"):
    """A connection from source and the server's first line ('' if it closed at once)."""
    sk = socket.create_connection(("127.0.0.1", svc.port), timeout=WAIT,
                                  source_address=(source, 0))
    line = b""
    while not line.endswith(b"\n"):
        chunk = sk.recv(1)
        if not chunk:
            break
        line += chunk
    return sk, line.decode("latin-1")


def trickle(sk, data, said=b""):
    """Send data every quarter second (up to 40 times) until the server answers 421 or
    closes; everything it said (after said)."""
    sk.settimeout(0.5)
    for _ in range(40):  # 20 s at most
        time.sleep(0.25)
        try:
            sk.sendall(data)
            chunk = sk.recv(4096)
        except socket.timeout:
            continue
        except OSError:
            break
        if not chunk:
            break
        said += chunk
        if b"421 " in said:
            break
    return said


def send_from(svc, source, rcpt="alice@example.com"):
    with smtplib.SMTP("127.0.0.1", svc.port, timeout=WAIT, source_address=(source, 0)) as c:
        c.sendmail("x@example.net", [rcpt], MSG)


@pytest.mark.parametrize("idle", [30, 300])
def test_idle_flood_from_one_address_stops_nobody_else(console, idle):
    """idle connections from 127.0.0.1 that never speak: MaxConnectionsPerClient (10) of them
    are held, the others get 421 4.7.0 at once; one event says so (not one a connection); a
    client on 127.0.0.2 still gets its mail delivered."""
    svc = console()
    held, greeted, refused = [], 0, 0
    try:
        for _ in range(idle):
            sk, line = greeting(svc)
            if line.startswith("220 "):
                greeted += 1
                held.append(sk)
            else:
                assert line.startswith("421 4.7.0 ") and "from your address" in line, line
                refused += 1
                sk.close()
        assert greeted == 10 and refused == idle - 10, (greeted, refused)
        send_from(svc, "127.0.0.2")
        svc.wait_mail("alice", 1)
        # The held ones still work when they speak.
        held[0].sendall(b"NOOP\r\n")
        assert held[0].recv(4096).startswith(b"250 ")
    finally:
        for sk in held:
            sk.close()
    err = svc.finish()
    limit = events(err, 2021)
    assert len(limit) == 1, err[-3000:]
    assert "127.0.0.1" in limit[0] and "MaxConnectionsPerClient" in limit[0]
    assert not events(err, 2022)  # 10 of 30 is no stress


def test_stress_mode_closes_an_idle_session_for_a_newcomer(console):
    """30 idle connections (no per-client limit) fill MaxInboundConnections: stress begins
    (event 2022); a newcomer from 127.0.0.2 closes the longest-idle session (421 4.4.2)
    instead of being refused, and delivers its mail; the other idle sessions stay."""
    svc = console([("MaxConnectionsPerClient", "REG_DWORD", "0"),
                   ("StressTimeout", "REG_DWORD", "120")])
    held = []
    try:
        for _ in range(30):
            sk, line = greeting(svc)
            assert line.startswith("220 "), line
            held.append(sk)

        def delivered():
            try:
                send_from(svc, "127.0.0.2")
                return True
            except (smtplib.SMTPException, OSError):
                return False  # 421 4.3.2 until one of them has been idle a second
        wait_for(delivered, "a message from 127.0.0.2 under stress")
        svc.wait_mail("alice", 1)
        cut = []
        for sk in held:
            sk.settimeout(0.2)
            try:
                data = sk.recv(4096)
            except socket.timeout:
                continue
            cut.append(data)
        assert 1 <= len(cut) < 30, cut
        assert all(b"421 4.4.2 " in d for d in cut), cut
    finally:
        for sk in held:
            sk.close()
    err = svc.finish()
    begin = events(err, 2022)
    assert len(begin) == 1 and "StressTimeout" in begin[0], err[-3000:]


def test_stress_mode_cuts_idle_sessions_to_stress_timeout(console):
    """Under stress the idle sessions are cut after StressTimeout (2 s here) with 421 4.4.2,
    not after CommandTimeout's 300 s: an attacker holding slots costs seconds. Stress then
    ends by itself (event 2023)."""
    svc = console([("MaxConnectionsPerClient", "REG_DWORD", "0"),
                   ("StressTimeout", "REG_DWORD", "2")])
    held = []
    try:
        for _ in range(30):
            sk, line = greeting(svc)
            if line.startswith("220 "):
                held.append(sk)
            else:
                sk.close()  # the first may already be cut while the last connect
        assert len(held) >= 24, len(held)
        cut = [read_until_closed(sk) for sk in held]
        assert all("421 4.4.2 " in t for t in cut), cut
    finally:
        for sk in held:
            sk.close()
    # The sessions are gone; the next connection is served.
    with smtplib.SMTP("127.0.0.1", svc.port, timeout=WAIT) as c:
        assert c.noop()[0] == 250
    err = svc.finish()
    begin, end = events(err, 2022), events(err, 2023)
    assert len(begin) >= 1 and "StressTimeout" in begin[0], err[-3000:]
    assert len(end) >= 1 and "idle sessions were closed" in end[0], err[-3000:]


def test_connection_rate_and_the_allow_list_exemption(console):
    """MaxConnectionRatePerClient 5: the sixth connection in a minute gets 421 4.7.0; with
    ClientLimitsExemptAllowList, a client in RelayAllowList is not limited."""
    svc = console([("MaxConnectionRatePerClient", "REG_DWORD", "5")])
    for i in range(6):
        sk, line = greeting(svc)
        sk.close()
        if i < 5:
            assert line.startswith("220 "), (i, line)
        else:
            assert line.startswith("421 4.7.0 ") and "in the last minute" in line, line
    # Another address has its own count.
    sk, line = greeting(svc, "127.0.0.2")
    sk.close()
    assert line.startswith("220 "), line
    assert "MaxConnectionRatePerClient" in events(svc.finish(), 2021)[0]

    exempt = console([("MaxConnectionRatePerClient", "REG_DWORD", "5"),
                      ("RelayAllowList", "REG_MULTI_SZ", "127.0.0.1"),
                      ("ClientLimitsExemptAllowList", "REG_DWORD", "1")])
    for i in range(8):
        sk, line = greeting(exempt)
        sk.close()
        assert line.startswith("220 "), (i, line)
    sk, line = greeting(exempt, "127.0.0.2")  # not in the list: limited as ever
    sk.close()
    assert line.startswith("220 ")


def test_message_and_recipient_rates(console):
    """MaxMessageRatePerClient 3: the fourth MAIL in a minute gets 450 4.7.0 (the session goes
    on); MaxRecipientRatePerClient 4: recipients past it get 450 4.7.0, the others their mail."""
    svc = console([("MaxMessageRatePerClient", "REG_DWORD", "3"),
                   ("MaxRecipientRatePerClient", "REG_DWORD", "4")])
    with smtplib.SMTP("127.0.0.1", svc.port, timeout=WAIT) as c:
        c.ehlo("client.test")
        for _ in range(2):
            c.sendmail("x@example.net", ["alice@example.com"], MSG)
        assert c.mail("x@example.net")[0] == 250
        answers = [c.rcpt(r) for r in ["bob@example.com", "alice@example.com",
                                       "bob@example.com", "alice@example.com"]]
        assert [a[0] for a in answers] == [250, 250, 450, 450], answers
        assert b"4.7.0 Too many recipients from your address" in answers[2][1]
        assert c.data(MSG)[0] == 250
        code, text = c.mail("x@example.net")
        assert code == 450 and b"Too many messages from your address" in text, text
        assert c.noop()[0] == 250
    svc.wait_mail("alice", 3)
    svc.wait_mail("bob", 1)
    err = svc.finish()
    # One event for the client in the minute, whatever was refused.
    assert len(events(err, 2021)) == 1, err[-3000:]


def test_session_deadline_cuts_a_trickling_client(console):
    """SessionTimeout 3: a client that keeps its session alive with a NOOP every half second
    is cut off with 421 4.4.2 (CommandTimeout alone would never end it)."""
    svc = console([("SessionTimeout", "REG_DWORD", "3")])
    sk, line = greeting(svc)
    try:
        assert line.startswith("220 ")
        said = trickle(sk, b"NOOP\r\n")
        assert b"421 4.4.2 " in said, said
    finally:
        sk.close()


def test_data_phase_deadline_cuts_a_trickling_message(console):
    """DataPhaseTimeout 2: message data sent a line every half second (each well within
    DataTimeout) is cut off with 421 4.4.2 and nothing is delivered."""
    svc = console([("DataPhaseTimeout", "REG_DWORD", "2")])
    sk, line = greeting(svc)
    try:
        assert line.startswith("220 ")
        sk.sendall(b"HELO c.test\r\nMAIL FROM:<x@example.net>\r\nRCPT TO:<alice@example.com>\r\n"
                   b"DATA\r\n")
        said = b""
        while said.count(b"\r\n") < 4:
            chunk = sk.recv(4096)
            assert chunk, said
            said += chunk
        assert b"354 " in said, said
        said = trickle(sk, b"a line of a slow message\r\n", said)
        assert b"421 4.4.2 " in said, said
    finally:
        sk.close()
    assert svc.mail("alice") == []


def test_open_files_limit_refuses_politely(console):
    """imsd with 192 descriptors and MaxInboundConnections far above that: connections past
    what the descriptors allow get 421 4.3.2 at once (not a silent wait in the backlog), one
    event says so, and the sessions already open go on: one of them delivers a message."""
    svc = console([("MaxInboundConnections", "REG_DWORD", "1000"),
                   ("StressThreshold", "REG_DWORD", "0")] + NO_CLIENT_LIMITS, nofile=192)
    held, refused = [], 0
    try:
        for _ in range(200):
            sk, line = greeting(svc)
            if line.startswith("220 "):
                held.append(sk)
            else:
                assert line.startswith("421 4.3.2 ") and "Too many connections" in line, line
                refused += 1
                sk.close()
        assert held and refused, (len(held), refused)
        # The first held session, past its greeting, sends a message.
        held[0].sendall(b"HELO c.test\r\nMAIL FROM:<x@example.net>\r\n"
                        b"RCPT TO:<alice@example.com>\r\nDATA\r\n")
        said = b""
        while said.count(b"\r\n") < 4:
            chunk = held[0].recv(4096)
            assert chunk, said
            said += chunk
        assert b"354 " in said, said
        held[0].sendall(MSG + b".\r\nQUIT\r\n")
        assert "250 2.6.0 " in read_until_closed(held[0])
        svc.wait_mail("alice", 1)
    finally:
        for sk in held:
            sk.close()
    # Once they are gone, a new client is served again.
    wait_for(lambda: (lambda r: r[0].close() or r[1].startswith("220 "))(greeting(svc)),
             "a connection served after the others closed")
    err = svc.finish()
    refusals = [l for l in events(err, 2020) if "RLIMIT_NOFILE" in l]
    assert len(refusals) == 1, err[-3000:]
