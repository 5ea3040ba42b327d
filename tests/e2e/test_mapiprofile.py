"""End-to-end tests of the mapiprofile command: every command's success and error paths (exit
codes and messages), the Windows registry layout of a profile (checked with our reg and with
Wine's reg.exe), export and import, deferred deletion of a profile in use, and Ctrl-C during
create."""

import os
import pwd
import re
import selectors
import signal
import subprocess
import time
from pathlib import Path

import pytest

import wine_oracle
from wine_oracle import canonical_query, canonical_reg, decode_reg

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("IMS_BIN") or REPO / "build" / "bin")
MAPIPROFILE = str(BIN / "mapiprofile")
REG = str(BIN / "reg")
MAPISVC = REPO / "data" / "mapisvc.inf"

WMS = r"Software\Microsoft\Windows NT\CurrentVersion\Windows Messaging Subsystem"
PROFILES = "HKCU\\" + WMS + r"\Profiles"
PROFILES_LONG = "HKEY_CURRENT_USER\\" + WMS + r"\Profiles"
DELETED = "HKCU\\" + WMS + r"\Deleted Profiles"

GLOBAL = "13dbb0c8aa05101a9bb000aa002fc45a"
INSTANCE = "8503020000000000c000000000000046"
SERVICES = "9207f3e0a3b11019908b08002b2a56c2"

GATEWAY_ARGS = ["create", "Gateway", "--service", "MSEMS", "--home-server", "mail1",
                "--mailbox", "IMS"]

RUN_TIMEOUT = 60  # seconds for one command
WAIT_TIMEOUT = 20  # seconds to wait for a holder's line or a deferred deletion
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_SIGINT = 0, 1, 2, 130


def hexz(s):
    """How reg query shows a PT_STRING8 value: the bytes with their NUL, in upper-case hex."""
    return (s.encode("cp1252") + b"\0").hex().upper()


@pytest.fixture
def mp_env(env):
    """The programs' environment: the test's IMS_ROOT and the repository's catalogue."""
    e = dict(env)
    e["IMS_MAPISVC"] = str(MAPISVC)
    return e


def _run(argv, env, cwd, preexec_fn=None):
    p = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=RUN_TIMEOUT, preexec_fn=preexec_fn)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


@pytest.fixture
def mp(mp_env, workdir):
    """mp(*args) -> (rc, stdout, stderr) of mapiprofile."""

    def run(*args, env=None):
        return _run([MAPIPROFILE, *map(str, args)], env or mp_env, workdir)

    return run


@pytest.fixture
def ok(mp):
    """ok(*args) -> stdout of mapiprofile, which must succeed with nothing on stderr."""

    def run(*args):
        rc, out, err = mp(*args)
        assert (rc, err) == (0, ""), f"mapiprofile {args}: rc={rc}\nstdout: {out}\nstderr: {err}"
        return out

    return run


@pytest.fixture
def reg(mp_env, workdir):
    """reg(*args) -> (rc, stdout, stderr) of our reg."""

    def run(*args):
        return _run([REG, *map(str, args)], mp_env, workdir)

    return run


def fails(result, rc, message):
    """The command failed with exit status rc and printed exactly message on stderr."""
    got_rc, out, err = result
    assert (got_rc, out, err) == (rc, "", message + "\n")


def usage_error(result, first_line):
    """A usage error: status 2, nothing on stdout, the message then a pointer to --help."""
    rc, out, err = result
    assert (rc, out) == (EXIT_USAGE, "")
    lines = err.splitlines()
    assert lines[0] == first_line
    assert lines[-1].startswith('Try "mapiprofile ') and lines[-1].endswith(' --help".')


def profiles(ok):
    return ok("list").splitlines()


def query_tree(reg, key):
    """reg query KEY /s as {subkey path: {value name: (type, data)}}."""
    rc, out, err = reg("query", key, "/s")
    assert rc == 0, err
    tree, cur = {}, None
    for line in out.splitlines():
        if line.startswith("HKEY_"):
            cur = tree.setdefault(line, {})
        elif line.startswith("    ") and cur is not None:
            parts = line.strip().split("    ")
            cur[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
    return tree


def section_values(dump_text):
    """A dump as {section header line: [property lines]}."""
    out, cur = {}, None
    for line in dump_text.splitlines():
        if line.startswith("["):
            cur = out.setdefault(line, [])
        elif line.startswith("  ") and cur is not None:
            cur.append(line)
    return out


def search_key(dump_text):
    m = re.search(r"^  PR_SEARCH_KEY +PT_BINARY +([0-9a-f]{32})$", dump_text, re.M)
    assert m, dump_text
    return m.group(1)


class Holder:
    """mapiprofile logon NAME --hold SECONDS running in the background."""

    def __init__(self, env, cwd, name, seconds=60):
        self.p = subprocess.Popen([MAPIPROFILE, "logon", name, "--hold", str(seconds)], env=env,
                                  cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)

    def wait_line(self, timeout=WAIT_TIMEOUT):
        """The first line of output, read within timeout seconds."""
        sel = selectors.DefaultSelector()
        sel.register(self.p.stdout, selectors.EVENT_READ)
        deadline, data = time.monotonic() + timeout, b""
        while b"\n" not in data:
            left = deadline - time.monotonic()
            assert left > 0 and sel.select(left), f"no line from the holder: {data!r}"
            chunk = os.read(self.p.stdout.fileno(), 4096)
            assert chunk, f"the holder ended: {data!r} {self.p.stderr.read()!r}"
            data += chunk
        sel.close()
        return data.decode()

    def stop(self, sig):
        self.p.send_signal(sig)
        rc = self.p.wait(timeout=WAIT_TIMEOUT)
        rest = self.p.stdout.read().decode()
        self.p.stdout.close()
        self.p.stderr.close()
        return rc, rest

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(timeout=WAIT_TIMEOUT)
        for f in (self.p.stdout, self.p.stderr):
            if not f.closed:
                f.close()


@pytest.fixture
def holders(mp_env, workdir):
    started = []

    def start(name, seconds=60):
        h = Holder(mp_env, workdir, name, seconds)
        started.append(h)
        return h

    yield start
    for h in started:
        h.kill()


def deleted_profiles(reg):
    """The subkeys of Deleted Profiles (profiles in use that were deleted)."""
    rc, out, _ = reg("query", DELETED)
    if rc:
        return []
    return [ln.rsplit("\\", 1)[1] for ln in out.splitlines()
            if ln.startswith("HKEY_") and not ln.endswith("Deleted Profiles")]


def poll(what, timeout=WAIT_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(0.05)
    return what()


# --- help and usage errors ---------------------------------------------------------------

COMMANDS = ["list", "create", "delete", "copy", "rename", "set-default", "get-default", "dump",
            "export", "import", "logon"]


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_general_help(mp, flag, ims_root):
    rc, out, err = mp(flag)
    assert (rc, err) == (0, "")
    assert out.startswith("Usage: mapiprofile [--user USER] COMMAND")
    for c in COMMANDS:
        assert f"\n  {c} " in out, c
    assert not list(ims_root.iterdir()), "--help touched the state root"


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help(mp, command):
    rc, out, err = mp(command, "--help")
    assert (rc, err) == (0, "")
    assert out.startswith(f"Usage: mapiprofile [--user USER] {command}")


@pytest.mark.parametrize(
    "args, first_line",
    [
        ([], "mapiprofile: no command given"),
        (["frobnicate"], 'mapiprofile: unknown command "frobnicate"'),
        (["--verbose", "list"], 'mapiprofile: unknown option "--verbose"'),
        (["--user"], "mapiprofile: --user needs a value"),
        (["list", "extra"], 'mapiprofile: list: unexpected argument "extra"'),
        (["list", "--nope"], 'mapiprofile: list: unknown option "--nope"'),
        (["list", "-v"], 'mapiprofile: list: unknown option "-v"'),
        (["list", "--verbose", "--verbose"], "mapiprofile: list: --verbose given twice"),
        (["list", "--verbose=yes"], "mapiprofile: list: --verbose takes no value"),
        (["create"], "mapiprofile: create: missing argument"),
        (["create", "A", "B"], 'mapiprofile: create: unexpected argument "B"'),
        (["create", "A", "--service"], "mapiprofile: create: --service needs a value"),
        (["create", "A", "--display", "D"],
         "mapiprofile: create: --display must follow the --service it names"),
        (["create", "A", "--service", "MSEMS", "--display", "D", "--display", "E"],
         'mapiprofile: create: --display given twice for service "MSEMS"'),
        (["create", "A", "--set", "PR_PROFILE_USER=x"],
         "mapiprofile: create: --set must follow the --service it configures"),
        (["create", "A", "--service", "MSEMS", "--set", "PR_PROFILE_USER"],
         'mapiprofile: create: --set takes TAG=VALUE, not "PR_PROFILE_USER"'),
        (["create", "A", "--service", "MSEMS", "--set", "PR_NO_SUCH_TAG=1"],
         'mapiprofile: create: --set: unknown property tag "PR_NO_SUCH_TAG"'),
        (["create", "A", "--service", "MSEMS", "--set", "PR_PROFILE_VERSION=many"],
         'mapiprofile: create: --set PR_PROFILE_VERSION: "many" is not a value of type PT_LONG'),
        (["create", "A", "--home-server", "mail1"],
         "mapiprofile: create: --home-server and --mailbox configure the MSEMS service: "
         "add --service MSEMS"),
        (["create", "A", "--service", "MSEMS", "--mailbox="],
         "mapiprofile: create: --mailbox needs a value"),
        (["create", "A", "--default", "--default"], "mapiprofile: create: --default given twice"),
        (["delete"], "mapiprofile: delete: missing argument"),
        (["copy", "A"], "mapiprofile: copy: missing arguments"),
        (["rename", "A", "B", "C"], 'mapiprofile: rename: unexpected argument "C"'),
        (["set-default"], "mapiprofile: set-default: give either a profile name or --clear"),
        (["set-default", "A", "--clear"],
         "mapiprofile: set-default: give either a profile name or --clear"),
        (["get-default", "A"], 'mapiprofile: get-default: unexpected argument "A"'),
        (["export", "A"], "mapiprofile: export: missing arguments"),
        (["import", "f.reg", "--as"], "mapiprofile: import: --as needs a value"),
        (["logon", "A", "--hold", "3601"],
         'mapiprofile: logon: --hold takes 0 to 3600 seconds, not "3601"'),
        (["logon", "A", "--hold", "-1"],
         'mapiprofile: logon: --hold takes 0 to 3600 seconds, not "-1"'),
        (["logon", "A", "--hold", "10s"],
         'mapiprofile: logon: --hold takes 0 to 3600 seconds, not "10s"'),
    ],
)
def test_usage_errors(mp, ok, args, first_line):
    usage_error(mp(*args), first_line)
    assert profiles(ok) == []


def test_double_dash_ends_options(ok):
    ok("create", "--", "-dash")
    assert profiles(ok) == ["-dash"]
    ok("delete", "--", "-dash")


# --- create and the registry layout --------------------------------------------------------


def test_list_without_profiles_prints_nothing(mp):
    assert mp("list") == (0, "", "")
    assert mp("list", "--verbose") == (0, "", "")


def test_create_gateway_has_the_windows_layout(ok, reg):
    assert ok(*GATEWAY_ARGS) == 'Profile "Gateway" created.\n'
    base = PROFILES_LONG + r"\Gateway"
    tree = query_tree(reg, PROFILES + r"\Gateway")
    sections = {k[len(base) + 1:]: v for k, v in tree.items() if k.startswith(base + "\\")}
    # The three fixed sections, and each other section named by a 32-digit MAPIUID.
    for uid in (GLOBAL, INSTANCE, SERVICES):
        assert uid in sections, sorted(sections)
    assert all(re.fullmatch(r"[0-9a-f]{32}", s) for s in sections), sorted(sections)
    # Every property a REG_BINARY value named by its tag, type first ("001e3001").
    for name, values in sections.items():
        assert values, name
        for vname, (vtype, _) in values.items():
            assert re.fullmatch(r"[0-9a-f]{8}", vname), (name, vname)
            assert vtype == "REG_BINARY", (name, vname)
    glob = sections[GLOBAL]
    assert glob["001e6602"] == ("REG_BINARY", hexz("mail1")) == ("REG_BINARY", "6D61696C3100")
    assert glob["001e6603"] == ("REG_BINARY", hexz("IMS"))
    assert glob["001e3d12"] == ("REG_BINARY", hexz("Gateway"))
    assert len(bytes.fromhex(sections[INSTANCE]["0102300b"][1])) == 16
    # The services section lists the one service, whose section names it.
    svc_uid = sections[SERVICES]["01023d0e"][1].lower()
    assert svc_uid in sections
    assert sections[svc_uid]["001e3d09"] == ("REG_BINARY", hexz("MSEMS"))
    assert sections[svc_uid]["01023d0c"][1].lower() == svc_uid
    # Its providers point back at it and are listed in the global section.
    providers = [s for s, v in sections.items()
                 if s != svc_uid and v.get("01023d0c", ("", ""))[1].lower() == svc_uid]
    assert len(providers) == 5
    listed = "".join(glob[t][1] for t in ("01023d00", "01023d01", "01023d02")).lower()
    assert sorted(providers) == sorted(listed[i:i + 32] for i in range(0, len(listed), 32))


def test_create_options(ok, mp):
    out = ok("create", "Full", "--default", "--service", "MSEMS", "--display", "Exchange (IMS)",
             "--set", "PR_PROFILE_HOME_SERVER_DN=/o=Org/ou=Site/cn=Configuration/cn=Servers/"
             "cn=MAIL1", "--set", "6614001e=/o=Org/ou=Site", "--home-server", "mail1",
             "--mailbox", "/o=Org/ou=Site/cn=Recipients/cn=IMS")
    assert out == 'Profile "Full" created.\n'
    assert profiles(ok) == ["Full [default]"]
    assert ok("list", "--verbose") == "Full [default]\n    MSEMS  Exchange (IMS)\n"
    dump = ok("dump", "Full")
    glob = section_values(dump)[f"[{GLOBAL}] global profile section"]
    assert re.search(r'^  PR_PROFILE_USER +PT_STRING8 +"/o=Org/ou=Site/cn=Recipients/cn=IMS"$',
                     "\n".join(glob), re.M)
    assert any(re.fullmatch(r'  PR_PROFILE_HOME_SERVER_DN +PT_STRING8 +"/o=Org/ou=Site/'
                            r'cn=Configuration/cn=Servers/cn=MAIL1"', ln) for ln in glob), glob
    assert any(re.fullmatch(r'  PR_PROFILE_SERVER_DN +PT_STRING8 +"/o=Org/ou=Site"', ln)
               for ln in glob), glob
    # An alias is kept as it is given.
    ok("create", "Alias", "--service", "MSEMS", "--home-server", "mail1", "--mailbox", "IMS")
    assert re.search(r'^  PR_PROFILE_USER +PT_STRING8 +"IMS"$', ok("dump", "Alias"), re.M)


def test_create_default_services(ok):
    ok("create", "Defaults", "--default-services", "--home-server", "mail2")
    assert ok("list", "--verbose") == "Defaults\n    MSEMS  Microsoft Exchange Server\n"
    assert re.search(r'^  PR_PROFILE_HOME_SERVER +PT_STRING8 +"mail2"$', ok("dump", "Defaults"),
                     re.M)


def test_create_empty_profile(ok):
    ok("create", "Empty")
    assert ok("list", "--verbose") == "Empty\n"
    heads = [ln for ln in ok("dump", "Empty").splitlines() if ln.startswith("[")]
    assert heads == [f"[{GLOBAL}] global profile section", f"[{INSTANCE}] profile instance",
                     f"[{SERVICES}] message services"]


def test_create_existing_profile(ok, mp):
    ok("create", "Gateway")
    fails(mp("create", "Gateway"),
          1, 'mapiprofile: create "Gateway": a profile of that name exists (MAPI_E_NO_ACCESS)')
    fails(mp("create", "GATEWAY", "--service", "MSEMS"),
          1, 'mapiprofile: create "GATEWAY": a profile of that name exists (MAPI_E_NO_ACCESS)')
    # The existing profile is left alone, services and all.
    assert ok("list", "--verbose") == "Gateway\n"


@pytest.mark.parametrize("name", ["back\\slash", " lead", "trail ", "x" * 65, "tab\tname"])
def test_create_invalid_name(mp, ok, name):
    fails(mp("create", name), 1,
          f'mapiprofile: create "{name}": not a valid profile name (1 to 64 characters, no '
          "backslash or control character, no leading or trailing space) "
          "(MAPI_E_INVALID_PARAMETER)")
    assert profiles(ok) == []


def test_create_longest_name_and_unicode(ok):
    for name in ("x" * 64, "Café Ünïcode", "日本語のプロファイル"):
        ok("create", name, "--service", "MSEMS")
    assert sorted(profiles(ok)) == sorted(["x" * 64, "Café Ünïcode", "日本語のプロファイル"])


def test_create_unknown_service_makes_nothing(mp, ok):
    fails(mp("create", "X", "--service", "MSEMS", "--service", "NOPE"), 1,
          'mapiprofile: create "X": service "NOPE": no such message service in the catalogue '
          "(MAPI_E_NOT_FOUND)")
    assert profiles(ok) == []


def test_create_failing_step_removes_the_profile(mp, ok):
    # MSEMS may appear once: the second CreateMsgService fails after the first succeeded.
    fails(mp("create", "Twice", "--service", "MSEMS", "--service", "MSEMS"), 1,
          'mapiprofile: create "Twice": service "MSEMS": the profile has that service already, '
          "and one is all it may have (MAPI_E_NO_ACCESS)")
    assert profiles(ok) == []
    # A configuration the service refuses (Exchange needs a home server name).
    rc, out, err = mp("create", "Refused", "--service", "MSEMS", "--set",
                      "PR_PROFILE_HOME_SERVER=")
    assert (rc, out) == (1, "")
    assert err.startswith('mapiprofile: create "Refused": service "MSEMS": ')
    assert profiles(ok) == []


def test_create_without_catalogue(mp, mp_env, ok, tmp_path):
    env = dict(mp_env, IMS_MAPISVC=str(tmp_path / "missing.inf"))
    fails(mp("create", "X", "--service", "MSEMS", env=env), 1,
          f'mapiprofile: create "X": no catalogue of message services: {tmp_path}/missing.inf '
          "does not exist (IMS_MAPISVC names another)")
    # Profiles without services need no catalogue.
    assert mp("create", "Bare", env=env) == (0, 'Profile "Bare" created.\n', "")
    assert profiles(ok) == ["Bare"]


# --- list, delete, copy, rename, defaults ---------------------------------------------------


def test_list_marks_the_default(ok):
    for name in ("beta", "Alpha", "gamma"):
        ok("create", name)
    assert profiles(ok) == ["Alpha", "beta", "gamma"]
    assert ok("set-default", "beta") == 'Profile "beta" is now the default profile.\n'
    assert profiles(ok) == ["Alpha", "beta [default]", "gamma"]
    assert ok("get-default") == "beta\n"
    # The stored name is used whatever case the command gives.
    assert ok("set-default", "GAMMA") == 'Profile "gamma" is now the default profile.\n'
    assert profiles(ok) == ["Alpha", "beta", "gamma [default]"]
    assert ok("set-default", "--clear") == "There is no default profile now.\n"
    assert profiles(ok) == ["Alpha", "beta", "gamma"]


def test_default_errors(mp, ok):
    fails(mp("get-default"), 1,
          "mapiprofile: get-default: there is no default profile (MAPI_E_NOT_FOUND)")
    fails(mp("set-default", "Nope"), 1,
          'mapiprofile: set-default "Nope": no such profile (MAPI_E_NOT_FOUND)')
    assert ok("set-default", "--clear") == "There is no default profile now.\n"
    ok("create", "A", "--default")
    assert ok("get-default") == "A\n"
    ok("delete", "A")
    fails(mp("get-default"), 1,
          "mapiprofile: get-default: there is no default profile (MAPI_E_NOT_FOUND)")


def test_delete(mp, ok):
    ok(*GATEWAY_ARGS)
    fails(mp("delete", "Nope"), 1, 'mapiprofile: delete "Nope": no such profile (MAPI_E_NOT_FOUND)')
    assert ok("delete", "gateway") == 'Profile "Gateway" deleted.\n'
    assert profiles(ok) == []
    fails(mp("delete", "Gateway"), 1,
          'mapiprofile: delete "Gateway": no such profile (MAPI_E_NOT_FOUND)')
    fails(mp("dump", "Gateway"), 1,
          'mapiprofile: dump "Gateway": no such profile, or it is being deleted '
          "(MAPI_E_LOGON_FAILED)")


def test_copy(mp, ok):
    ok(*GATEWAY_ARGS, "--default")
    assert ok("copy", "gateway", "Copy") == 'Profile "Gateway" copied to "Copy".\n'
    assert profiles(ok) == ["Copy", "Gateway [default]"]
    a, b = ok("dump", "Gateway"), ok("dump", "Copy")
    assert search_key(a) != search_key(b)
    norm = lambda d: re.sub(r"(PR_SEARCH_KEY +PT_BINARY +)\w+", r"\1", d)  # noqa: E731
    assert norm(b) == norm(a).replace('"Gateway"', '"Copy"')
    fails(mp("copy", "Gateway", "Copy"), 1,
          'mapiprofile: copy "Gateway" to "Copy": a profile of that name exists, or a pending '
          "rename will take the name (MAPI_E_NO_ACCESS)")
    fails(mp("copy", "Nope", "X"), 1,
          'mapiprofile: copy "Nope" to "X": no such profile (MAPI_E_NOT_FOUND)')
    fails(mp("copy", "Gateway", "bad\\name"), 1,
          'mapiprofile: copy "Gateway" to "bad\\name": not a valid profile name (1 to 64 '
          "characters, no backslash or control character, no leading or trailing space) "
          "(MAPI_E_INVALID_PARAMETER)")


def test_rename(mp, ok):
    ok(*GATEWAY_ARGS, "--default")
    ok("create", "Other")
    before = ok("dump", "Gateway")
    assert ok("rename", "Gateway", "IMS") == 'Profile "Gateway" renamed to "IMS".\n'
    # The default moves with the rename; the profile is the same one.
    assert profiles(ok) == ["IMS [default]", "Other"]
    assert ok("dump", "IMS").replace('Profile "IMS"', 'Profile "Gateway"') == before
    fails(mp("rename", "IMS", "Other"), 1,
          'mapiprofile: rename "IMS" to "Other": a profile of that name exists, or a pending '
          "rename will take the name (MAPI_E_NO_ACCESS)")
    fails(mp("rename", "Gateway", "X"), 1,
          'mapiprofile: rename "Gateway" to "X": no such profile (MAPI_E_NOT_FOUND)')
    assert ok("rename", "IMS", "ims") == 'Profile "IMS" renamed to "ims".\n'
    assert profiles(ok) == ["ims [default]", "Other"]


# --- dump -------------------------------------------------------------------------------


def test_dump_decodes_every_section(ok):
    ok(*GATEWAY_ARGS)
    dump = ok("dump", "Gateway")
    lines = dump.splitlines()
    assert lines[0] == 'Profile "Gateway"'
    heads = [ln for ln in lines if ln.startswith("[")]
    assert heads[:4] == [f"[{GLOBAL}] global profile section", f"[{INSTANCE}] profile instance",
                         f"[{SERVICES}] message services",
                         heads[3].split("]")[0] + '] service MSEMS "Microsoft Exchange Server"']
    # The providers follow their service in PR_PROVIDER_ORDINAL order (mapisvc.inf's).
    assert [h.split("] ", 1)[1] for h in heads[4:]] == [
        'provider "Microsoft Exchange Directory Service" of service MSEMS',
        'provider "Microsoft Exchange Message Store" of service MSEMS',
        'provider "Microsoft Exchange Message Store" of service MSEMS',
        'provider "Microsoft Exchange Remote Transport" of service MSEMS',
        'provider "Microsoft Exchange Transport" of service MSEMS',
    ]
    props = [ln for ln in lines if ln.startswith("  ")]
    # Three aligned columns: tag name, type name, value.
    m = [re.match(r"  (\S+)( +)(PT_\w+)( +)(.*)$", ln) for ln in props]
    assert all(m), [ln for ln, x in zip(props, m) if not x]
    assert len({x.start(3) for x in m}) == 1 and len({x.start(5) for x in m}) == 1
    assert re.search(r'^  PR_PROFILE_HOME_SERVER +PT_STRING8 +"mail1"$', dump, re.M)
    assert re.search(r'^  PR_SERVICE_NAME +PT_STRING8 +"MSEMS"$', dump, re.M)
    assert re.search(r"^  PR_RESOURCE_TYPE +PT_LONG +33 \(MAPI_STORE_PROVIDER\)$", dump, re.M)
    assert re.search(r"^  PR_PROFILE_VERSION +PT_LONG +1281 ", dump, re.M)
    search_key(dump)


def test_dump_unknown_tags_in_hex(ok, reg):
    ok("create", "Raw")
    key = PROFILES + r"\Raw" + "\\" + GLOBAL
    assert reg("add", key, "/v", "00037777", "/t", "REG_BINARY", "/d", "2a000000", "/f")[0] == 0
    assert re.search(r"^  0x77770003 +PT_LONG +42 ", ok("dump", "Raw"), re.M)


# --- export and import ----------------------------------------------------------------------


def test_export_import_round_trip(ok, mp, reg, workdir):
    ok(*GATEWAY_ARGS)
    before = ok("dump", "Gateway")
    assert ok("export", "Gateway", "g.reg") == 'Profile "Gateway" exported to g.reg.\n'
    data = (workdir / "g.reg").read_bytes()
    assert (workdir / "g.reg").stat().st_mode & 0o777 == 0o600
    # What reg export writes for the profile's key, byte for byte.
    assert reg("export", PROFILES + r"\Gateway", "r.reg", "/y")[0] == 0
    assert data == (workdir / "r.reg").read_bytes()
    text = decode_reg(data)
    assert text.startswith("Windows Registry Editor Version 5.00\r\n\r\n[" + PROFILES_LONG
                           + "\\Gateway]\r\n")
    fails(mp("export", "Gateway", "g.reg"), 1,
          'mapiprofile: export "Gateway": g.reg exists (--force replaces it)')
    assert ok("export", "gateway", "g.reg", "--force") == 'Profile "Gateway" exported to g.reg.\n'
    assert (workdir / "g.reg").read_bytes() == data

    fails(mp("import", "g.reg"), 1,
          'mapiprofile: import "Gateway": a profile of that name exists (MAPI_E_NO_ACCESS)')
    ok("delete", "Gateway")
    assert ok("import", "g.reg") == 'Profile "Gateway" imported.\n'
    assert ok("dump", "Gateway") == before
    ok("logon", "Gateway")


def test_import_as_gets_its_own_identity(ok, mp, workdir, holders):
    ok(*GATEWAY_ARGS)
    ok("export", "Gateway", "g.reg")
    before = ok("dump", "Gateway")
    assert ok("import", "g.reg", "--as", "Copy") == 'Profile "Gateway" imported as "Copy".\n'
    after = ok("dump", "Copy")
    assert search_key(after) != search_key(before)
    assert after.replace(search_key(after), search_key(before)) == before.replace(
        '"Gateway"', '"Copy"')
    assert profiles(ok) == ["Copy", "Gateway"]
    # A session on the copy does not make the original in use: two profiles, not one.
    h = holders("Copy")
    assert h.wait_line() == 'Logged on to "Copy".\n'
    assert profiles(ok) == ["Copy [in use]", "Gateway"]
    h.kill()
    fails(mp("import", "g.reg", "--as", "Copy"), 1,
          'mapiprofile: import "Copy": a profile of that name exists (MAPI_E_NO_ACCESS)')
    fails(mp("import", "g.reg", "--as", "bad\\name"), 1,
          'mapiprofile: import "bad\\name": not a valid profile name (1 to 64 characters, no '
          "backslash or control character, no leading or trailing space) "
          "(MAPI_E_INVALID_PARAMETER)")


def test_import_of_a_profile_that_was_renamed_gets_a_new_identity(ok, workdir):
    ok(*GATEWAY_ARGS)
    ok("export", "Gateway", "g.reg")
    key = search_key(ok("dump", "Gateway"))
    ok("rename", "Gateway", "Renamed")
    ok("import", "g.reg")
    assert search_key(ok("dump", "Renamed")) == key
    assert search_key(ok("dump", "Gateway")) != key


def to_regedit4(data):
    """A version 5 UTF-16 export as the REGEDIT4 CP1252 file regedit can write (every value
    of a profile is hex: only the header and the encoding change)."""
    text = decode_reg(data).replace("Windows Registry Editor Version 5.00", "REGEDIT4", 1)
    return text.encode("cp1252")


def test_import_regedit4_file(ok, mp, workdir):
    ok(*GATEWAY_ARGS)
    ok("export", "Gateway", "g.reg")
    before = ok("dump", "Gateway")
    (workdir / "v4.reg").write_bytes(to_regedit4((workdir / "g.reg").read_bytes()))
    ok("delete", "Gateway")
    assert ok("import", "v4.reg") == 'Profile "Gateway" imported.\n'
    assert ok("dump", "Gateway") == before
    # A new name must be one code page 1252 can write.
    assert ok("import", "v4.reg", "--as", "Café") == 'Profile "Gateway" imported as "Café".\n'
    assert "Café" in profiles(ok)
    fails(mp("import", "v4.reg", "--as", "日本"), 1,
          'mapiprofile: import v4.reg: --as "日本": a REGEDIT4 file is in code page 1252, which '
          "cannot write that name")
    assert ok("import", "g.reg", "--as", "日本") == 'Profile "Gateway" imported as "日本".\n'


def write_reg(path, body):
    path.write_bytes(b"\xff\xfe" + ("Windows Registry Editor Version 5.00\r\n\r\n" + body)
                     .encode("utf-16-le"))


@pytest.mark.parametrize(
    "body, line, why",
    [
        ("[HKEY_LOCAL_MACHINE\\Software\\X]\r\n", 3,
         "the key is not under HKEY_CURRENT_USER\\" + WMS + "\\Profiles"),
        ("[" + PROFILES_LONG + "\\A]\r\n\r\n[HKEY_CURRENT_USER\\Software\\Evil]\r\n", 5,
         "the key is not under HKEY_CURRENT_USER\\" + WMS + "\\Profiles"),
        ("[" + PROFILES_LONG + "]\r\n\"DefaultProfile\"=\"A\"\r\n", 3,
         "the key is the Profiles key itself, not a profile"),
        ("[-" + PROFILES_LONG + "\\A]\r\n", 3, "it deletes a key"),
        ("[" + PROFILES_LONG + "\\A\r\n", 3, "it is not a key line"),
    ],
)
def test_import_refuses_anything_but_one_profile(mp, ok, reg, workdir, body, line, why):
    write_reg(workdir / "bad.reg", body)
    rc, out, err = mp("import", "bad.reg")
    assert (rc, out) == (1, "")
    assert err.startswith(f"mapiprofile: import bad.reg: line {line}: ")
    assert err.endswith(f": {why}; the file must hold one profile and nothing else: nothing "
                        "imported\n")
    assert profiles(ok) == []
    assert reg("query", r"HKLM\Software\X")[0] == 1
    assert reg("query", r"HKCU\Software\Evil")[0] == 1


def test_import_refuses_two_profiles(mp, ok, workdir):
    write_reg(workdir / "two.reg", f"[{PROFILES_LONG}\\A\\{GLOBAL}]\r\n\r\n"
                                   f"[{PROFILES_LONG}\\a\\{INSTANCE}]\r\n\r\n"
                                   f"[{PROFILES_LONG}\\B]\r\n")
    fails(mp("import", "two.reg"), 1,
          'mapiprofile: import two.reg: line 7: the key belongs to profile "B", not to "A": the '
          "file must hold one profile: nothing imported")
    assert profiles(ok) == []


def test_import_bad_files(mp, ok, workdir):
    fails(mp("import", "missing.reg"), 1, "mapiprofile: import missing.reg: No such file or "
                                          "directory")
    (workdir / "text.reg").write_text("hello\n")
    fails(mp("import", "text.reg"), 1,
          'mapiprofile: import text.reg: not a .reg file (its first line must be "Windows '
          'Registry Editor Version 5.00" or "REGEDIT4")')
    (workdir / "empty.reg").write_bytes(b"")
    fails(mp("import", "empty.reg"), 1, "mapiprofile: import empty.reg: the file is empty")
    write_reg(workdir / "none.reg", "; nothing\r\n")
    fails(mp("import", "none.reg"), 1, "mapiprofile: import none.reg: the file holds no profile")
    # A line the importer cannot read: nothing of the profile stays.
    write_reg(workdir / "broken.reg", f"[{PROFILES_LONG}\\Broken\\{GLOBAL}]\r\n"
                                      '"001e6602"=hex:6d,61,69,6c,31,00\r\n'
                                      '"001e6603"=hex:zz\r\n')
    rc, out, err = mp("import", "broken.reg")
    assert (rc, out) == (1, "")
    assert err.startswith("mapiprofile: import broken.reg: line 5: ")
    assert err.endswith("mapiprofile: import broken.reg: 1 line could not be imported: nothing "
                        "imported\n")
    assert profiles(ok) == []


def test_import_gives_a_profile_without_identity_one(ok, workdir):
    write_reg(workdir / "bare.reg", f"[{PROFILES_LONG}\\Bare\\{GLOBAL}]\r\n"
                                    '"001e6602"=hex:6d,61,69,6c,31,00\r\n')
    assert ok("import", "bare.reg") == 'Profile "Bare" imported.\n'
    search_key(ok("dump", "Bare"))
    assert ok("logon", "Bare") == 'Logged on to "Bare".\nLogged off.\n'


def test_export_errors(mp, ok, workdir):
    fails(mp("export", "Nope", "n.reg"), 1,
          'mapiprofile: export "Nope": no such profile (MAPI_E_NOT_FOUND)')
    assert not (workdir / "n.reg").exists()
    ok("create", "A")
    rc, out, err = mp("export", "A", "no/such/dir/a.reg")
    assert (rc, out) == (1, "")
    assert err == 'mapiprofile: export "A": cannot write no/such/dir/a.reg: No such file or ' \
                  "directory\n"


# --- logon, in use, deferred deletion and rename ------------------------------------------


def test_logon(mp, ok, holders):
    fails(mp("logon", "Nope"), 1,
          'mapiprofile: logon "Nope": no such profile, or it is being deleted '
          "(MAPI_E_LOGON_FAILED)")
    ok(*GATEWAY_ARGS)
    assert ok("logon", "Gateway") == 'Logged on to "Gateway".\nLogged off.\n'
    assert ok("logon", "Gateway", "--hold", "0") == 'Logged on to "Gateway".\nLogged off.\n'
    h = holders("Gateway")
    assert h.wait_line() == 'Logged on to "Gateway".\n'
    assert profiles(ok) == ["Gateway [in use]"]
    # SIGTERM ends the hold: the session ends properly.
    assert h.stop(signal.SIGTERM) == (0, "Logged off.\n")
    assert profiles(ok) == ["Gateway"]
    h = holders("Gateway", seconds=1)
    assert h.wait_line() == 'Logged on to "Gateway".\n'
    assert h.p.wait(timeout=WAIT_TIMEOUT) == 0
    assert profiles(ok) == ["Gateway"]


def test_deleting_a_profile_in_use_is_deferred(mp, ok, reg, holders):
    ok(*GATEWAY_ARGS, "--default")
    h = holders("Gateway")
    assert h.wait_line() == 'Logged on to "Gateway".\n'
    assert ok("delete", "Gateway") == ('Profile "Gateway" is in use: it will be deleted when its '
                                       "last session ends.\n")
    # Hidden at once, kept while the session lives.
    assert profiles(ok) == []
    gone = deleted_profiles(reg)
    assert len(gone) == 1 and gone[0].startswith("Gateway "), gone
    fails(mp("get-default"), 1,
          "mapiprofile: get-default: there is no default profile (MAPI_E_NOT_FOUND)")
    fails(mp("logon", "Gateway"), 1,
          'mapiprofile: logon "Gateway": no such profile, or it is being deleted '
          "(MAPI_E_LOGON_FAILED)")
    # The name is free again.
    ok("create", "Gateway")
    assert profiles(ok) == ["Gateway"]
    # The last session ends by SIGKILL: the profile goes all the same.
    h.kill()
    assert poll(lambda: deleted_profiles(reg) == []), deleted_profiles(reg)
    assert profiles(ok) == ["Gateway"]


def test_renaming_a_profile_in_use_is_deferred(ok, holders):
    ok(*GATEWAY_ARGS, "--default")
    h = holders("Gateway")
    assert h.wait_line() == 'Logged on to "Gateway".\n'
    assert ok("rename", "Gateway", "Later") == ('Profile "Gateway" is in use: it will be renamed '
                                                'to "Later" when its last session ends.\n')
    assert profiles(ok) == ["Gateway [default] [in use]"]
    assert h.stop(signal.SIGINT) == (0, "Logged off.\n")
    assert profiles(ok) == ["Later [default]"]


def test_delete_after_the_holder_was_killed_is_immediate(ok, reg, holders):
    ok("create", "Short")
    h = holders("Short")
    h.wait_line()
    h.kill()
    assert ok("delete", "Short") == 'Profile "Short" deleted.\n'
    assert deleted_profiles(reg) == []


# --- Ctrl-C during create ------------------------------------------------------------------


def test_sigint_pending_at_start_creates_nothing(mp_env, workdir, ok):
    def pending_sigint():
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        os.kill(os.getpid(), signal.SIGINT)  # pending across exec: create sees it at once

    rc, out, err = _run([MAPIPROFILE, *GATEWAY_ARGS], mp_env, workdir, preexec_fn=pending_sigint)
    assert (rc, out, err) == (EXIT_SIGINT, "",
                              'mapiprofile: interrupted: profile "Gateway" not created\n')
    assert profiles(ok) == []


def complete_or_absent(ok):
    """The profile Gateway either does not exist or is complete; remove it if it exists."""
    listing = ok("list", "--verbose")
    if listing == "":
        return False
    assert listing == "Gateway\n    MSEMS  Microsoft Exchange Server\n", listing
    dump = ok("dump", "Gateway")
    assert re.search(r'^  PR_PROFILE_HOME_SERVER +PT_STRING8 +"mail1"$', dump, re.M), dump
    assert re.search(r'^  PR_PROFILE_USER +PT_STRING8 +"IMS"$', dump, re.M), dump
    assert dump.count(" of service MSEMS\n") == 5, dump
    ok("delete", "Gateway")
    return True


def test_sigint_during_create_leaves_all_or_nothing(mp_env, workdir, ok):
    # How long a create takes here, to spread the signals over it.
    start = time.monotonic()
    assert _run([MAPIPROFILE, *GATEWAY_ARGS], mp_env, workdir)[0] == 0
    took = time.monotonic() - start
    ok("delete", "Gateway")
    outcomes = set()
    tries = 40
    for i in range(tries):
        p = subprocess.Popen([MAPIPROFILE, *GATEWAY_ARGS], env=mp_env, cwd=workdir,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        time.sleep(took * 1.2 * i / tries)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=RUN_TIMEOUT)
        rc = p.returncode
        made = complete_or_absent(ok)
        if rc == EXIT_SIGINT:
            assert err == b'mapiprofile: interrupted: profile "Gateway" not created\n'
            assert not made
        elif rc == 0:
            assert out == b'Profile "Gateway" created.\n' and made
        else:
            # Killed by the signal before the signals were held, or right after success.
            assert rc == -signal.SIGINT, (rc, out, err)
        outcomes.add((rc, made))
    assert outcomes, "no create was run"


# --- the Windows layout seen by Wine --------------------------------------------------------


@pytest.fixture(scope="module")
def wine_prefix():
    if not wine_oracle.wine_available():
        msg = ("wine is not installed (apt-get install wine wine64): the profile's .reg file "
               "cannot be checked against Wine's reg.exe")
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    prefix = wine_oracle.WinePrefix(os.environ.get("IMS_WINE_PREFIX") or None)
    try:
        prefix.start()
        if prefix.reused:
            prefix.reg("delete", PROFILES + r"\Gateway", "/f", check=False)
        yield prefix
    finally:
        prefix.stop()


def test_profile_export_round_trips_through_wine(wine_prefix, ok, reg, tmp_path):
    ok(*GATEWAY_ARGS)
    key = PROFILES + r"\Gateway"
    ours = tmp_path / "ours.reg"
    assert reg("export", key, ours, "/y")[0] == 0
    wine_prefix.reg("import", ours)
    theirs = tmp_path / "wine.reg"
    wine_prefix.reg("export", key, theirs, "/y")
    mine = ours.read_bytes()
    assert canonical_reg(mine) == canonical_reg(theirs.read_bytes())
    # Wine sees the same sections and REG_BINARY values.
    rc, out, err = reg("query", key, "/s")
    assert rc == 0, err
    assert canonical_query(out, wine=False) == canonical_query(
        wine_prefix.reg("query", key, "/s").stdout, wine=True)
    q = wine_prefix.reg("query", key + "\\" + GLOBAL, "/v", "001e6602").stdout.decode("cp437")
    assert re.search(r"001e6602\s+REG_BINARY\s+6D61696C3100", q), q
    # And what Wine exports imports back into a profile that works.
    ok("delete", "Gateway")
    assert ok("import", theirs) == 'Profile "Gateway" imported.\n'
    assert ok("logon", "Gateway") == 'Logged on to "Gateway".\nLogged off.\n'
    wine_prefix.reg("delete", key, "/f")


# --- other users' profiles -------------------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0 and os.environ.get("CI") != "true",
                                reason="needs root")


@needs_root
def test_root_works_on_another_users_profiles(ok, mp, reg):
    nobody = pwd.getpwnam("nobody").pw_uid
    assert ok("--user", "nobody", "create", "Theirs", "--service", "MSEMS") == \
        'Profile "Theirs" created.\n'
    assert profiles(ok) == []
    assert ok("--user", str(nobody), "list") == "Theirs\n"
    assert ok("--user=nobody", "dump", "Theirs").startswith('Profile "Theirs"\n')
    rc, out, _ = reg("query", f"HKU\\S-1-22-1-{nobody}\\{WMS}\\Profiles")
    assert rc == 0 and "\\Profiles\\Theirs" in out
    usage_error(mp("--user", "no-such-user-here", "list"),
                'mapiprofile: --user: no such user "no-such-user-here"')
    usage_error(mp("--user", "nobody", "--user", "nobody", "list"),
                "mapiprofile: --user given twice")


@needs_root
def test_only_root_may_name_a_user(mp_env):
    p = subprocess.run(["runuser", "-u", "nobody", "--", MAPIPROFILE, "--user", "root", "list"],
                       env=mp_env, cwd="/", capture_output=True, text=True, timeout=RUN_TIMEOUT,
                       stdin=subprocess.DEVNULL)
    assert (p.returncode, p.stdout) == (EXIT_USAGE, "")
    assert p.stderr.startswith("mapiprofile: --user: only root may name a user\n")
