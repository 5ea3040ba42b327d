"""test_pickup_dir.py - the Pickup directory end to end: files dropped into RootDir/Pickup
(written as .name, renamed in) reach the Maildirs once with their envelope from
X-Sender/X-Receiver or the header fields (Bcc removed), bad and oversize files go to
Pickup/Archive with events 4164 and 4165, a file dropped while imsd is stopped is taken at
start; ims-sendmail run by an ordinary user (-t with Bcc, -bs, bad usage), bsd-mailx through
it, and `make install DESTDIR= SENDMAIL=yes`."""
import os
import pwd
import shutil
import subprocess
import tempfile

import pytest

from conftest import IMS_BIN, REPO
from outbound_world import wait_out_empty, world  # noqa: F401  (world: the fixture)
from test_smtp import WAIT, Service, free_port, wait_for

SENDMAIL = os.path.join(IMS_BIN, "ims-sendmail")
USER = "imspkuser"


@pytest.fixture
def root():
    r = tempfile.mkdtemp(prefix="ims-pickup-")
    os.chmod(r, 0o755)  # an ordinary user must pass through to Pickup
    yield r
    shutil.rmtree(r, ignore_errors=True)


@pytest.fixture
def svc(root):
    s = Service(root, free_port())
    yield s
    s.stop()


def pickup(svc):
    return os.path.join(svc.root, "imcdata", "Pickup")


def drop(svc, name, data):
    tmp = os.path.join(pickup(svc), "." + name)
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o640)
    os.rename(tmp, os.path.join(pickup(svc), name))


def archive(svc):
    return sorted(os.listdir(os.path.join(pickup(svc), "Archive")))


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_envelope_from_headers_bcc_removed(svc):
    drop(svc, "m1", b"From: Boss <boss@example.org>\nTo: Alice <alice@example.com>\n"
                    b"Bcc: bob@example.com\nSubject: hi\n\nHello\n")
    [a] = svc.wait_mail("alice", 1)
    [b] = svc.wait_mail("bob", 1)
    for data in (read(a), read(b)):
        assert data.startswith(b"Return-Path: <boss@example.org>\n")
        assert b"Bcc" not in data and b"bob@example.com" not in data
        assert b"IMS Pickup directory, file m1" in data
        assert b"\nMessage-ID: <" in data and b"\nDate: " in data
        assert data.endswith(b"Subject: hi\n\nHello\n")
    wait_for(lambda: os.listdir(os.path.join(pickup(svc), ".taking")) == [], "claim released")
    assert [n for n in os.listdir(pickup(svc)) if not n.startswith(".")] == ["Archive"]


def test_envelope_lines(svc):
    drop(svc, "m2", b"X-Sender: <boss@example.org>\nX-Receiver: <bob@example.com>\n"
                    b"To: alice@example.com\nSubject: env\n\nbody\n")
    [b] = svc.wait_mail("bob", 1)
    data = read(b)
    assert b"X-Sender" not in data and b"X-Receiver" not in data
    assert data.endswith(b"To: alice@example.com\nSubject: env\n\nbody\n")
    assert svc.mail("alice") == []


def test_bad_and_oversize_to_archive(root):
    s = Service(root, free_port(), [("InboundSizeLimit", "REG_DWORD", "2000")], start=False)
    p = s.start_console()
    try:
        drop(s, "bad1", b"Subject: nobody to send to\n\nbody\n")
        drop(s, "big1", b"From: boss@example.org\nTo: alice@example.com\n\n" + b"x" * 5000 + b"\n")
        wait_for(lambda: archive(s) == ["bad1", "big1"], "both in Archive")
    finally:
        err = s.stop_console(p)
    assert "Event 4164" in err and "bad1" in err, err
    assert "Event 4165" in err and "big1" in err, err
    assert s.mail("alice") == []


def test_dropped_while_stopped(svc):
    svc.stop()
    drop(svc, "early", b"From: boss@example.org\nTo: alice@example.com\nSubject: early\n\nx\n")
    svc.start()
    [a] = svc.wait_mail("alice", 1)
    assert b"Subject: early" in read(a)


@pytest.fixture
def user():
    subprocess.run(["userdel", "-r", USER], capture_output=True)
    subprocess.run(["useradd", "-M", "-s", "/bin/sh", USER], check=True)
    try:
        yield pwd.getpwnam(USER)
    finally:
        subprocess.run(["userdel", USER], capture_output=True)


def as_user(svc, args, data, extra_env=None):
    env = {"IMS_ROOT": svc.root, "PATH": "/usr/bin:/bin", "HOME": "/"}
    env.update(extra_env or {})
    return subprocess.run(["/usr/sbin/runuser", "-u", USER, "--", *args], input=data, env=env,
                          capture_output=True, timeout=WAIT)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to add a user")
def test_sendmail_as_user(svc, user):
    r = as_user(svc, [SENDMAIL, "-t", "-i"],
                b"To: alice@example.com\nBcc: bob@example.com\nSubject: from a user\n\n.\nend\n")
    assert r.returncode == 0, r.stderr
    [a] = svc.wait_mail("alice", 1)
    [b] = svc.wait_mail("bob", 1)
    data = read(a)
    assert f"from userid {user.pw_uid} {USER}".encode() in data
    assert b"Bcc" not in data and b"Bcc" not in read(b)
    assert data.startswith(f"Return-Path: <{USER}@".encode())
    assert data.endswith(b"Subject: from a user\n\n.\nend\n")
    # Another user cannot list Pickup; the file is gone anyway.
    r = as_user(svc, ["ls", pickup(svc)], b"")
    assert r.returncode != 0


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                    reason="needs root and unshare")
def test_mailx_through_sendmail(svc, user):
    """bsd-mailx runs /usr/sbin/sendmail (it has no variable to change it): in a private
    mount namespace that path is ims-sendmail, the machine's own is untouched."""
    env = {"IMS_ROOT": svc.root, "PATH": "/usr/bin:/bin", "HOME": "/"}
    script = (f"mount --bind {SENDMAIL} /usr/sbin/sendmail && "
              f"exec /usr/sbin/runuser -u {USER} -- mail -s test alice@example.com")
    if not os.path.exists("/usr/sbin/sendmail"):
        pytest.skip("no /usr/sbin/sendmail to bind over")
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                       input=b"hi\n", env=env, capture_output=True, timeout=WAIT)
    assert r.returncode == 0, r.stderr
    [a] = svc.wait_mail("alice", 1)
    data = read(a)
    assert b"Subject: test" in data and data.endswith(b"\nhi\n")
    assert f"from userid {user.pw_uid} {USER}".encode() in data


def test_sendmail_bs(svc):
    conv = (b"HELO me\r\nMAIL FROM:<boss@example.org>\r\nRCPT TO:<bob@example.com>\r\n"
            b"DATA\r\nSubject: bs\r\n\r\nvia -bs\r\n.\r\nQUIT\r\n")
    r = subprocess.run([SENDMAIL, "-bs"], input=conv, env=svc.env, capture_output=True,
                       timeout=WAIT)
    assert r.returncode == 0, r.stderr
    codes = [l[:3] for l in r.stdout.split(b"\r\n") if l]
    assert codes == [b"220", b"250", b"250", b"250", b"354", b"250", b"221"], r.stdout
    [b] = svc.wait_mail("bob", 1)
    assert read(b).endswith(b"Subject: bs\n\nvia -bs\n")


def test_sendmail_exit_codes(svc):
    def run(*args, data=b""):
        return subprocess.run([SENDMAIL, *args], input=data, env=svc.env, capture_output=True,
                              timeout=WAIT)
    r = run("-q")
    assert r.returncode == 64 and b"unknown option" in r.stderr  # EX_USAGE
    r = run(data=b"Subject: x\n\nno recipients\n")
    assert r.returncode == 64 and r.stderr.startswith(b"ims-sendmail: ")
    r = run("bad address@", data=b"x\n")
    assert r.returncode == 67  # EX_NOUSER
    r = run("-oem", "-odi", "alice@example.com", data=b"Subject: dot\n\nend\n.\nnot sent\n")
    assert r.returncode == 0, r.stderr
    [a] = svc.wait_mail("alice", 1)
    assert read(a).endswith(b"Subject: dot\n\nend\n")


def test_make_install_sendmail(tmp_path):
    dest = tmp_path / "dest"
    def install(**kw):
        args = ["make", "-s", "-C", REPO, "install", f"DESTDIR={dest}", "PREFIX=/usr/local"]
        args += [f"{k}={v}" for k, v in kw.items()]
        return subprocess.run(args, capture_output=True, text=True, timeout=300)
    r = install()
    assert r.returncode == 0, r.stderr
    assert (dest / "usr/local/sbin/ims-sendmail").is_file()
    assert not os.path.lexists(dest / "usr/sbin/sendmail")
    r = install(SENDMAIL="yes")
    assert r.returncode == 0, r.stderr
    assert os.readlink(dest / "usr/sbin/sendmail") == "/usr/local/sbin/ims-sendmail"
    os.unlink(dest / "usr/sbin/sendmail")
    (dest / "usr/sbin/sendmail").write_text("another MTA\n")
    r = install(SENDMAIL="yes")
    assert r.returncode != 0 and "not ims-sendmail" in r.stderr
    assert (dest / "usr/sbin/sendmail").read_text() == "another MTA\n"


def test_remote_recipient_goes_out(world):
    """A dropped file with a local and a remote recipient: alice's Maildir and the remote
    domain's exchanger (a recording peer found by MX), as SMTP mail is routed."""
    world.dns("remote.test MX 10 mx1.remote.test\nmx1.remote.test A 127.0.0.2\n")
    peer = world.peer("127.0.0.2")
    svc = world.service()
    drop(svc, "out1", b"From: alice@example.com\nTo: x@remote.test, alice@example.com\n"
                      b"Subject: out\n\nto the world\n")
    [m] = peer.wait_messages(1)
    assert m["mail_from"] == "alice@example.com" and m["rcpts"] == ["x@remote.test"]
    assert b"IMS Pickup directory, file out1" in m["data"]
    assert m["data"].endswith(b"Subject: out\r\n\r\nto the world\r\n")
    svc.wait_mail("alice", 1)
    wait_out_empty(svc)


def test_kill9_exactly_once(svc):
    """Many files, kill -9 while they are taken, restart: each reaches alice exactly once."""
    import signal
    import time
    from test_smtp import dead
    n = 500
    pid = svc.pid()
    for i in range(n):
        drop(svc, f"k{i:04d}", b"From: boss@example.org\nTo: alice@example.com\n"
                               + f"Subject: load {i}\n\nmessage {i}\n".encode())
    wait_for(lambda: len(svc.mail("alice")) >= n // 20, "a part delivered")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: dead(pid), "imsd gone")
    assert len(svc.mail("alice")) < n, "the kill came too late to test anything"
    svc.start()

    def subjects():
        out = []
        for p in svc.mail("alice"):
            for line in read(p).split(b"\n"):
                if line.startswith(b"Subject: "):
                    out.append(line.decode())
                    break
        return out

    deadline = time.monotonic() + WAIT * 3
    while time.monotonic() < deadline and len(subjects()) < n:
        time.sleep(0.1)
    wait_for(lambda: not os.listdir(os.path.join(pickup(svc), ".taking")), "claims gone")
    time.sleep(0.5)
    assert sorted(subjects()) == sorted(f"Subject: load {i}" for i in range(n))
