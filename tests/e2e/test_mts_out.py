"""test_mts_out.py - MTS-OUT end to end: files dropped into the gateway mailbox's MTS-OUT
folder (a Maildir: written in tmp/, renamed into new/) with an X-Sender/X-Receiver envelope
reach the receivers' Maildirs once, without the envelope lines; a file without an envelope
lands in the gateway's Bad folder; and kill -9 in the middle of a batch, then a restart, loses
none and delivers none twice."""
import glob
import os
import signal
import tempfile
import time

import pytest

from test_smtp import WAIT, Service, dead, free_port, wait_for

GATEWAY = "MSExchangeIMC"


@pytest.fixture
def svc():
    root = tempfile.mkdtemp(prefix="ims_mtsout.")
    os.chmod(root, 0o755)
    s = Service(root, free_port())
    yield s
    s.stop()


def folder(svc, name):
    return os.path.join(svc.root, "store", GATEWAY, "." + name)


def drop(svc, name, data):
    """Write data as MTS-OUT/tmp/<name> and rename it into new/, as a Maildir writer does."""
    mts = folder(svc, "MTS-OUT")
    tmp = os.path.join(mts, "tmp", name)
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, os.path.join(mts, "new", name))


def mails(svc, alias):
    return sorted(glob.glob(os.path.join(svc.root, "store", alias, "new", "*")) +
                  glob.glob(os.path.join(svc.root, "store", alias, "cur", "*")))


def mts_out_empty(svc):
    mts = folder(svc, "MTS-OUT")
    return not os.listdir(os.path.join(mts, "new")) and not os.listdir(os.path.join(mts, ".taking"))


def test_taken_once(svc):
    drop(svc, "1700000000.M1P1.client",
         b"X-Sender: <boss@example.org>\nX-Receiver: <alice@example.com>\n"
         b"Subject: from the organisation\n\nHello Alice.\n.\nBye\n")
    copies = wait_for(lambda: mails(svc, "alice"), "alice's copy")
    wait_for(lambda: mts_out_empty(svc), "MTS-OUT emptied")
    time.sleep(0.3)
    assert len(mails(svc, "alice")) == 1
    with open(copies[0], "rb") as f:
        data = f.read()
    assert b"X-Sender" not in data and b"X-Receiver" not in data
    assert data.startswith(b"Return-Path: <boss@example.org>\n")
    assert data.endswith(b"Subject: from the organisation\n\nHello Alice.\n.\nBye\n")
    assert not mails(svc, "bob")


def test_crlf_and_skipped_receiver(svc):
    drop(svc, "2.crlf",
         b"X-Sender: <>\r\nX-Receiver: <nobody@example.com>\r\nX-Receiver: <bob@example.com>\r\n"
         b"Subject: crlf\r\n\r\nbody\r\n")
    copies = wait_for(lambda: mails(svc, "bob"), "bob's copy")
    with open(copies[0], "rb") as f:
        data = f.read()
    assert data.startswith(b"Return-Path: <>\n")
    assert data.endswith(b"Subject: crlf\n\nbody\n")


def test_bad_envelope(svc):
    drop(svc, "3.bad", b"Subject: no envelope here\n\nbody\n")
    drop(svc, "4.folded", b"X-Sender: <boss@example.org>\nX-Receiver: <alice@example.com>,\n"
                          b" <bob@example.com>\n\nbody\n")
    bad = os.path.join(folder(svc, "Bad"), "new")
    wait_for(lambda: sorted(os.listdir(bad)) == ["3.bad", "4.folded"], "both files in Bad")
    assert mts_out_empty(svc)
    assert not mails(svc, "alice") and not mails(svc, "bob")


def test_kill9_exactly_once(svc):
    """Many files, kill -9 while they are being taken, restart: each reaches alice once."""
    n = 1000
    pid = svc.pid()
    for i in range(n):
        drop(svc, f"{i:04d}.load", b"X-Sender: <boss@example.org>\nX-Receiver: <alice@example.com>\n"
                                   + f"Subject: load {i}\n\nmessage {i}\n".encode())
    # Kill once some (not all) have arrived.
    wait_for(lambda: len(mails(svc, "alice")) >= n // 20, "a part delivered")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: dead(pid), "imsd gone")
    before = len(mails(svc, "alice"))
    assert before < n, "the kill came too late to test anything"
    print(f"killed with {before} of {n} delivered")
    svc.start()

    def subjects():
        out = []
        for p in mails(svc, "alice"):
            with open(p, "rb") as f:
                for line in f:
                    if line.startswith(b"Subject: "):
                        out.append(line.strip().decode())
                        break
        return out

    deadline = time.monotonic() + WAIT * 3
    while time.monotonic() < deadline and len(subjects()) < n:
        time.sleep(0.1)
    wait_for(lambda: mts_out_empty(svc), "MTS-OUT emptied")
    time.sleep(0.5)
    got = subjects()
    assert sorted(got) == sorted(f"Subject: load {i}" for i in range(n)), \
        (len(got), len(set(got)))
