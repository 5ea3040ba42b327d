"""End-to-end tests of the imsadm command: domains and mailboxes (success and error paths, exit
codes and messages), the registry layout under HKLM\\Software\\IMS\\Directory as reg query shows
it, refused changes leaving the registry and the store as they were, the Maildirs (made, kept,
given to the service account when root runs imsadm), and a user without write access."""

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
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
        f"Maildir:      {maildir}\n")
    assert ok("mailbox", "show", "AL") == (
        "Alias:        al\n"
        "Display name: al\n"
        "Primary:      al@example.com\n"
        "Secondary:    al2@example.org\n"
        f"Maildir:      {ims_root / 'store' / 'al'}\n")
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
        f"Maildir:      {maildir}\n")

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
