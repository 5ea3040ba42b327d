"""test_maildir_readers.py - the Maildir files imsd delivers, read by the programs people read
Maildir with: their form (LF line ends, the Maildir++ S= size in the name), Dovecot's doveadm
(without a running Dovecot: a private config, run as the mailbox's owner) and mutt (under a
pseudo-terminal, piping the messages it parsed to a file).

One imsd delivers a few messages for the whole module; the readers only read (doveadm keeps
its index and control files outside the Maildir, mutt opens it read-only). doveadm and mutt
are Debian packages dovecot-core and mutt (tools/deps.sh installs them); without them those
tests skip."""
import os
import pty
import pwd
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from test_smtp import WAIT, Service, free_port, smtp

LONG_LINE = b"<td>" + b"x" * 4080 + b"</td>\r\n"  # 4,096 octets with its CRLF
MESSAGES = [
    (b"Subject: first\r\nFrom: Sender <s@remote.test>\r\nTo: bob@example.com\r\n\r\n"
     b"Hello, Dovecot and mutt.\r\nA second line.\r\n"),
    (b"Subject: long and 8-bit\r\nFrom: s@remote.test\r\nMIME-Version: 1.0\r\n"
     b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
     b"<table>\r\n" + LONG_LINE + b"caf\xc3\xa9\r\n</table>\r\n"),
    (b"Subject: dots and blanks\r\nFrom: s@remote.test\r\n\r\n"
     b".a line that starts with a dot\r\n\r\n..two dots\r\n\r\nend\r\n\r\n"),
]
SUBJECTS = [re.search(rb"^Subject: (.*?)\r\n", m).group(1).decode() for m in MESSAGES]
SIZE_FIELD = re.compile(r",S=(\d+)(?:[,:]|$)")


def lf(data):
    return data.replace(b"\r\n", b"\n")


def body_of(message):
    return message.split(b"\r\n\r\n", 1)[1]


@pytest.fixture(scope="module")
def delivered():
    """{subject: (path of the delivered file, the message as sent)} for bob's Maildir."""
    root = tempfile.mkdtemp(prefix="ims-readers-")
    os.chmod(root, 0o755)
    svc = Service(root, free_port())
    try:
        ids = {}
        with smtp(svc) as c:
            for subject, msg in zip(SUBJECTS, MESSAGES):
                c.ehlo("client.test")
                code, resp = c.docmd("MAIL FROM:<s@remote.test> BODY=8BITMIME")
                assert code == 250, resp
                assert c.rcpt("bob@example.com")[0] == 250
                code, resp = c.data(msg)
                assert code == 250, resp
                ids[subject] = re.search(rb"queued as ([0-9A-F]{16})", resp).group(1).decode()
        files = svc.wait_mail("bob", len(MESSAGES))
        by_id = {os.path.basename(f)[:16]: f for f in files}
        svc.maildir = os.path.join(root, "store", "bob")
        svc.files = {s: (by_id[ids[s]], m) for s, m in zip(SUBJECTS, MESSAGES)}
        yield svc
    finally:
        svc.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_files_are_lf_and_sized(delivered):
    """No CR anywhere, S= is the file's size, the content is what was sent with CRLF -> LF,
    after Return-Path and Received (LF too)."""
    for subject, (path, sent) in delivered.files.items():
        data = open(path, "rb").read()
        name = os.path.basename(path)
        assert b"\r" not in data, name
        m = SIZE_FIELD.search(name)
        assert m and int(m.group(1)) == len(data) == os.path.getsize(path), name
        assert data.endswith(lf(sent)), name
        head = data[:len(data) - len(lf(sent))].decode()
        assert re.fullmatch(r"Return-Path: <s@remote\.test>\n"
                            r"Received: from client\.test \(\[127\.0\.0\.1\]\)\n"
                            r"\tby \S+ with ESMTP id [0-9A-F]{16};\n"
                            r"\t\w\w\w, \d+ \w\w\w \d{4} \d\d:\d\d:\d\d \+0000\n", head), head


# --- running a reader as the mailbox's owner ----------------------------------------------------


def owner_of(path):
    st = os.stat(path)
    return st.st_uid, st.st_gid


def private_dir(uid, gid):
    """A temp dir the mailbox's owner may write (the readers' own files go there)."""
    d = tempfile.mkdtemp(prefix="ims-reader-")
    os.chmod(d, 0o755)
    if os.geteuid() == 0:
        os.chown(d, uid, gid)
    return d


def as_owner(uid, gid):
    """subprocess arguments that run a program as uid:gid (as root; else we are the owner)."""
    if os.geteuid() != 0 or uid == 0:
        return {}
    return {"user": uid, "group": gid, "extra_groups": []}


# --- Dovecot --------------------------------------------------------------------------------------

DOVEADM = shutil.which("doveadm")


@pytest.fixture
def doveadm(delivered):
    """doveadm(*args) -> stdout: doveadm with a private config (no listeners, no auth: run as
    the mailbox's owner without -u, which looks no user up), index and control files in a temp
    dir so that the Maildir stays as imsd wrote it."""
    if not DOVEADM:
        pytest.skip("doveadm is missing (Debian package dovecot-core; tools/deps.sh installs it)")
    uid, gid = owner_of(delivered.maildir)
    d = private_dir(uid, gid)
    conf = os.path.join(d, "dovecot.conf")
    with open(conf, "w") as f:
        f.write(f"mail_location = maildir:{delivered.maildir}:INDEX={d}/index:CONTROL={d}/control\n"
                f"base_dir = {d}/run\nstate_dir = {d}/state\n"
                "protocols =\nlisten =\nssl = no\n")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": d,
           "USER": pwd.getpwuid(uid).pw_name}

    def run(*args):
        p = subprocess.run([DOVEADM, "-c", conf, *args], env=env, capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=WAIT, **as_owner(uid, gid))
        assert p.returncode == 0, (args, p.stdout, p.stderr)
        return p.stdout

    yield run
    shutil.rmtree(d, ignore_errors=True)


def test_doveadm_reads_the_maildir(delivered, doveadm):
    out = doveadm("mailbox", "status", "messages", "INBOX").decode()
    assert out.split() == ["INBOX", f"messages={len(MESSAGES)}"], out
    # The pager format: "field: value" lines (a multi-line value on the lines after its name),
    # messages separated by a form feed line.
    out = doveadm("fetch", "hdr.subject size.physical size.virtual body", "mailbox", "INBOX",
                  "all")
    records = [r for r in out.split(b"\f\n") if r.strip()]
    assert len(records) == len(MESSAGES), out
    seen = set()
    for rec in records:
        head, body = rec.split(b"\nbody:\n", 1)
        fields = dict(line.split(": ", 1) for line in head.decode().splitlines())
        subject = fields["hdr.subject"]
        path, sent = delivered.files[subject]
        size = os.path.getsize(path)
        # Dovecot takes S= for the physical size: it is the file's; the virtual size counts
        # CRLF line ends, the size of the message as it was sent with our two headers.
        assert int(fields["size.physical"]) == size == int(SIZE_FIELD.search(path).group(1))
        assert int(fields["size.virtual"]) == size + open(path, "rb").read().count(b"\n")
        assert body == lf(body_of(sent)), (subject, body)
        seen.add(subject)
    assert seen == set(SUBJECTS)


# --- mutt -----------------------------------------------------------------------------------------

MUTT = shutil.which("mutt")


def run_under_pty(argv, env, timeout):
    """Run argv on a pseudo-terminal (mutt wants one) until it exits or timeout seconds pass
    (then it is killed). Returns (exit status or None if killed, what it drew)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec or die, never return into pytest
        try:
            os.execvpe(argv[0], argv, env)
        finally:
            os._exit(127)
    deadline = time.monotonic() + timeout
    screen = b""
    try:
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status), screen
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    screen += os.read(fd, 65536)
                except OSError:  # EIO: the terminal's other end is closed, it is exiting
                    time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return None, screen
    finally:
        os.close(fd)


def test_mutt_reads_the_maildir(delivered):
    if not MUTT:
        pytest.skip("mutt is missing (Debian package mutt; tools/deps.sh installs it)")
    d = tempfile.mkdtemp(prefix="ims-mutt-")
    try:
        # No muttrc (-n -F /dev/null), read-only (-R); from the first message on, pipe each
        # one decoded (mutt's own parsing of its headers and body, in UTF-8) to a file of its
        # own and go to the next; quit. $folder must exist, or mutt first asks whether to
        # make ~/Mail and takes the first pushed key for the answer.
        keys = "<first-entry>" + "".join(f"<pipe-message>cat > {d}/msg{i}<enter><next-entry>"
                                         for i in range(len(MESSAGES))) + "<quit>"
        argv = [MUTT, "-n", "-F", "/dev/null", "-R", "-f", delivered.maildir,
                "-e", f"set folder={d} wait_key=no pipe_decode=yes charset=utf-8 mark_old=no "
                      "move=no quit=yes beep=no",
                "-e", f'push "{keys}"']
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": d, "TERM": "vt100"}
        status, screen = run_under_pty(argv, env, WAIT)
        assert status == 0, (f"mutt exited with {status}", screen[-2000:])
        piped = [open(os.path.join(d, f"msg{i}"), "rb").read() for i in range(len(MESSAGES))]
        assert b"Msgs:%d" % len(MESSAGES) in screen, screen[-2000:]  # its status line
        by_subject = {}
        for text in piped:
            head, body = text.split(b"\n\n", 1)
            subject = re.search(rb"^Subject: (.*)$", head, re.M).group(1).decode()
            by_subject[subject] = body
        assert sorted(by_subject) == sorted(SUBJECTS), piped
        for subject, (path, sent) in delivered.files.items():
            # pipe_decode ends the message with an empty line of its own.
            assert by_subject[subject] in (lf(body_of(sent)), lf(body_of(sent)) + b"\n"), \
                (subject, by_subject[subject])
        # Read-only: the files are where imsd put them, unchanged.
        assert sorted(os.listdir(os.path.join(delivered.maildir, "new"))) == \
            sorted(os.path.basename(p) for p, _ in delivered.files.values())
    finally:
        shutil.rmtree(d, ignore_errors=True)
