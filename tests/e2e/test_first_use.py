"""test_first_use.py - what a new administrator meets first, end to end: `make run`'s default
instance takes mail for postmaster; a checkout only root can read still runs the service (or
`make run` says in one sentence why it cannot); postmaster at every accepted domain; the
standard relay audit (nmap's smtp-open-relay) reaches its verdict with the default settings."""
import glob
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import IMS_BIN, REPO
from test_smtp import WAIT, Service, free_port, run, wait_for

IS_ROOT = os.geteuid() == 0
RUN_PORT = 2525  # make run's embedded default
RUN_METRICS = 9125  # ... and its MetricsAddress port
BUILD_WAIT = 600  # a make run that must build first (2 cores, the suite running beside it)


def port_busy(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def copy_checkout(dest):
    """A checkout at dest: the repository's files as they are now (tracked and new ones, as a
    clone of this work tree would have them) and its build tree, times kept so make has
    little to redo."""
    files = subprocess.run(["git", "-C", REPO, "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], capture_output=True, check=True).stdout
    os.makedirs(dest)
    for rel in filter(None, files.decode().split("\0")):
        src = os.path.join(REPO, rel)
        if not os.path.isfile(src):
            continue  # deleted in the work tree
        os.makedirs(os.path.join(dest, os.path.dirname(rel)), exist_ok=True)
        shutil.copy2(src, os.path.join(dest, rel))
    build = os.path.join(REPO, "build")
    if os.path.isdir(build):
        shutil.copytree(build, os.path.join(dest, "build"), symlinks=True,
                        ignore=shutil.ignore_patterns("fuzz", "san"))


@pytest.fixture(scope="module")
def checkout():
    """A copy of the checkout in a directory of its own (mode 0755 unless a test closes it)."""
    parent = tempfile.mkdtemp(prefix="ims-checkout-")
    os.chmod(parent, 0o755)
    dest = os.path.join(parent, "ims")
    copy_checkout(dest)
    yield parent, dest
    os.chmod(parent, 0o755)
    shutil.rmtree(parent, ignore_errors=True)


def user_env():
    """The environment of a user's shell: without the SAN=1 of a `make test SAN=1` that runs
    this suite (inherited through MAKEFLAGS, it made the copy's make build the whole sanitizer
    tree, one file at a time, which the copied build/ does not hold)."""
    return {k: v for k, v in os.environ.items()
            if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "SAN")}


def make_run(dest):
    return subprocess.Popen(["make", "--no-print-directory", "-C", dest, "run"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env=user_env())


def stop_make_run(p):
    """Ctrl-C, as the README says: imsd stops and make returns."""
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGINT)
        try:
            return p.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            return p.communicate()[0]
    return p.communicate()[0]


@pytest.mark.skipif(port_busy(RUN_PORT) or port_busy(RUN_METRICS),
                    reason=f"something listens on 127.0.0.1:{RUN_PORT} or :{RUN_METRICS}")
def test_make_run_default_accepts_postmaster(checkout):
    """The README's first steps: make run, then one swaks line to postmaster@localhost, and
    the message is a file in var/store/postmaster/new/."""
    _, dest = checkout
    p = make_run(dest)
    try:
        deadline = time.monotonic() + BUILD_WAIT
        while not port_busy(RUN_PORT):
            assert p.poll() is None, f"make run ended ({p.returncode}):\n{p.communicate()[0]}"
            assert time.monotonic() < deadline, "make run did not listen in time"
            time.sleep(0.1)
        out = subprocess.run(["swaks", "--server", f"127.0.0.1:{RUN_PORT}", "--to",
                              "postmaster@localhost", "--body", "hello from the README"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "250 2.6.0" in out.stdout
        new = os.path.join(dest, "var", "store", "postmaster", "new")
        [f] = wait_for(lambda: glob.glob(os.path.join(new, "*")), "the message in postmaster")
        assert b"hello from the README" in open(f, "rb").read()
        # The README's counters: MetricsAddress 127.0.0.1:9125 serves them.
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{RUN_METRICS}/metrics", timeout=WAIT) as r:
            text = r.read().decode()
        assert "\nims_messages_received_total 1\n" in text, text[:2000]
    finally:
        log = stop_make_run(p)
    assert "MSExchangeIMC" in log or "imsd" in log, log
    # A second make run on the same ./var finds its domain and mailbox and starts again.
    p = make_run(dest)
    try:
        deadline = time.monotonic() + BUILD_WAIT
        while not port_busy(RUN_PORT):
            assert p.poll() is None, f"second make run ended:\n{p.communicate()[0]}"
            assert time.monotonic() < deadline, "second make run did not listen in time"
            time.sleep(0.1)
        with smtplib.SMTP("127.0.0.1", RUN_PORT, timeout=WAIT) as c:
            c.sendmail("s@remote.test", ["Postmaster"], b"Subject: again\r\n\r\nagain\r\n")
        wait_for(lambda: len(glob.glob(os.path.join(new, "*"))) == 2, "the second message")
    finally:
        stop_make_run(p)


@pytest.mark.skipif(not IS_ROOT, reason="a checkout only root can read is root's case")
def test_checkout_only_root_can_read(checkout):
    """Cloned into a 0700 directory (as /root is) and run as root: the service tests pass
    from there, and make run stops at once with one sentence that says what to do."""
    parent, dest = checkout
    os.chmod(parent, 0o700)
    try:
        p = subprocess.run(["make", "--no-print-directory", "-C", dest, "run"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=BUILD_WAIT, env=user_env())
        assert p.returncode != 0, p.stdout + p.stderr
        assert "the service account nobody cannot enter " + parent in p.stderr, p.stderr
        assert "chmod o+x" in p.stderr
        bin_dir = os.path.join(dest, "build", "bin")
        if not os.path.exists(os.path.join(bin_dir, "imsd")):
            subprocess.run(["make", "-C", dest, "-j2", "all"], check=True, capture_output=True,
                           timeout=BUILD_WAIT, env=user_env())
        env = dict(os.environ, IMS_BIN=bin_dir)
        env.pop("IMS_MAPISVC", None)
        t = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "tests/e2e/test_service.py", "tests/e2e/test_smtp_session.py",
                            "tests/e2e/test_smtp.py::test_delivery_to_maildir"],
                           cwd=dest, env=env, capture_output=True, text=True, timeout=900)
        assert t.returncode == 0, t.stdout[-6000:] + t.stderr[-2000:]
        assert "MAPI_E_NO_ACCESS" not in t.stdout
    finally:
        os.chmod(parent, 0o755)


def test_install_domain_bad_input():
    """--domain with something that is no domain name: a usage error, nothing installed."""
    root = tempfile.mkdtemp(prefix="ims-first-")
    os.chmod(root, 0o755)
    try:
        env = dict(os.environ, IMS_ROOT=root)
        account = ["--account", "nobody"] if IS_ROOT else []
        p = run("imsctl", "install", *account, "--domain", "not a domain!", env=env, check=False)
        assert p.returncode == 2, p.stdout + p.stderr
        assert "--domain wants a domain name" in p.stderr
        q = run("reg", "query", r"HKLM\System\CurrentControlSet\Services\MSExchangeIMC",
                env=env, check=False)
        assert q.returncode == 1, q.stdout  # not installed
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_postmaster_at_every_domain():
    """RFC 5321 4.5.1: postmaster@ each accepted domain and <postmaster> alone reach the
    administrator's mailbox; a domain's own postmaster address wins; before the mailbox exists
    postmaster gets 550, not a 250 for mail nobody reads."""
    root = tempfile.mkdtemp(prefix="ims-first-")
    os.chmod(root, 0o755)
    s = Service(root, free_port())
    try:
        with smtplib.SMTP("127.0.0.1", s.port, timeout=WAIT) as c:
            c.ehlo("client.test")
            c.mail("s@remote.test")
            assert c.rcpt("postmaster@example.com")[0] == 550
            c.rset()
        s.stop()
        account = ["--account", "nobody"] if IS_ROOT else []
        out = run("imsctl", "install", *account, "--listen", f"127.0.0.1:{s.port}",
                  "--domain", "example.net", env=s.env).stdout
        assert "Mailbox postmaster <postmaster@example.net> added" in out, out
        run("imsadm", "mailbox", "add", "carol", "--address", "postmaster@example.org",
            env=s.env)
        s.start()
        with smtplib.SMTP("127.0.0.1", s.port, timeout=WAIT) as c:
            c.ehlo("client.test")
            c.sendmail("s@remote.test", ["postmaster@example.com", "POSTMASTER@example.net",
                                         "Postmaster", "postmaster@example.org"],
                       b"Subject: to postmaster\r\n\r\nhello\r\n")
        assert len(s.wait_mail("postmaster", 1)) == 1  # three names of it, one copy
        assert len(s.wait_mail("carol", 1)) == 1  # example.org has its own postmaster
    finally:
        s.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.skipif(not shutil.which("nmap"), reason="nmap is not installed")
def test_nmap_relay_audit_gets_its_verdict(tmp_path):
    """nmap's smtp-open-relay runs its 16 relay tests in one session; with the default
    settings each is refused and the script reports the server is not an open relay (it was
    cut off by 421 Too many errors after 10)."""
    root = tempfile.mkdtemp(prefix="ims-first-")
    os.chmod(root, 0o755)
    s = Service(root, free_port())
    try:
        # nmap runs the script only on a port it takes for SMTP: say so in a private
        # nmap-services (the rest of its data comes from its own directory).
        (tmp_path / "nmap-services").write_text(f"smtp\t{s.port}/tcp\t0.5\n")
        p = subprocess.run(["nmap", "-Pn", "-n", "-sT", "--datadir", str(tmp_path), "-p",
                            str(s.port), "--script", "smtp-open-relay", "--script-args",
                            "smtp-open-relay.domain=relay.test", "127.0.0.1"],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "smtp-open-relay: Server doesn't seem to be an open relay, all tests failed" \
            in p.stdout, p.stdout
    finally:
        s.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_routing_table_inbound_entry():
    """The Routing page's table as subkeys: a domain routed <inbound> is ours (its postmaster
    reaches the administrator's mailbox, any other address there is unknown); a sub-domain of
    it too (whole labels), and a look-alike is not ours; a bad entry is event 4086 at start."""
    root = tempfile.mkdtemp(prefix="ims-first-")
    os.chmod(root, 0o755)
    s = Service(root, free_port(), start=False)
    try:
        account = ["--account", "nobody"] if IS_ROOT else []
        run("imsctl", "install", *account, "--listen", f"127.0.0.1:{s.port}",
            "--domain", "example.com", env=s.env)
        key = r"HKLM\System\CurrentControlSet\Services\MSExchangeIMC\Parameters\Routing"
        run("reg", "add", key + r"\branch.test", "/v", "Host", "/d", "<inbound>", "/f",
            env=s.env)
        run("reg", "add", key + r"\bad.test", "/v", "Host", "/d", "not a host!", "/f",
            env=s.env)
        proc = s.start_console()
        try:
            with smtplib.SMTP("127.0.0.1", s.port, timeout=WAIT) as c:
                c.ehlo("client.test")
                assert c.mail("s@remote.test")[0] == 250
                assert c.rcpt("postmaster@branch.test")[0] == 250
                assert c.rcpt("postmaster@x.branch.test")[0] == 250
                assert c.rcpt("someone@branch.test")[0] == 550  # ours, and unknown
                assert c.rcpt("postmaster@mybranch.test")[0] == 550  # not ours: no relaying
                assert c.data(b"Subject: routed\r\n\r\nto the branch\r\n")[0] == 250
            assert len(s.wait_mail("postmaster", 1)) == 1
        finally:
            err = s.stop_console(proc)
        bad = [l for l in err.splitlines() if "Event 4086 " in l and "bad.test" in l]
        assert bad, err
    finally:
        s.stop()
        shutil.rmtree(root, ignore_errors=True)
