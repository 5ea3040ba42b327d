"""test_smtp_crash.py - kill -9 imsd in the middle of an smtp-source load (Postfix's parallel
SMTP test client), restart it, and check that every message that got 250 is delivered exactly
once to each of its two recipients, and that no queue id is delivered twice.

smtp-source -v prints every server reply on stderr; our 250 after DATA names the queue id
("250 2.6.0 Message accepted for delivery (queued as <16 hex digits>)"), and a delivered copy
names it in its Received header ("with ESMTP id <id>;")."""
import glob
import os
import re
import shutil
import signal
import subprocess
import tempfile

import pytest

from test_smtp import NO_CLIENT_LIMITS, WAIT, Service, dead, free_port, partial_work_files, run, wait_for

SMTP_SOURCE = "/usr/sbin/smtp-source"
SESSIONS = 16  # parallel SMTP sessions (MaxInboundConnections is raised to 100 below)
FIRST_LOAD = 600  # messages of the first try; doubled while the kill comes too late
MAX_TRIES = 4
KILL_FRACTION = 3  # kill once a third of the load is acknowledged
BODY_BYTES = 2048
ACK = re.compile(r"<<< 250 \S+ .*\(queued as ([0-9A-F]{16})\)")
RECEIVED_ID = re.compile(rb"with ESMTP id ([0-9A-F]{16});")
HEAD_BYTES = 4096  # the Received header is near the start of a delivered file

# smtp-source -r 2 -t bob@example.com sends to 2bob@example.com and to bob@example.com.
RCPT = "bob@example.com"
MAILBOXES = ("bob", "bob2")

pytestmark = pytest.mark.skipif(not os.access(SMTP_SOURCE, os.X_OK),
                                reason=f"{SMTP_SOURCE} is missing (Debian package postfix; "
                                       "tools/deps.sh installs it)")


def acked_ids(log_path):
    with open(log_path, errors="replace") as f:
        return ACK.findall(f.read())


def delivered_ids(root, alias):
    """The queue id of each copy in the mailbox's new/ and cur/, one entry per file."""
    ids = []
    for path in glob.glob(os.path.join(root, "store", alias, "new", "*")) + \
            glob.glob(os.path.join(root, "store", alias, "cur", "*")):
        with open(path, "rb") as f:
            m = RECEIVED_ID.search(f.read(HEAD_BYTES))
        assert m, f"no Received id in {path}"
        ids.append(m.group(1).decode())
    return ids


def settled(root):
    """Nothing left to deliver: no spool file in In, no copy in the gateway's MTS-IN."""
    spool = [e for e in os.scandir(os.path.join(root, "imcdata", "In")) if e.is_file()]
    mts = [p for sub in ("new", "tmp")
           for p in glob.glob(os.path.join(root, "store", "MSExchangeIMC", ".MTS-IN", sub, "*"))]
    return not spool and not mts


class Load:
    """smtp-source as a background process, its replies in a file."""

    def __init__(self, svc, count, log_path):
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.p = subprocess.Popen(
            [SMTP_SOURCE, "-v", "-s", str(SESSIONS), "-m", str(count), "-r", "2",
             "-l", str(BODY_BYTES), "-M", "client.test", "-f", "sender@remote.test",
             "-t", RCPT, f"127.0.0.1:{svc.port}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log)

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(WAIT)
        self.log.close()


def crash_once(root, count):
    """One try: load, kill -9 at a third, restart, settle. Returns (acked ids, the running
    service), or None when the load ended before the kill could hit it (the caller then tries
    a bigger one); the service is stopped then, and on any failure."""
    s = Service(root, free_port(),
                [("MaxInboundConnections", "REG_DWORD", "100")] + NO_CLIENT_LIMITS)
    load = None
    keep = False
    try:
        s.stop()  # the second recipient's mailbox, in place before any mail arrives
        run("imsadm", "mailbox", "add", "bob2", "--address", "2bob@example.com", env=s.env)
        s.start()
        load = Load(s, count, os.path.join(root, "smtp-source.log"))
        threshold = count // KILL_FRACTION
        wait_for(lambda: load.p.poll() is not None or
                 len(acked_ids(load.log_path)) >= threshold,
                 f"{threshold} acknowledged messages")
        status = load.p.poll()
        pid = s.pid()
        os.kill(pid, signal.SIGKILL)
        if status == 0:
            return None  # all sent before the kill: it proved nothing
        assert status is None, \
            f"smtp-source failed before the kill: {open(load.log_path).read()[-2000:]}"
        wait_for(lambda: dead(pid), "imsd to die")
        # smtp-source fails on the refused or reset connections and ends by itself.
        try:
            load.p.wait(WAIT)
        except subprocess.TimeoutExpired:
            pass
        load.stop()
        acked = acked_ids(load.log_path)
        if len(acked) >= count:
            return None  # the kill came after the last reply
        s.start()  # recovery: Work is cleared, In is delivered
        wait_for(lambda: settled(root), "delivery to settle after the restart")
        keep = True
        return acked, s
    finally:
        if load:
            load.stop()
        if not keep:
            s.stop()


@pytest.fixture
def tmp_root():
    roots = []

    def make():
        root = tempfile.mkdtemp(prefix="ims-crash-")
        os.chmod(root, 0o755)  # as root, imsd runs as nobody and must reach its state root
        roots.append(root)
        return root

    yield make
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)


def test_kill_9_under_smtp_source_loses_nothing_acknowledged(tmp_root):
    count = FIRST_LOAD
    for _ in range(MAX_TRIES):
        root = tmp_root()
        result = crash_once(root, count)
        if result:
            break
        count *= 2
    else:
        pytest.fail(f"the kill never came before the end of the load (last: {count // 2})")
    acked, svc = result
    try:
        assert acked, "no message was acknowledged before the kill: the test proved nothing"
        assert len(set(acked)) == len(acked), "smtp-source saw one queue id twice"
        for alias in MAILBOXES:
            ids = delivered_ids(root, alias)
            dups = sorted({i for i in ids if ids.count(i) > 1})
            assert not dups, f"{alias}: queue ids delivered more than once: {dups[:10]}"
            missing = sorted(set(acked) - set(ids))
            assert not missing, \
                f"{alias}: {len(missing)} of {len(acked)} acknowledged messages lost: {missing[:10]}"
        # Both recipients got the same messages: none half-delivered.
        assert sorted(delivered_ids(root, "bob")) == sorted(delivered_ids(root, "bob2"))
        # For the record (pytest -s shows it): what the kill hit.
        print(f"kill -9 under smtp-source: {len(acked)} acknowledged, "
              + ", ".join(f"{a} {len(delivered_ids(root, a))} delivered" for a in MAILBOXES)
              + ", 0 lost, 0 duplicated")
        assert partial_work_files(root) == []
    finally:
        svc.stop()
