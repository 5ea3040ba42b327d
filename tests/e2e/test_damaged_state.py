"""test_damaged_state.py - imsd started on damaged state (issue 15, "Faults: damaged state"):
spool files in In and queue files in Out cut short, garbled or empty, leftover files in the
Maildir tmp folders, and a registry hive cut short or overwritten. What can be moved aside is
(In/Archive, Out/Archive, with event 4117) and the service starts and delivers the rest; a
damaged hive stops the start with one clear line and exit status 4. Nothing crashes, nothing
is deleted, no good message is lost."""
import glob
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import IMS_BIN
from outbound_world import Rule, message, send, world  # noqa: F401  (world: the fixture)
from test_smtp import WAIT, Service, free_port, run, wait_for

PARAMS = r"HKLM\System\CurrentControlSet\Services\MSExchangeIMC\Parameters"
ZONE = """
remote.test      MX 10 mx1.remote.test
mx1.remote.test  A  127.0.0.2
"""
EVENT_4117 = re.compile(r"Event 4117 \([^)]*\): (.*)")


@pytest.fixture
def svc():
    root = tempfile.mkdtemp(prefix="ims-damaged-")
    os.chmod(root, 0o755)  # as root, imsd runs as nobody and must reach its state root
    s = None
    try:
        s = Service(root, free_port(), start=False)
        yield s
    finally:
        if s:
            s.stop()
        shutil.rmtree(root, ignore_errors=True)


def spool_dir(svc, name):
    return os.path.join(svc.root, "imcdata", name)


def files(d):
    return sorted(e.name for e in os.scandir(d) if e.is_file()) if os.path.isdir(d) else []


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def archived_events(stderr):
    return EVENT_4117.findall(stderr)


def envelope_and_content(data):
    """A spool file's envelope (up to its empty line) and the rest."""
    cut = data.index(b"\n\n") + 2
    return data[:cut], data[cut:]


def with_id(data, old, new):
    """The spool file bytes data with its queue id (the name it must have) changed."""
    assert data.count(old.encode()) >= 1
    return data.replace(old.encode(), new.encode())


def damaged_variants(good, good_id, ids):
    """Damaged copies of the spool file bytes good (queue id good_id) under the six queue ids
    given: each a file the reader must refuse, its id in the envelope its name."""
    v = [with_id(good, good_id, i) for i in ids]
    env, content = envelope_and_content(v[3])
    out = {
        ids[0]: v[0][:len(envelope_and_content(v[0])[0]) // 2],  # cut in its envelope
        ids[1]: os.urandom(len(good)),  # garbage
        ids[2]: b"",  # empty
        ids[3]: env + content[:len(content) // 2],  # a valid envelope, its content cut
    }
    # Damage that still parses: an address of the envelope changed, a byte of the content.
    assert b"alice@example.com" in v[4]
    out[ids[4]] = v[4].replace(b"alice@example.com", b"alicf@example.com", 1)
    env, content = envelope_and_content(v[5])
    i = content.index(b"Hello.")
    out[ids[5]] = env + content[:i] + b"J" + content[i + 1:]
    return out


def fake_ids(n, base="0000000000AB"):
    return ["%s%04X" % (base, i) for i in range(n)]


# --- 1. the inbound spool ------------------------------------------------------------------


def test_damaged_spool_files_archived_good_ones_delivered(svc):
    """A message is kept in In by a mailbox that cannot be written (delivery defers, 4182);
    with imsd stopped, damaged files join it (cut envelope, garbage, empty, cut content, an
    address or a content byte changed: the checksums tell). At the next start each damaged file goes to
    In/Archive with event 4117 and the good message is delivered."""
    svc.start()
    bob_new = os.path.join(svc.root, "store", "bob", "new")
    os.chmod(bob_new, 0o500)  # imsd runs as nobody when the tests run as root
    if os.geteuid() == 0:
        os.chown(bob_new, 0, 0)
    try:
        send(svc, "alice@example.com", ["bob@example.com"], message("kept in In"))
        wait_for(lambda: files(spool_dir(svc, "In")), "the message in In")
    finally:
        svc.stop()
        if os.geteuid() == 0:
            shutil.chown(bob_new, "nobody")
        os.chmod(bob_new, 0o700)
    kept = files(spool_dir(svc, "In"))
    assert len(kept) == 1, kept
    good = read(os.path.join(spool_dir(svc, "In"), kept[0]))
    bad = damaged_variants(good, kept[0], fake_ids(6))
    bad["not-a-spool-file"] = b"hello\n"
    for name, data in bad.items():
        write(os.path.join(spool_dir(svc, "In"), name), data)
    p = svc.start_console()
    try:
        svc.wait_mail("bob", 1)
        wait_for(lambda: not files(spool_dir(svc, "In")), "In empty")
    finally:
        err = svc.stop_console(p)
    assert len(svc.mail("bob")) == 1
    assert files(os.path.join(spool_dir(svc, "In"), "Archive")) == sorted(bad)
    for name, data in bad.items():  # moved, not changed
        assert read(os.path.join(spool_dir(svc, "In"), "Archive", name)) == data
    events = archived_events(err)
    assert len(events) == len(bad), err
    for name in bad:
        assert any(name in e and "In/Archive" in e for e in events), (name, events)


# --- 2. the outbound queue -----------------------------------------------------------------


def test_damaged_queue_files_archived_good_ones_sent(world):
    """A message deferred once by the peer waits in Out; with imsd stopped, damaged copies
    join it (cut envelope, garbage, empty, cut content, an address or a content byte changed),
    and the good one's status records are garbled. At the next start (an hour later, so the retry is due) the damaged files go to
    Out/Archive with event 4117; the good one, its garbled records after its own, goes out
    once (a record that does not parse counts as not written)."""
    world.dns(ZONE)
    peer = world.peer("127.0.0.2", rules=[Rule("dot", "451 4.3.0 Try again later", times=1)])
    svc = world.service()
    send(svc, "alice@example.com", ["x@remote.test"], message("deferred"))
    out = spool_dir(svc, "Out")
    wait_for(lambda: any(b"\ndefer " in read(os.path.join(out, n)) or
                         read(os.path.join(out, n)).startswith(b"defer ")
                         for n in files(out)), "a deferred queue file")
    svc.stop()
    queued = files(out)
    assert len(queued) == 1, queued
    good = read(os.path.join(out, queued[0]))
    bad = damaged_variants(good, queued[0], fake_ids(6, "0000000000CD"))
    for name, data in bad.items():
        write(os.path.join(out, name), data)
    # The good file's status records garbled after its real ones: its envelope and content
    # are whole, so it goes out.
    write(os.path.join(out, queued[0]), good + b"defer 9\tzz\n\x00\xffdone 0 junk\nfail\ndefe")
    svc.env["IMS_TIME_OFFSET"] = str(3600)
    p = svc.start_console()
    try:
        wait_for(lambda: not [n for n in files(out) if n not in bad], "the good ones sent")
    finally:
        err = svc.stop_console(p)
    assert files(os.path.join(out, "Archive")) == sorted(bad)
    for name, data in bad.items():
        assert read(os.path.join(out, "Archive", name)) == data
    events = archived_events(err)
    assert len(events) == len(bad), err
    for name in bad:
        assert any(name in e and "Out/Archive" in e for e in events), (name, events)
    subjects = [m["data"].split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0] for m in peer.messages()]
    assert subjects == [b"deferred"], subjects


# --- 3. Maildir tmp folders ----------------------------------------------------------------


def test_leftover_tmp_files_not_delivered(svc):
    """Garbled and half-written files in a mailbox's tmp/ and in the gateway's .MTS-IN/tmp
    are never delivered and do not stop the service; everything in our own .MTS-IN/tmp goes
    at start, in a mailbox's tmp only what is over 36 hours old (a fresh one may be a
    writer's)."""
    svc.start()
    svc.stop()
    store = os.path.join(svc.root, "store")
    bob_tmp = os.path.join(store, "bob", "tmp")
    mts_tmp = os.path.join(store, "MSExchangeIMC", ".MTS-IN", "tmp")
    write(os.path.join(bob_tmp, "1700000000.M1P1.host"), b"Subject: half\n\nhal")
    write(os.path.join(mts_tmp, "1700000000.M2P2.host"), os.urandom(300))
    old = time.time() - 40 * 3600
    for d in (bob_tmp, mts_tmp):
        write(os.path.join(d, "old.M3P3.host"), b"\x00garbage")
        os.utime(os.path.join(d, "old.M3P3.host"), (old, old))
    p = svc.start_console()
    try:
        send(svc, "alice@example.com", ["bob@example.com"], message("after the leftovers"))
        svc.wait_mail("bob", 1)
    finally:
        err = svc.stop_console(p)
    assert len(svc.mail("bob")) == 1, svc.mail("bob")
    assert b"after the leftovers" in read(svc.mail("bob")[0])
    assert "Event 4131" not in err or "tmp" not in err, err
    # Nothing half-written reached new/ or cur/ of any mailbox.
    for path in glob.glob(os.path.join(store, "*", "new", "*")) + \
            glob.glob(os.path.join(store, "*", "cur", "*")):
        assert b"after the leftovers" in read(path), path
    # Our own MTS-IN/tmp is cleared at start (only imsd writes there); a mailbox's tmp loses
    # only what is over 36 hours old, by Maildir's rule.
    assert os.listdir(mts_tmp) == []
    assert os.listdir(bob_tmp) == ["1700000000.M1P1.host"]


# --- 4. the registry -----------------------------------------------------------------------


def damage_cut(path, size):
    os.truncate(path, size)


def damage_magic(path):
    with open(path, "r+b") as f:
        f.write(os.urandom(4096))


HIVE_DAMAGE = [
    ("cut to half", lambda p: damage_cut(p, os.path.getsize(p) // 2)),
    ("cut to half a page", lambda p: damage_cut(p, (os.path.getsize(p) // 2) & ~4095)),
    ("cut to 100 bytes", lambda p: damage_cut(p, 100)),
    ("cut to nothing", lambda p: damage_cut(p, 0)),
    ("first 4 KiB overwritten", damage_magic),
]


def run_imsd(svc):
    """imsd in the foreground until it exits (a damaged start must end by itself)."""
    p = subprocess.run([os.path.join(IMS_BIN, "imsd")], env=svc.env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=WAIT)
    return p.returncode, p.stderr


@pytest.mark.parametrize("what,damage", HIVE_DAMAGE, ids=[h[0] for h in HIVE_DAMAGE])
def test_damaged_hklm_refused_in_one_line(svc, what, damage):
    data = os.path.join(svc.root, "registry", "HKLM", "data.mdb")
    damage(data)
    p = subprocess.run([os.path.join(IMS_BIN, "reg"), "query", PARAMS], env=svc.env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=WAIT)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert p.stdout == ""
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert data in lines[0] and "damaged" in lines[0], lines
    rc, err = run_imsd(svc)
    assert rc == 4, (rc, err)
    assert data in err and "damaged" in err, err
    assert not os.path.exists(os.path.join(svc.root, "run", "imsd.status"))
    # imsctl start says why and fails (its child exited 4).
    p = subprocess.run([os.path.join(IMS_BIN, "imsctl"), "start"], env=svc.env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=WAIT)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert data in p.stderr, p.stderr


def test_damaged_account_hive_refused(svc):
    svc.start()  # makes the service account's hive
    svc.stop()
    hives = glob.glob(os.path.join(svc.root, "registry", "HKU", "S-*", "data.mdb"))
    assert len(hives) == 1, hives
    damage_magic(hives[0])
    rc, err = run_imsd(svc)
    assert rc == 4, (rc, err)
    assert hives[0] in err and "damaged" in err, err


def test_garbage_lock_file_is_rebuilt(svc):
    lock = os.path.join(svc.root, "registry", "HKLM", "lock.mdb")
    with open(lock, "r+b") as f:
        f.write(os.urandom(os.path.getsize(lock)))
    rc, out, err = (lambda p: (p.returncode, p.stdout, p.stderr))(subprocess.run(
        [os.path.join(IMS_BIN, "reg"), "query", PARAMS, "/v", "RootDir"], env=svc.env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=WAIT))
    assert rc == 0, err
    assert "RootDir" in out
    svc.start()
    run("imsctl", "status", env=svc.env)
