"""test_outbound_crash.py - kill -9 imsd three times while several clients send it mail to
relay to a recording peer (by DNS MX), restarting it each time with imsctl start. At the end
every message that got its 250 from imsd has reached the peer; duplicates are counted by
Message-ID and bounded by the documented window: a kill can repeat at most what was sent on
each open connection since its last commit, so kills * MaxConnectionsPerHost (10) at most.

Each client attempt has a Message-ID of its own, so a message that a client sent again after
a kill (not knowing whether imsd had taken it: the inbound side's RFC 1047 window) is not
counted as an outbound duplicate."""
import os
import signal
import smtplib
import threading
import time
from collections import Counter

from outbound_world import send, wait_out_empty, world  # noqa: F401  (world: the fixture)
from test_smtp import WAIT, dead, run, wait_for

MESSAGES = 200
CLIENTS = 4
KILLS = 3
PER_HOST = 10  # MaxConnectionsPerHost's default
ZONE = """
remote.test      MX 10 mx1.remote.test
mx1.remote.test  A  127.0.0.2
"""


def test_kill_during_outbound_load(world):
    world.dns(ZONE)
    peer = world.peer("127.0.0.2", max_connections=4 * PER_HOST)
    svc = world.service(retry=".0003")
    acked, lock, stop = [], threading.Lock(), threading.Event()
    todo = list(range(MESSAGES))

    def client():
        attempt = 0
        while not stop.is_set():
            with lock:
                if not todo:
                    return
                seq = todo.pop()
            # Bounded: each message is tried a few times across imsd's restarts.
            for _ in range(200):
                if stop.is_set():
                    return
                attempt += 1
                mid = "<%d.%d.%d@crash.test>" % (seq, threading.get_ident() % 100000, attempt)
                data = ("From: <alice@example.com>\r\nTo: <x@remote.test>\r\n"
                        "Subject: n%d\r\nMessage-ID: %s\r\n\r\nbody %d\r\n" % (seq, mid, seq))
                try:
                    send(svc, "alice@example.com", ["x@remote.test"], data.encode())
                except (smtplib.SMTPException, OSError, AssertionError):
                    time.sleep(0.05)  # imsd is down or coming up: send it again
                    continue
                with lock:
                    acked.append(mid)
                break

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    try:
        for t in threads:
            t.start()
        for k in range(1, KILLS + 1):
            wait_for(lambda: len(acked) >= k * MESSAGES // (KILLS + 1),
                     f"{k * MESSAGES // (KILLS + 1)} acknowledged messages")
            pid = svc.pid()
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: dead(pid), "imsd to die")
            run("imsctl", "start", env=svc.env)
        for t in threads:
            t.join(WAIT * 3)
        assert not any(t.is_alive() for t in threads)
        with lock:
            acked_now = set(acked)
        assert len(acked_now) == MESSAGES

        def ids():
            return Counter(m["data"].split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0].decode()
                           for m in peer.messages() if b"Message-ID: " in m["data"])
        got = wait_for(lambda: acked_now <= set(ids()) and ids(),
                       "every acknowledged message at the peer")
        wait_out_empty(svc)
        got = ids()
        duplicates = sum(n - 1 for n in got.values())
        extra = len(set(got) - acked_now)  # sent without a 250 seen, and delivered: allowed
        print(f"acknowledged {len(acked_now)}, at the peer {sum(got.values())} copies of "
              f"{len(got)} messages, duplicates {duplicates}, unacknowledged but delivered "
              f"{extra}, kills {KILLS}")
        assert duplicates <= KILLS * PER_HOST, (duplicates, got.most_common(5))
    finally:
        stop.set()
        for t in threads:
            t.join(WAIT)
