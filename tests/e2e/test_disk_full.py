"""test_disk_full.py - a full disk on the way in (issue 15, "Faults: disk full"): the spool's
file system (imcdata) and the mailboxes' (store) are small tmpfs mounts the test makes and
fills with a filler file. A client gets 452 4.3.1 while the spool is full and 250 once space
is back; a message accepted before the mailboxes filled waits and is delivered, exactly once,
when they have room again; nothing half-written is left in Work, In, MTS-IN or a Maildir's
tmp/. Needs root (mount), as CI runs it."""
import contextlib
import errno
import glob
import json
import os
import shutil
import smtplib
import subprocess
import tempfile

import pytest

from test_smtp import WAIT, Service, free_port, partial_work_files, run, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="mounts tmpfs file systems: needs root (CI runs as root)")

TMPFS_SIZE = "8m"
MSG = b"Subject: disk full\r\n\r\n" + b"x" * 200000 + b"\r\n"  # bigger than the spool's buffer


def mount_tmpfs(path):
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0755", "tmpfs", path],
                   check=True, timeout=WAIT)


def umount(path):
    if subprocess.run(["umount", path], timeout=WAIT).returncode:
        subprocess.run(["umount", "-l", path], timeout=WAIT)  # last resort: never leave it


def fill(path):
    """Write a filler file in path until its file system has no byte left; returns its path."""
    filler = os.path.join(path, "filler")
    block = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:
        n = len(block)
        while n:
            try:
                f.write(block[:n])
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                n //= 2
    return filler


def events(svc):
    """The service's events, as the console shows them."""
    return svc.stop_console(svc.console)


def half_written(root):
    """Files a failed or interrupted write could leave: in Work (not recycled), in the
    Maildirs' and MTS-IN's tmp/."""
    tmp = glob.glob(os.path.join(root, "store", "*", "tmp", "*")) + \
        glob.glob(os.path.join(root, "store", "*", ".*", "tmp", "*"))
    return partial_work_files(root) + tmp


def spool_files(root):
    return [e.name for e in os.scandir(os.path.join(root, "imcdata", "In")) if e.is_file()]


def received_ids(root, alias):
    out = []
    for p in glob.glob(os.path.join(root, "store", alias, "new", "*")) + \
            glob.glob(os.path.join(root, "store", alias, "cur", "*")):
        with open(p, "rb") as f:
            out.append(f.read())
    return out


def mount_over(path):
    """A tmpfs over the existing directory path (a Maildir), with its sub-folders, owner and
    modes as they were."""
    subs = [(d, os.stat(os.path.join(path, d))) for d in ("cur", "new", "tmp")]
    top = os.stat(path)
    mount_tmpfs(path)
    os.chown(path, top.st_uid, top.st_gid)
    os.chmod(path, top.st_mode & 0o7777)
    for d, st in subs:
        os.mkdir(os.path.join(path, d))
        os.chown(os.path.join(path, d), st.st_uid, st.st_gid)
        os.chmod(os.path.join(path, d), st.st_mode & 0o7777)


@contextlib.contextmanager
def service_on_tmpfs(before=("imcdata", "store"), after=()):
    """A service with each folder of before (under its IMS_ROOT) a tmpfs of TMPFS_SIZE made
    before the install, and each of after one made over the installed folder; yields it and
    stops it (first), then unmounts them all whatever happened."""
    root = tempfile.mkdtemp(prefix="ims-diskfull-")
    os.chmod(root, 0o755)
    mounts = []
    svc = None
    try:
        for sub in before:
            mount_tmpfs(os.path.join(root, sub))
            mounts.append(os.path.join(root, sub))
        # DiskSpaceLowWaterMark off: its flush mode would refuse at MAIL (8 MB < 10 MB) before
        # any write could fail; this test is about the writes.
        svc = Service(root, free_port(), [("DiskSpaceLowWaterMark", "REG_DWORD", "0")],
                      start=False)
        for sub in after:
            mount_over(os.path.join(root, sub))
            mounts.append(os.path.join(root, sub))
        svc.console = svc.start_console()
        yield svc
    finally:
        if svc is not None and getattr(svc, "console", None) is not None:
            svc.stop_console(svc.console)
            svc.console = None
        for m in reversed(mounts):
            umount(m)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def world():
    with service_on_tmpfs() as svc:
        yield svc


def send(svc):
    with smtplib.SMTP("127.0.0.1", svc.port, timeout=WAIT) as c:
        c.ehlo("client.test")
        return c.sendmail("sender@remote.test", ["bob@example.com"], MSG)


def test_spool_full_gets_452_then_resumes(world):
    svc, root = world, world.root
    filler = fill(os.path.join(root, "imcdata"))
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(svc)
    assert e.value.smtp_code == 452 and e.value.smtp_error.startswith(b"4.3.1"), e.value
    assert not spool_files(root) and not half_written(root)
    # The spool now knows: the next transaction is refused at MAIL, before any data.
    with smtplib.SMTP("127.0.0.1", svc.port, timeout=WAIT) as c:
        c.ehlo("client.test")
        code, text = c.mail("sender@remote.test")
        assert (code, text[:5]) == (452, b"4.3.1"), (code, text)
    os.unlink(filler)
    # Space is back: MAIL is accepted again (the spool looks at most every second or so).
    def accepted():
        try:
            return send(svc) == {}
        except smtplib.SMTPSenderRefused as r:
            assert r.smtp_code == 452, r
            return False
    wait_for(accepted, "a message accepted once space is back")
    wait_for(lambda: len(received_ids(root, "bob")) == 1 and not spool_files(root),
             "the message delivered")
    assert not half_written(root)
    log = events(svc)
    svc.console = None
    assert log.count("Event 2032 ") == 1 and log.count("Event 2033 ") == 1, log
    assert os.path.join(root, "imcdata") in log, log


def test_mailboxes_full_after_250_delivered_once_space_returns(world):
    svc, root = world, world.root
    filler = fill(os.path.join(root, "store"))
    assert send(svc) == {}  # the spool has room: accepted
    # Delivery into the full store fails and waits in In, counted as deferred.
    wait_for(lambda: len(spool_files(root)) == 1 and stat_deferred(svc) >= 1,
             "a deferred delivery")
    assert not received_ids(root, "bob") and not half_written(root)
    os.unlink(filler)
    wait_for(lambda: len(received_ids(root, "bob")) == 1 and not spool_files(root),
             "delivery once space is back")
    [copy] = received_ids(root, "bob")
    assert copy.endswith(b"x" * 1000 + b"\n")
    assert not half_written(root)
    log = events(svc)
    svc.console = None
    assert log.count("Event 2032 ") == 1 and log.count("Event 2033 ") == 1, log
    assert os.path.join(root, "store") in log, log
    assert len(received_ids(root, "bob")) == 1  # exactly once


def stat_deferred(svc):
    c = json.loads(run("imsctl", "stats", "--json", env=svc.env).stdout)["counters"]
    return c.get("recipients_deferred_total.local", 0)


def test_one_mailbox_full_waits_while_others_get_theirs():
    """bob's Maildir alone is full (its own tmpfs: the copy is made in its tmp/, not linked):
    alice gets her copy at once, bob his once space is back; each exactly once."""
    with service_on_tmpfs(before=(), after=("store/bob",)) as svc:
        root = svc.root
        filler = fill(os.path.join(root, "store", "bob"))
        with smtplib.SMTP("127.0.0.1", svc.port, timeout=WAIT) as c:
            c.ehlo("client.test")
            assert c.sendmail("sender@remote.test", ["alice@example.com", "bob@example.com"],
                              MSG) == {}
        wait_for(lambda: len(received_ids(root, "alice")) == 1 and stat_deferred(svc) >= 1,
                 "alice's copy and bob's deferral")
        assert not received_ids(root, "bob") and len(spool_files(root)) == 1
        assert not half_written(root)
        os.unlink(filler)
        wait_for(lambda: len(received_ids(root, "bob")) == 1 and not spool_files(root),
                 "bob's copy once space is back")
        assert not half_written(root)
        log = events(svc)
        svc.console = None
        assert log.count("Event 2032 ") == 1 and log.count("Event 2033 ") == 1, log
        assert os.path.join(root, "store", "bob") in log, log
        assert len(received_ids(root, "alice")) == 1 and len(received_ids(root, "bob")) == 1
