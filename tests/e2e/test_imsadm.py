"""End-to-end tests of the imsadm command: domains and mailboxes (success and error paths, exit
codes and messages), the registry layout under HKLM\\Software\\IMS\\Directory as reg query shows
it, refused changes leaving the registry and the store as they were, the Maildirs (made, kept,
given to the service account when root runs imsadm), a user without write access, and the
mailboxes' passwords (from standard input and from a terminal, where they are kept, who can
read them, that they never appear in clear text)."""

import os
import pty
import pwd
import re
import select
import shutil
import signal
import stat
import subprocess
import tempfile
import termios
import time
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("IMS_BIN") or REPO / "build" / "bin")
IMSADM = str(BIN / "imsadm")
REG = str(BIN / "reg")

DIRECTORY = r"HKLM\Software\IMS\Directory"
SERVICE = r"HKLM\System\CurrentControlSet\Services\MSExchangeIMC"
RUN_TIMEOUT = 60
EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
IS_ROOT = os.geteuid() == 0


def _run(argv, env, cwd=None, user=None):
    if user:
        argv = ["runuser", "-u", user, "--", *argv]
    p = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=RUN_TIMEOUT)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


@pytest.fixture
def adm(env, workdir):
    """adm(*args) -> (rc, stdout, stderr) of imsadm."""

    def run(*args):
        return _run([IMSADM, *map(str, args)], env, workdir)

    return run


@pytest.fixture
def ok(adm):
    """ok(*args) -> stdout of imsadm, which must succeed; warnings are allowed only when
    warn is true."""

    def run(*args, warn=False):
        rc, out, err = adm(*args)
        assert rc == EXIT_OK, f"imsadm {args}: rc={rc}\nstdout: {out}\nstderr: {err}"
        if not warn:
            assert err == "", f"imsadm {args}: stderr: {err}"
        return out

    return run


@pytest.fixture
def reg(env, workdir):
    def run(*args):
        return _run([REG, *map(str, args)], env, workdir)

    return run


def query(reg):
    """The Directory subtree as reg query /s prints it ("" when it does not exist)."""
    rc, out, err = reg("query", DIRECTORY, "/s")
    assert rc in (0, 1), err
    return out.replace("\r\n", "\n") if rc == 0 else ""


def tree(path):
    """Every file and directory under path, relative, sorted."""
    if not path.exists():
        return []
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def failed(result, *fragments):
    rc, out, err = result
    assert (rc, out) == (EXIT_FAIL, ""), f"rc={rc} stdout={out!r} stderr={err!r}"
    assert err.startswith("imsadm: "), err
    assert err.count("\n") == 1, err
    for f in fragments:
        assert f in err, f"{f!r} not in {err!r}"


def usage(result, *fragments):
    rc, out, err = result
    assert (rc, out) == (EXIT_USAGE, ""), f"rc={rc} stdout={out!r} stderr={err!r}"
    assert err.startswith("imsadm: ") and err.endswith("Try 'imsadm --help'.\n"), err
    for f in fragments:
        assert f in err, f"{f!r} not in {err!r}"


# --- usage ---------------------------------------------------------------------------------


def test_help(ok):
    out = ok("--help")
    assert out.startswith("Usage: imsadm domain add|remove DOMAIN\n")
    for word in ("mailbox add ALIAS --address ADDRESS...", "mailbox set ALIAS", "IMS_ROOT",
                 "mailbox password ALIAS [--clear]",
                 "Exit status: 0 done, 1 failed, 2 usage error."):
        assert word in out
    assert ok("mailbox", "add", "--help") == out
    assert ok("help") == out


@pytest.mark.parametrize("args,fragment", [
    ((), "an object is needed"),
    (("user", "add"), 'unknown object "user"'),
    (("domain",), "domain: a command is needed"),
    (("domain", "rename", "x"), 'domain: unknown command "rename"'),
    (("domain", "add"), "domain add: DOMAIN is missing"),
    (("domain", "add", "a.example", "b.example"), 'unexpected argument "b.example"'),
    (("domain", "list", "a.example"), 'unexpected argument "a.example"'),
    (("domain", "add", "a.example", "--name", "x"), 'unknown option "--name"'),
    (("mailbox", "add", "bob"), "at least one --address is needed"),
    (("mailbox", "add", "--address", "bob@a.example"), "mailbox add: ALIAS is missing"),
    (("mailbox", "add", "bob", "--address"), "--address needs a value"),
    (("mailbox", "add", "bob", "--address", "b@a.example", "--name"), "--name needs a value"),
    (("mailbox", "add", "bob", "--address", "b@a.example", "--name", "B", "--name", "C"),
     "--name given twice"),
    (("mailbox", "add", "bob", "--address", "b@a.example", "--primary", "b@a.example"),
     'unknown option "--primary"'),
    (("mailbox", "set", "bob"), "mailbox set: nothing to change"),
    (("mailbox", "set", "bob", "--primary", "a@a.example", "--primary", "b@a.example"),
     "--primary given twice"),
    (("mailbox", "show"), "mailbox show: ALIAS is missing"),
    (("mailbox", "show", "bob", "carol"), 'unexpected argument "carol"'),
    (("mailbox", "list", "bob"), 'unexpected argument "bob"'),
    (("mailbox", "password"), "mailbox password: ALIAS is missing"),
    # Never a password on the command line.
    (("mailbox", "password", "bob", "secret"), 'unexpected argument "secret"'),
    (("mailbox", "password", "bob", "--clear=yes"), "--clear takes no value"),
    (("mailbox", "password", "bob", "--clear", "--clear"), "--clear given twice"),
    (("mailbox", "password", "bob", "--password", "x"), 'unknown option "--password"'),
])
def test_usage_errors(adm, reg, ims_root, args, fragment):
    usage(adm(*args), fragment)
    # A usage error touches nothing.
    assert query(reg) == ""
    assert tree(ims_root / "store") == []


# --- domains -------------------------------------------------------------------------------


def test_domains(ok, adm, reg):
    assert ok("domain", "list") == ""
    assert ok("domain", "add", "Example.COM") == ""
    ok("domain", "add", "b.example")
    ok("domain", "add", "a.example")
    assert ok("domain", "list") == "a.example\nb.example\nexample.com\n"
    assert query(reg) == (
        "\n"
        "HKEY_LOCAL_MACHINE\\Software\\IMS\\Directory\\Domains\n"
        "    example.com    REG_DWORD    0x1\n"
        "    b.example    REG_DWORD    0x1\n"
        "    a.example    REG_DWORD    0x1\n"
        "\n"
        "HKEY_LOCAL_MACHINE\\Software\\IMS\\Directory\\Mailboxes\n"
        "\n")
    before = query(reg)
    failed(adm("domain", "add", "EXAMPLE.com"), 'domain "example.com" is already accepted')
    failed(adm("domain", "add", "bad..example"), 'invalid domain name "bad..example"')
    failed(adm("domain", "add", "[10.0.0.1]"), 'invalid domain name "[10.0.0.1]"')
    failed(adm("domain", "remove", "other.example"),
           'domain "other.example" is not an accepted domain')
    assert query(reg) == before
    assert ok("domain", "remove", "B.Example") == ""
    assert ok("domain", "list") == "a.example\nexample.com\n"


def test_domain_in_use(ok, adm):
    ok("domain", "add", "example.com")
    ok("mailbox", "add", "bob", "--address", "bob@example.com", warn=True)
    failed(adm("domain", "remove", "example.com"),
           'domain "example.com" is in use: mailbox "bob" has an address in it')
    ok("mailbox", "remove", "bob")
    ok("domain", "remove", "example.com")
    assert ok("domain", "list") == ""


# --- mailboxes -----------------------------------------------------------------------------


def test_mailbox_lifecycle(ok, adm, reg, ims_root):
    ok("domain", "add", "example.com")
    ok("domain", "add", "example.org")
    assert ok("mailbox", "list") == ""
    # --address takes the words up to the next option; the first is the primary.
    assert ok("mailbox", "add", "Bob", "--address", "Bob@Example.com", "bob.smith@example.org",
              "--name", "Bob Smith", warn=True) == ""
    ok("mailbox", "add", "al", "--address", "al@example.com", "--address=al2@example.org",
       warn=True)
    assert ok("mailbox", "list") == "al\nBob\n"
    maildir = ims_root / "store" / "Bob"
    assert ok("mailbox", "show", "bob") == (
        "Alias:        Bob\n"
        "Display name: Bob Smith\n"
        "Primary:      Bob@Example.com\n"
        "Secondary:    bob.smith@example.org\n"
        f"Maildir:      {maildir}\n"
        "Password:     none\n")
    assert ok("mailbox", "show", "AL") == (
        "Alias:        al\n"
        "Display name: al\n"
        "Primary:      al@example.com\n"
        "Secondary:    al2@example.org\n"
        f"Maildir:      {ims_root / 'store' / 'al'}\n"
        "Password:     none\n")
    for sub in ("cur", "new", "tmp"):
        assert (maildir / sub).is_dir()
    assert stat.S_IMODE(maildir.stat().st_mode) == 0o700

    # The registry layout: Exchange's ProxyAddresses.
    assert query(reg) == (
        "\n"
        "HKEY_LOCAL_MACHINE\\Software\\IMS\\Directory\\Domains\n"
        "    example.com    REG_DWORD    0x1\n"
        "    example.org    REG_DWORD    0x1\n"
        "\n"
        "HKEY_LOCAL_MACHINE\\Software\\IMS\\Directory\\Mailboxes\n"
        "\n"
        "HKEY_LOCAL_MACHINE\\Software\\IMS\\Directory\\Mailboxes\\al\n"
        "    DisplayName    REG_SZ    al\n"
        "    ProxyAddresses    REG_MULTI_SZ    SMTP:al@example.com\\0smtp:al2@example.org\n"
        "\n"
        "HKEY_LOCAL_MACHINE\\Software\\IMS\\Directory\\Mailboxes\\Bob\n"
        "    DisplayName    REG_SZ    Bob Smith\n"
        "    ProxyAddresses    REG_MULTI_SZ    SMTP:Bob@Example.com\\0smtp:bob.smith@example.org\n"
        "\n")

    # set: removals, then additions, then the primary (the old one stays as secondary).
    assert ok("mailbox", "set", "bob", "--name", "Robert Smith", "--add-address",
              "robert@example.org", "--add-address", "rs@example.com", "--remove-address",
              "BOB.SMITH@example.org") == ""
    ok("mailbox", "set", "bob", "--primary", "robert@example.org")
    assert ok("mailbox", "show", "bob") == (
        "Alias:        Bob\n"
        "Display name: Robert Smith\n"
        "Primary:      robert@example.org\n"
        "Secondary:    Bob@Example.com\n"
        "Secondary:    rs@example.com\n"
        f"Maildir:      {maildir}\n"
        "Password:     none\n")

    # remove: gone from the directory, the Maildir and its mail stay.
    (maildir / "new" / "1.eml").write_bytes(b"Subject: kept\r\n\r\nbody\r\n")
    assert ok("mailbox", "remove", "BOB") == ""
    assert ok("mailbox", "list") == "al\n"
    failed(adm("mailbox", "show", "bob"), 'no mailbox "bob"')
    failed(adm("mailbox", "remove", "bob"), 'no mailbox "bob"')
    assert (maildir / "new" / "1.eml").read_bytes() == b"Subject: kept\r\n\r\nbody\r\n"
    # The address is free again.
    ok("mailbox", "add", "robert", "--address", "robert@example.org", warn=True)


@pytest.mark.parametrize("args,fragments", [
    (("mailbox", "add", ".hidden", "--address", "new@example.com"),
     ('invalid alias ".hidden"',)),
    (("mailbox", "add", "a/b", "--address", "new@example.com"), ('invalid alias "a/b"',)),
    (("mailbox", "add", "x" * 65, "--address", "new@example.com"), ("invalid alias",)),
    (("mailbox", "add", "MSExchangeIMC", "--address", "new@example.com"),
     ("reserved for the gateway",)),
    (("mailbox", "add", "new", "--address", "not-an-address"),
     ('invalid address "not-an-address"',)),
    (("mailbox", "add", "new", "--address", "new@example.com", "a..b@example.com"),
     ('invalid address "a..b@example.com"',)),
    (("mailbox", "add", "new", "--address", "new@example.com", "new@unknown.example"),
     ('"unknown.example" is not an accepted domain', "imsadm domain add")),
    (("mailbox", "add", "new", "--address", "BOB@example.com"),
     ('address "BOB@example.com" belongs to mailbox "bob"',)),
    (("mailbox", "add", "new", "--address", "new@example.com", "NEW@EXAMPLE.COM"),
     ('address "NEW@EXAMPLE.COM" is given twice',)),
    (("mailbox", "add", "BOB", "--address", "new@example.com"),
     ('mailbox "bob" exists already',)),
    (("mailbox", "add", "new", "--address", "new@example.com", "--name", ""),
     ("invalid display name",)),
    (("mailbox", "add", "new", "--address", "new@example.com", "--name", "two\nlines"),
     ("invalid display name",)),
    (("mailbox", "set", "bob", "--add-address", "al@example.com"),
     ('address "al@example.com" belongs to mailbox "al"',)),
    (("mailbox", "set", "bob", "--add-address", "b@example.com"),
     ('"b@example.com" is already an address of mailbox "bob"',)),
    (("mailbox", "set", "bob", "--add-address", "b@elsewhere.example"),
     ('"elsewhere.example" is not an accepted domain',)),
    (("mailbox", "set", "bob", "--remove-address", "bob@example.com"),
     ('"bob@example.com" is the primary address of mailbox "bob"',)),
    (("mailbox", "set", "bob", "--remove-address", "zz@example.com"),
     ('"zz@example.com" is not an address of mailbox "bob"',)),
    (("mailbox", "set", "bob", "--primary", "al@example.com"),
     ('belongs to mailbox "al"',)),
    (("mailbox", "set", "bob", "--primary", "@example.com"), ('invalid address "@example.com"',)),
    (("mailbox", "set", "carol", "--name", "Carol"), ('no mailbox "carol"',)),
    (("mailbox", "remove", "../bob"), ('invalid alias "../bob"',)),
    (("mailbox", "show", "carol"), ('no mailbox "carol"',)),
])
def test_refused_changes_leave_everything(ok, adm, reg, ims_root, args, fragments):
    ok("domain", "add", "example.com")
    ok("mailbox", "add", "bob", "--address", "bob@example.com", "b@example.com", warn=True)
    ok("mailbox", "add", "al", "--address", "al@example.com", warn=True)
    before, files = query(reg), tree(ims_root / "store")
    failed(adm(*args), *fragments)
    assert query(reg) == before
    assert tree(ims_root / "store") == files


def test_relative_root(ok, env, tmp_path):
    """IMS_ROOT relative to the working directory: the Maildir shown is absolute."""
    e = dict(env, IMS_ROOT="rel-root")
    (tmp_path / "rel-root").mkdir()
    run = lambda *a: _run([IMSADM, *a], e, tmp_path)  # noqa: E731
    assert run("domain", "add", "example.com")[0] == 0
    assert run("mailbox", "add", "bob", "--address", "bob@example.com")[0] == 0
    rc, out, _ = run("mailbox", "show", "bob")
    assert rc == 0
    assert f"Maildir:      {tmp_path / 'rel-root' / 'store' / 'bob'}\n" in out
    assert (tmp_path / "rel-root" / "store" / "bob" / "new").is_dir()


# --- the service account -------------------------------------------------------------------


@pytest.mark.skipif(not IS_ROOT, reason="root gives Maildirs to the service account")
@pytest.mark.parametrize("object_name", ["nobody", r".\nobody"])
def test_root_gives_maildir_to_service_account(ok, reg, ims_root, object_name):
    nobody = pwd.getpwnam("nobody")
    assert reg("add", SERVICE, "/v", "ObjectName", "/d", object_name, "/f")[0] == 0
    ok("domain", "add", "example.com")
    assert ok("mailbox", "add", "bob", "--address", "bob@example.com") == ""
    store = ims_root / "store"
    for p in (store, store / "bob", store / "bob" / "cur", store / "bob" / "new",
              store / "bob" / "tmp"):
        st = p.stat()
        assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid), p


@pytest.mark.skipif(not IS_ROOT, reason="the warnings of a Maildir left to root")
def test_root_without_service_account_warns(adm, ok, reg, ims_root):
    ok("domain", "add", "example.com")
    rc, out, err = adm("mailbox", "add", "bob", "--address", "bob@example.com")
    assert (rc, out) == (0, "")
    assert err == ("imsadm: warning: no service account is set (imsctl install --account "
                   f"USER): the Maildir {ims_root / 'store' / 'bob'} belongs to root\n")
    assert reg("add", SERVICE, "/v", "ObjectName", "/d", "no-such-user-ims", "/f")[0] == 0
    rc, out, err = adm("mailbox", "add", "al", "--address", "al@example.com")
    assert (rc, out) == (0, "")
    assert 'the service account "no-such-user-ims" is not a user' in err
    assert (ims_root / "store" / "al").stat().st_uid == 0


@pytest.fixture
def shared_root():
    """A state root and a copy of the programs that another user can reach."""
    d = tempfile.mkdtemp(prefix="ims-adm-")
    os.chmod(d, 0o755)
    bindir = os.path.join(d, "bin")
    os.mkdir(bindir)
    for prog in ("imsadm", "reg"):
        shutil.copy2(os.path.join(BIN, prog), os.path.join(bindir, prog))
    os.chmod(bindir, 0o755)
    root = os.path.join(d, "root")
    os.mkdir(root)
    os.chmod(root, 0o755)
    yield root, bindir
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.skipif(not IS_ROOT, reason="needs another user")
def test_user_without_write_access(shared_root):
    """HKLM belongs to root (the owner of the state root): another user reads the directory
    but cannot change it."""
    root, bindir = shared_root
    env = dict(os.environ, IMS_ROOT=root)
    adm = lambda *a, user=None: _run([os.path.join(bindir, "imsadm"), *a], env,  # noqa: E731
                                     user=user)
    assert adm("domain", "add", "example.com")[0] == 0
    assert adm("domain", "list", user="nobody") == (0, "example.com\n", "")
    before = adm("domain", "list")
    failed(adm("domain", "add", "other.example", user="nobody"),
           "registry: Access is denied (error 5)", "only root or the owner of the state root")
    failed(adm("mailbox", "add", "bob", "--address", "bob@example.com", user="nobody"),
           "Access is denied")
    assert adm("domain", "list") == before
    assert not os.path.exists(os.path.join(root, "store", "bob"))


@pytest.mark.skipif(not IS_ROOT, reason="needs another user")
def test_service_account_runs_imsadm(shared_root):
    """The owner of the state root (here the service account) manages the directory itself;
    it is warned when the service key names another account."""
    root, bindir = shared_root
    nobody = pwd.getpwnam("nobody")
    os.chown(root, nobody.pw_uid, nobody.pw_gid)
    env = dict(os.environ, IMS_ROOT=root)
    adm = lambda *a: _run([os.path.join(bindir, "imsadm"), *a], env, user="nobody")  # noqa
    reg = lambda *a: _run([os.path.join(bindir, "reg"), *a], env, user="nobody")  # noqa
    assert adm("domain", "add", "example.com") == (0, "", "")
    assert reg("add", SERVICE, "/v", "ObjectName", "/d", "nobody", "/f")[0] == 0
    assert adm("mailbox", "add", "bob", "--address", "bob@example.com") == (0, "", "")
    assert os.stat(os.path.join(root, "store", "bob", "new")).st_uid == nobody.pw_uid
    assert reg("add", SERVICE, "/v", "ObjectName", "/d", "root", "/f")[0] == 0
    rc, out, err = adm("mailbox", "add", "al", "--address", "al@example.com")
    assert (rc, out) == (0, "")
    assert err.startswith("imsadm: warning: the Maildir ") and \
        "not to the service account root" in err


# --- passwords -----------------------------------------------------------------------------

with warnings.catch_warnings():  # deprecated in Python 3.11, still the simplest crypt(3)
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt  # noqa: E402

PASSWORDS = r"Software\IMS\Directory\Passwords"
PTY_TIMEOUT = 30  # seconds for one imsadm on a terminal
MAX_PASSWORD = 511


def run_input(argv, env, data, user=None):
    """argv with data (bytes) on standard input: (rc, stdout, stderr)."""
    if user:
        argv = ["runuser", "-u", user, "--", *argv]
    p = subprocess.run(argv, env=env, input=data, capture_output=True, timeout=RUN_TIMEOUT)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def run_on_pty(argv, env, answers):
    """Run argv on a new pseudo-terminal; each time the next prompt of answers (a list of
    (prompt, line)) shows, type its line. Returns (exit status, everything the terminal
    showed). Killed, and the test failed, after PTY_TIMEOUT seconds."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec or die, never return into pytest
        try:
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    deadline = time.monotonic() + PTY_TIMEOUT
    screen, seen, pending = b"", 0, list(answers)
    try:
        while time.monotonic() < deadline:
            if pending and pending[0][0].encode() in screen[seen:]:
                seen = screen.index(pending[0][0].encode(), seen) + len(pending[0][0])
                os.write(fd, pending.pop(0)[1].encode() + b"\n")
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                pid = 0
                try:  # what is still buffered
                    while select.select([fd], [], [], 0.1)[0]:
                        screen += os.read(fd, 65536)
                except OSError:
                    pass
                return os.waitstatus_to_exitcode(status), screen.decode("utf-8", "replace")
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    screen += os.read(fd, 65536)
                except OSError:  # EIO: the other end is closed, it is exiting
                    time.sleep(0.05)
        pytest.fail(f"imsadm on a terminal did not finish; it showed {screen!r}")
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)


def all_bytes(root):
    """The contents of every file under root, for searching."""
    return [(p, p.read_bytes()) for p in Path(root).rglob("*") if p.is_file()]


def assert_nowhere(root, secret):
    """secret appears in no file under root, in UTF-8 or UTF-16LE (the registry's strings)."""
    forms = (secret.encode(), secret.encode("utf-16-le"))
    for path, data in all_bytes(root):
        for f in forms:
            assert f not in data, f"the password is in clear text in {path}"


@pytest.fixture
def service(reg, ok):
    """The service account (ObjectName) is nobody, example.com is accepted, mailbox bob (and
    carol) exist; returns nobody's passwd entry."""
    if not IS_ROOT:
        pytest.skip("root sets passwords into the service account's hive")
    assert reg("add", SERVICE, "/v", "ObjectName", "/d", "nobody", "/f")[0] == 0
    ok("domain", "add", "example.com")
    ok("mailbox", "add", "bob", "--address", "bob@example.com", "b.smith@example.com")
    ok("mailbox", "add", "carol", "--address", "carol@example.com")
    return pwd.getpwnam("nobody")


def password_id(reg, alias):
    """The mailbox's PasswordId as reg query shows it (upper-case hex), None when not set."""
    rc, out, err = reg("query", rf"{DIRECTORY}\Mailboxes\{alias}", "/v", "PasswordId")
    if rc:
        return None
    m = re.search(r"PasswordId\s+REG_BINARY\s+([0-9A-F]+)", out)
    assert m, out
    return m.group(1)


def stored_hashes(reg, uid):
    """{value name: data} of the Passwords key in the hive of uid."""
    rc, out, err = reg("query", rf"HKU\S-1-22-1-{uid}\{PASSWORDS}")
    if rc:
        return {}
    return dict(re.findall(r"^\s+(\S+)\s+REG_SZ\s+(\S+)\s*$", out, re.M))


def the_hash(reg, uid, alias):
    """The hash of alias's password: the value its PasswordId names (the only one kept)."""
    pid = password_id(reg, alias)
    assert pid, f"{alias} has no PasswordId"
    hashes = stored_hashes(reg, uid)
    assert list(hashes) == [pid.lower()], (pid, hashes)
    return hashes[pid.lower()]


def set_password(env, workdir, alias, data, user=None):
    return run_input([IMSADM, "mailbox", "password", alias], env, data, user)


def test_password_from_stdin(service, env, workdir, reg, ok, ims_root):
    nobody = service
    secret = "Tr0ub4dor&3 long enough"
    assert set_password(env, workdir, "BOB", secret.encode() + b"\n") == (0, "", "")
    assert ok("mailbox", "show", "bob").endswith("Password:     set\n")
    assert ok("mailbox", "show", "carol").endswith("Password:     none\n")
    h = the_hash(reg, nobody.pw_uid, "bob")
    # A yescrypt hash of the password, as crypt(3) (here through Python) checks it.
    assert h.startswith("$y$")
    assert crypt.crypt(secret, h) == h
    assert crypt.crypt(secret + " ", h) != h
    # HKLM, which every user can read, has the id only; the hash is in nobody's hive, 0600
    # in a 0700 directory of nobody's.
    assert "$y$" not in query(reg)
    hive = ims_root / "registry" / "HKU" / f"S-1-22-1-{nobody.pw_uid}"
    st = hive.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (nobody.pw_uid, 0o700)
    for f in ("data.mdb", "lock.mdb"):
        st = (hive / f).stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (nobody.pw_uid, 0o600), f
    # The password itself is nowhere: not in the registry files, not in an export.
    export = workdir / "hklm.reg"
    assert reg("export", "HKLM", str(export), "/y")[0] == 0
    assert_nowhere(ims_root, secret)
    assert_nowhere(workdir, secret)
    assert h.encode("utf-16-le") not in export.read_bytes()
    # The same password again: a new salt, a new hash; the old one is gone.
    assert set_password(env, workdir, "bob", secret.encode() + b"\n") == (0, "", "")
    h2 = the_hash(reg, nobody.pw_uid, "bob")
    assert h2 != h and crypt.crypt(secret, h2) == h2
    # A last line without a newline, and one ending in CR LF, are the password without them.
    assert set_password(env, workdir, "bob", b"no newline") == (0, "", "")
    h3 = the_hash(reg, nobody.pw_uid, "bob")
    assert crypt.crypt("no newline", h3) == h3
    assert set_password(env, workdir, "bob", b"crlf\r\nnext line\n") == (0, "", "")
    h4 = the_hash(reg, nobody.pw_uid, "bob")
    assert crypt.crypt("crlf", h4) == h4
    # The longest password; UTF-8 is kept as its bytes.
    longest = "x" * MAX_PASSWORD
    assert set_password(env, workdir, "carol", longest.encode() + b"\r\n") == (0, "", "")
    hashes = stored_hashes(reg, nobody.pw_uid)
    hc = hashes[password_id(reg, "carol").lower()]
    assert crypt.crypt(longest, hc) == hc
    assert set_password(env, workdir, "carol", "pässwörd\n".encode()) == (0, "", "")
    hashes = stored_hashes(reg, nobody.pw_uid)
    hc = hashes[password_id(reg, "carol").lower()]
    assert crypt.crypt("pässwörd", hc) == hc


@pytest.mark.skipif(not IS_ROOT, reason="needs other users")
def test_password_other_users_cannot_read(shared_root):
    """Another local user reads the directory, but not the hashes."""
    root, bindir = shared_root
    env = dict(os.environ, IMS_ROOT=root)
    imsadm, regp = os.path.join(bindir, "imsadm"), os.path.join(bindir, "reg")
    nobody = pwd.getpwnam("nobody")
    assert _run([regp, "add", SERVICE, "/v", "ObjectName", "/d", "nobody", "/f"], env)[0] == 0
    assert _run([imsadm, "domain", "add", "example.com"], env)[0] == 0
    assert _run([imsadm, "mailbox", "add", "bob", "--address", "bob@example.com"], env)[0] == 0
    assert run_input([imsadm, "mailbox", "password", "bob"], env, b"hidden-pw\n") == (0, "", "")
    hive = rf"HKU\S-1-22-1-{nobody.pw_uid}\{PASSWORDS}"
    rc, out, err = _run([regp, "query", hive], env)  # root can
    assert rc == 0 and "$y$" in out, (rc, out, err)
    rc, out, err = _run([regp, "query", rf"{DIRECTORY}\Mailboxes\bob"], env, user="daemon")
    assert rc == 0 and "PasswordId" in out and "$y$" not in out, (rc, out, err)
    rc, out, err = _run([regp, "query", hive], env, user="daemon")
    assert (rc, out) == (1, "") and "Access is denied" in err, (rc, out, err)
    rc, out, err = _run([imsadm, "mailbox", "show", "bob"], env, user="daemon")
    assert rc == 0 and out.endswith("Password:     set\n"), (rc, out, err)


@pytest.mark.parametrize("data,fragment", [
    (b"", "no password given (end of input on standard input)"),
    (b"\n", "invalid password: 1 to 511 bytes, without NUL bytes"),
    (b"a\0b\n", "invalid password: 1 to 511 bytes, without NUL bytes"),
    (b"y" * (MAX_PASSWORD + 1) + b"\n", "the password is longer than 511 bytes"),
    (b"y" * (MAX_PASSWORD + 1) + b"\r\n", "the password is longer than 511 bytes"),
    (b"y" * 5000, "the password is longer than 511 bytes"),
], ids=["empty-input", "empty-line", "nul", "512", "512-crlf", "5000"])
def test_password_refused(service, env, workdir, reg, ims_root, data, fragment):
    before = query(reg)
    failed(set_password(env, workdir, "bob", data), fragment)
    assert query(reg) == before
    assert stored_hashes(reg, service.pw_uid) == {}


def test_password_unknown_mailbox(service, env, workdir, reg, ims_root):
    before = query(reg)
    failed(set_password(env, workdir, "dave", b"pw\n"), 'no mailbox "dave"')
    failed(set_password(env, workdir, "../x", b"pw\n"), 'invalid alias "../x"')
    failed(run_input([IMSADM, "mailbox", "password", "dave", "--clear"], env, b""),
           'no mailbox "dave"')
    assert query(reg) == before
    # Refused before anything is written: not even the service account's hive is made.
    assert not (ims_root / "registry" / "HKU" / f"S-1-22-1-{service.pw_uid}").exists()


def test_password_clear(service, env, workdir, reg, ok, adm):
    assert set_password(env, workdir, "bob", b"to be cleared\n")[0] == 0
    assert set_password(env, workdir, "carol", b"stays\n")[0] == 0
    assert ok("mailbox", "password", "Bob", "--clear") == ""
    assert ok("mailbox", "show", "bob").endswith("Password:     none\n")
    assert password_id(reg, "bob") is None
    carol = password_id(reg, "carol").lower()
    assert list(stored_hashes(reg, service.pw_uid)) == [carol]
    # Clearing again is no error; nothing changes.
    assert ok("mailbox", "password", "bob", "--clear") == ""
    # Removing a mailbox removes its hash; a new mailbox of that alias has no password.
    ok("mailbox", "remove", "carol")
    assert stored_hashes(reg, service.pw_uid) == {}
    ok("mailbox", "add", "carol", "--address", "carol@example.com")
    assert ok("mailbox", "show", "carol").endswith("Password:     none\n")


def test_password_on_terminal(service, env, reg, ims_root):
    secret = "typed-on-a-tty"
    rc, screen = run_on_pty([IMSADM, "mailbox", "password", "bob"], env,
                            [("New password: ", secret), ("Retype new password: ", secret)])
    assert rc == 0, screen
    assert "New password: " in screen and "Retype new password: " in screen
    assert secret not in screen  # echo was off
    h = the_hash(reg, service.pw_uid, "bob")
    assert crypt.crypt(secret, h) == h
    assert_nowhere(ims_root, secret)


def test_password_on_terminal_mismatch(service, env, reg):
    before = query(reg)
    rc, screen = run_on_pty([IMSADM, "mailbox", "password", "bob"], env,
                            [("New password: ", "first-try"), ("Retype new password: ", "other")])
    assert rc == EXIT_FAIL, screen
    assert "imsadm: the passwords do not match: nothing changed" in screen
    assert "first-try" not in screen and "other" not in screen
    assert query(reg) == before
    assert stored_hashes(reg, service.pw_uid) == {}


def test_password_terminal_end_of_input(service, env, reg):
    """Ctrl-D at the prompt: nothing set, and the terminal's echo is back on afterwards."""
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execve(IMSADM, [IMSADM, "mailbox", "password", "bob"], env)
        finally:
            os._exit(127)
    try:
        screen = b""
        deadline = time.monotonic() + PTY_TIMEOUT
        while b"New password: " not in screen and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                screen += os.read(fd, 4096)
        assert b"New password: " in screen, screen
        # Echo is off by the time the prompt shows (imsadm turns it off first).
        assert not termios.tcgetattr(fd)[3] & termios.ECHO
        os.write(fd, b"\x04")
        status = None
        while status is None and time.monotonic() < deadline:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status, pid = os.waitstatus_to_exitcode(st), 0
            elif select.select([fd], [], [], 0.1)[0]:
                try:
                    screen += os.read(fd, 4096)
                except OSError:
                    time.sleep(0.05)
        assert status == EXIT_FAIL, screen
        assert b"no password given (end of input on the terminal)" in screen
        # The master side reports the terminal's settings: echo is on again.
        assert termios.tcgetattr(fd)[3] & termios.ECHO
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    assert password_id(reg, "bob") is None


@pytest.mark.skipif(not IS_ROOT, reason="root and the service account")
def test_password_needs_the_service_account(ok, adm, reg, env, workdir):
    ok("domain", "add", "example.com")
    ok("mailbox", "add", "bob", "--address", "bob@example.com", warn=True)
    failed(set_password(env, workdir, "bob", b"pw\n"), "no service account is set")
    assert reg("add", SERVICE, "/v", "ObjectName", "/d", "no-such-user-ims", "/f")[0] == 0
    failed(set_password(env, workdir, "bob", b"pw\n"),
           'the service account "no-such-user-ims" is not a user')
    assert password_id(reg, "bob") is None


@pytest.mark.skipif(not IS_ROOT, reason="needs another user")
def test_service_account_sets_passwords(shared_root):
    """The service account, owner of the state root, sets passwords into its own hive; a
    user who is not the service account is told to run imsadm as it."""
    root, bindir = shared_root
    nobody = pwd.getpwnam("nobody")
    os.chown(root, nobody.pw_uid, nobody.pw_gid)
    env = dict(os.environ, IMS_ROOT=root)
    imsadm, regp = os.path.join(bindir, "imsadm"), os.path.join(bindir, "reg")
    adm = lambda *a: _run([imsadm, *a], env, user="nobody")  # noqa: E731
    assert adm("domain", "add", "example.com") == (0, "", "")
    assert adm("mailbox", "add", "bob", "--address", "bob@example.com") == (0, "", "")
    assert run_input([imsadm, "mailbox", "password", "bob"], env, b"mine\n", "nobody") == \
        (0, "", "")
    rc, out, _ = _run([regp, "query", rf"HKCU\{PASSWORDS}"], env, user="nobody")
    assert rc == 0
    (h,) = re.findall(r"REG_SZ\s+(\S+)", out)
    assert crypt.crypt("mine", h) == h
    # As the service account names another user now, nobody is sent to it.
    assert _run([regp, "add", SERVICE, "/v", "ObjectName", "/d", "daemon", "/f"], env,
                user="nobody")[0] == 0
    failed(run_input([imsadm, "mailbox", "password", "bob"], env, b"x\n", "nobody"),
           "kept in the registry hive of the service account daemon",
           "run imsadm as root or as daemon")
