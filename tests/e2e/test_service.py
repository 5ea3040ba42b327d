"""test_service.py - the service end to end: imsctl install, start, stop, status and uninstall
driving imsd, and KB Q201121 as written: logged on as the service account, the key
"MSExchangeIMC xxxxxxxxxx" is under HKCU\\...\\Windows Messaging Subsystem\\Profiles exactly
while the service runs - none while it is stopped, none after a stop, a kill -9 or a failed
start.

As root (as CI runs it) the tests make Unix users for service accounts and remove them
afterwards; as a plain user the root-only tests are skipped (under CI they fail) and the rest
run with the calling user as the service account. Every test has its own state root and stops
what it started. The test process is made a child subreaper, so an imsd whose imsctl has exited
becomes its child: the tests reap it and see its exit status (0 after a clean stop)."""
import ctypes
import fcntl
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("IMS_BIN") or os.path.join(REPO, "build", "bin")
MAPISVC = os.path.join(REPO, "data", "mapisvc.inf")

SERVICE_KEY = r"HKLM\System\CurrentControlSet\Services\MSExchangeIMC"
SERVICE_KEY_LONG = r"HKEY_LOCAL_MACHINE\System\CurrentControlSet\Services\MSExchangeIMC"
PROFILES = r"HKCU\Software\Microsoft\Windows NT\CurrentVersion\Windows Messaging Subsystem\Profiles"
PROFILES_LONG = "HKEY_CURRENT_USER" + PROFILES[4:]
PROFILE_RE = re.compile(r"^MSExchangeIMC [0-9A-F]{10}$")

IS_ROOT = os.geteuid() == 0
IN_CI = os.environ.get("CI") == "true"
ACCOUNT = "imssvca"  # the service account of the root tests
USER_ACCOUNT = "imssvcb"  # the user who runs a private instance in the user tests

RUN_TIMEOUT = 120  # one command; imsctl's own bounds are shorter
POLL = 0.02  # interval of the bounded polling loops
GONE_TIMEOUT = 5.0  # a killed service's key must be gone by then
LOOP_ROUNDS = 25
LIVE_SAMPLES = 3  # looks at the key while the service lives, each round
PR_SET_CHILD_SUBREAPER = 36


def needs_root():
    if not IS_ROOT:
        if IN_CI:
            pytest.fail("CI runs the suite as root; this test needs root")
        pytest.skip("needs root to create the service account")


def wait_for(pred, timeout, what):
    """Poll pred() until it returns a true value (returned) or timeout seconds pass (fail)."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(POLL)


def alive(pid):
    """True while pid is a live process (a zombie is dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat[stat.rindex(")") + 2] not in "ZXx"


def reap(pid, timeout):
    """The wait status of pid (orphaned to us, the subreaper), or None if it did not end in
    time or is not our child."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if got == pid:
            return status
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _useradd(name):
    subprocess.run(["userdel", "-f", name], capture_output=True)
    subprocess.run(["useradd", "-M", "-N", "-s", "/usr/sbin/nologin", name], check=True)
    return pwd.getpwnam(name).pw_uid


@pytest.fixture(scope="module", autouse=True)
def subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    ok = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    yield ok
    libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


@pytest.fixture(scope="module")
def bindir():
    """Copies of the programs in a directory every user can reach: the service accounts run
    reg, and the user tests imsctl and imsd, wherever the build tree is. (Copies also keep a
    rebuild during the run from swapping a program under a running test.)"""
    d = tempfile.mkdtemp(prefix="ims-svc-bin-")
    os.chmod(d, 0o755)
    for prog in ("reg", "imsctl", "imsd"):
        shutil.copy2(os.path.join(BIN, prog), os.path.join(d, prog))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def accounts():
    """The Unix users of the root tests: {name: uid}. Removed afterwards."""
    if not IS_ROOT:
        yield {}
        return
    names = [ACCOUNT, USER_ACCOUNT]
    users = {n: _useradd(n) for n in names}
    yield users
    for n in names:
        subprocess.run(["userdel", "-f", n], capture_output=True)


class Service:
    """One state root and the service installed in it.

    ctl_user runs imsctl (None: this process); account is the service account, whose HKCU
    the KB scenario looks at (through runuser when it is not this process's user)."""

    def __init__(self, bindir, ctl_user, account):
        self.bindir = bindir
        self.ctl_user = ctl_user
        self.account = account
        self.me = pwd.getpwuid(os.geteuid()).pw_name
        self.uid = pwd.getpwnam(account).pw_uid
        self.root = tempfile.mkdtemp(prefix="ims-svc-")
        os.chmod(self.root, 0o755)  # the service account must get through it
        if ctl_user:
            os.chown(self.root, pwd.getpwnam(ctl_user).pw_uid, -1)
        self.port = free_port()
        self.pids = []  # every imsd seen, stopped at the end
        # The catalogue of message services, where the service account can read it.
        mapisvc = os.path.join(self.root, "mapisvc.inf")
        shutil.copy(MAPISVC, mapisvc)
        os.chmod(mapisvc, 0o644)
        # Sanitizer reports of a daemon whose stderr is /dev/null go to files here.
        self.sanlog = os.path.join(self.root, "sanitizer")
        os.mkdir(self.sanlog)
        os.chmod(self.sanlog, 0o1777)
        env = dict(os.environ, IMS_ROOT=self.root, IMS_MAPISVC=mapisvc)
        env.pop("NOTIFY_SOCKET", None)
        for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
            prefix = env.get(var, "")
            env[var] = (prefix + ":" if prefix else "") + "log_path=" + os.path.join(
                self.sanlog, var.split("_")[0].lower())
        self.env = env

    def _run(self, user, prog, *args, timeout=RUN_TIMEOUT):
        cmd = [prog if prog.startswith("/") else os.path.join(self.bindir, prog), *map(str, args)]
        if user and user != self.me:
            cmd = ["runuser", "-u", user, "--", *cmd]
        p = subprocess.run(cmd, env=self.env, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=timeout)
        return p.returncode, p.stdout, p.stderr

    def imsctl(self, *args, timeout=RUN_TIMEOUT):
        return self._run(self.ctl_user, "imsctl", *args, timeout=timeout)

    def reg(self, *args):
        """reg as the one who controls the service (root writes HKLM)."""
        return self._run(self.ctl_user, "reg", *args)

    def reg_as_account(self, *args):
        return self._run(self.account, "reg", *args)

    def install(self, *extra):
        args = ["install", "--listen", f"127.0.0.1:{self.port}", *extra]
        if self.ctl_user is None and IS_ROOT:
            args += ["--account", self.account]
        rc, out, err = self.imsctl(*args)
        assert rc == 0, f"install: rc {rc}\n{out}{err}"
        return out

    def profiles(self):
        """The names under the account's Profiles key that start with MSExchangeIMC."""
        rc, out, err = self.reg_as_account("query", PROFILES)
        if rc != 0:
            assert "unable to find" in err, f"reg query {PROFILES}: rc {rc}\n{out}{err}"
            return []
        prefix = PROFILES_LONG.lower() + "\\"
        names = [line[len(prefix):] for line in out.splitlines()
                 if line.lower().startswith(prefix)]
        return [n for n in names if n.upper().startswith("MSEXCHANGEIMC")]

    def status(self):
        """(rc, {field: value}) of imsctl status."""
        rc, out, err = self.imsctl("status")
        fields = {}
        for line in out.splitlines():
            if line.startswith("  ") and ":" in line:
                k, v = line.strip().split(":", 1)
                fields[k] = v.strip()
        fields["_text"] = out + err
        return rc, fields

    def start(self):
        """imsctl start; returns (pid, profile) after checking the key is there, exactly one."""
        rc, out, err = self.imsctl("start")
        assert rc == 0, f"start: rc {rc}\n{out}{err}"
        m = re.search(r"started \(pid (\d+), profile (MSExchangeIMC [0-9A-F]{10})\)\.", out)
        assert m, f"start said: {out!r}"
        pid, profile = int(m.group(1)), m.group(2)
        self.pids.append(pid)
        assert self.profiles() == [profile]
        return pid, profile

    def stop(self):
        rc, out, err = self.imsctl("stop")
        assert rc == 0 and "MSExchangeIMC stopped." in out, f"stop: rc {rc}\n{out}{err}"

    def lock_held(self):
        """Whether some process holds the pid lock (imsctl's own test of "running")."""
        try:
            fd = os.open(os.path.join(self.root, "run", "imsd.pid"), os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def cleanup(self):
        self.imsctl("stop", "--force", "--timeout", "10", timeout=60)
        for pid in self.pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
            reap(pid, GONE_TIMEOUT)
        reports = sorted(os.listdir(self.sanlog))
        texts = []
        for r in reports:
            with open(os.path.join(self.sanlog, r), errors="replace") as f:
                texts.append(f"--- {r}\n{f.read()}")
        shutil.rmtree(self.root, ignore_errors=True)
        assert not reports, "sanitizer reports:\n" + "\n".join(texts)


@pytest.fixture
def make_service(bindir):
    made = []

    def make(ctl_user=None, account=None):
        if account is None:
            account = ctl_user or pwd.getpwuid(os.geteuid()).pw_name
        svc = Service(bindir, ctl_user, account)
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.cleanup()


@pytest.fixture
def root_service(accounts, make_service):
    """As root: a root-owned state root, the service run as ACCOUNT."""
    needs_root()
    return make_service(None, ACCOUNT)


@pytest.fixture
def any_service(accounts, make_service):
    """The service as root with ACCOUNT, or as the calling user when not root."""
    if IS_ROOT:
        return make_service(None, ACCOUNT)
    return make_service()


@pytest.fixture
def user_service(accounts, make_service):
    """A private instance run by a plain user as its own service account: as root through
    runuser as USER_ACCOUNT (who owns the state root), else as the calling user."""
    if IS_ROOT:
        return make_service(USER_ACCOUNT, USER_ACCOUNT)
    return make_service()


def smtp_banner(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = s.recv(512)
            if not chunk:
                break
            data += chunk
        return data.decode("ascii", "replace")


def kill9_and_check(svc, pid):
    """kill -9 the service: the key goes with the process (bounded), and the lock is free."""
    assert alive(pid)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not svc.profiles(), GONE_TIMEOUT, "the profile key to vanish after kill -9")
    status = reap(pid, GONE_TIMEOUT)
    if status is not None:
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    wait_for(lambda: not svc.lock_held(), GONE_TIMEOUT, "the pid lock to be free after kill -9")
    rc, st = svc.status()
    assert rc == 3 and "MSExchangeIMC is stopped." in st["_text"]


def stop_and_check(svc, pid, subreaper):
    svc.stop()
    # imsctl stop returns once the process is gone: the key is gone already, no polling.
    assert svc.profiles() == []
    assert not svc.lock_held()
    if subreaper:
        status = reap(pid, GONE_TIMEOUT)
        assert status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, \
            f"imsd's wait status after a clean stop: {status}"
    # The lock goes as the process exits; its last moments may outlast imsctl stop a little.
    wait_for(lambda: not alive(pid), GONE_TIMEOUT, f"pid {pid} to be gone")


def replace_with_file(path):
    """Put a regular file where the directory path is; returns the function that undoes it."""
    saved = path + ".saved"
    os.rename(path, saved)
    with open(path, "w") as f:
        f.write("not a directory\n")

    def undo():
        os.unlink(path)
        os.rename(saved, path)

    return undo


def make_mapi_fail(svc):
    """Make the MAPI side of the next start fail: the account's hive is a regular file."""
    return replace_with_file(os.path.join(svc.root, "registry", "HKU", f"S-1-22-1-{svc.uid}"))


def make_store_fail(svc):
    """Make the next start fail after its profile is made and logged on: the gateway
    mailbox of the message store is a regular file."""
    return replace_with_file(os.path.join(svc.root, "store", "MSExchangeIMC"))


def check_failed_start(svc, why):
    rc, out, err = svc.imsctl("start")
    assert rc == 1, f"a start that must fail: rc {rc}\n{out}{err}"
    assert err.startswith("imsctl: start failed: ")
    assert any(w in err for w in why), err
    assert not svc.lock_held()
    rc, st = svc.status()
    assert rc == 3 and "MSExchangeIMC is stopped." in st["_text"]


def check_failed_starts(svc):
    """No key and no lock after a start that fails, before or after its profile is made."""
    undo = make_mapi_fail(svc)
    check_failed_start(svc, ("MAPI", "4018"))
    undo()
    assert svc.profiles() == []
    undo = make_store_fail(svc)
    check_failed_start(svc, ("message store",))
    assert svc.profiles() == []
    undo()


# --- the KB scenario ---------------------------------------------------------------------------


def test_kb_scenario_as_root(root_service, subreaper):
    svc = root_service
    svc.install()
    # Installed, not started: no key.
    assert svc.profiles() == []
    rc, st = svc.status()
    assert rc == 3 and "MSExchangeIMC is stopped." in st["_text"]

    pid, profile = svc.start()
    assert PROFILE_RE.match(profile)
    rc, st = svc.status()
    assert rc == 0, st["_text"]
    assert st["pid"] == str(pid) and st["profile"] == profile
    assert st["listeners"] == f"127.0.0.1:{svc.port}" and st["account"] == ACCOUNT
    assert re.fullmatch(r"\d+:\d\d:\d\d", st["uptime"])
    # The network side runs as the account, not as root.
    with open(f"/proc/{pid}/status") as f:
        uids = re.search(r"^Uid:\s+(.*)$", f.read(), re.M).group(1).split()
    assert uids == [str(svc.uid)] * 4
    banner = smtp_banner(svc.port)
    assert banner.startswith("220 "), banner
    # A second start changes nothing; uninstall is refused while it runs.
    rc, out, _ = svc.imsctl("start")
    assert rc == 0 and f"already running (pid {pid})" in out
    assert svc.profiles() == [profile]
    rc, _, err = svc.imsctl("uninstall")
    assert rc == 1 and "running" in err

    stop_and_check(svc, pid, subreaper)
    rc, out, _ = svc.imsctl("stop")
    assert rc == 0 and "MSExchangeIMC is not running." in out

    # Each start makes a new profile name.
    pid2, profile2 = svc.start()
    assert profile2 != profile
    kill9_and_check(svc, pid2)

    # A failed start leaves no key and no lock.
    check_failed_starts(svc)

    # And it starts again after all that.
    pid3, profile3 = svc.start()
    assert profile3 not in (profile, profile2)
    stop_and_check(svc, pid3, subreaper)


def test_kb_scenario_as_user(user_service, subreaper):
    """Not root: the calling user is the service account and runs its own instance."""
    svc = user_service
    out = svc.install()
    assert f"as {svc.account}." in out
    assert svc.profiles() == []
    pid, profile = svc.start()
    rc, st = svc.status()
    assert rc == 0 and st["profile"] == profile and st["account"] == svc.account
    assert smtp_banner(svc.port).startswith("220 ")
    stop_and_check(svc, pid, subreaper)
    pid, profile2 = svc.start()
    assert profile2 != profile
    kill9_and_check(svc, pid)
    check_failed_starts(svc)
    pid, _ = svc.start()
    stop_and_check(svc, pid, subreaper)


def test_start_stop_kill_loop(any_service, subreaper):
    """The key exists exactly while the process lives, round after round."""
    svc = any_service
    svc.install()
    names = set()
    for i in range(LOOP_ROUNDS):
        assert svc.profiles() == [], f"round {i}: a key before the start"
        pid, profile = svc.start()
        assert profile not in names, f"round {i}: {profile} again"
        names.add(profile)
        for _ in range(LIVE_SAMPLES):
            assert alive(pid) and svc.profiles() == [profile], f"round {i}"
        if i % 2 == 0:
            stop_and_check(svc, pid, subreaper)
        else:
            kill9_and_check(svc, pid)
        assert svc.profiles() == [], f"round {i}: a key after the process is gone"


# --- installing ----------------------------------------------------------------------------


def parse_query(out):
    """reg query /s output -> {key path: {value name: (type, data)}}."""
    keys, cur = {}, None
    for line in out.splitlines():
        if line.startswith("HKEY_"):
            cur = keys.setdefault(line, {})
        elif line.startswith("    ") and cur is not None:
            parts = line[4:].split("    ", 2)
            if len(parts) == 3:
                cur[parts[0]] = (parts[1], parts[2])
    return keys


def test_service_key_layout(any_service, bindir):
    svc = any_service
    port2 = free_port()
    svc.install("--listen", f"127.0.0.1:{port2}")
    rc, out, err = svc.reg("query", SERVICE_KEY, "/s")
    assert rc == 0, err
    keys = parse_query(out)
    key = keys[SERVICE_KEY_LONG]
    assert key["DisplayName"] == ("REG_SZ", "Microsoft Exchange Internet Mail Service")
    assert key["ImagePath"][1] == os.path.join(os.path.realpath(bindir), "imsd")
    assert key["ImagePath"][0] in ("REG_SZ", "REG_EXPAND_SZ")
    assert key["ObjectName"] == ("REG_SZ", svc.account)
    assert key["Start"][0] == "REG_DWORD"
    assert key["DependOnService"][0] == "REG_MULTI_SZ"
    assert "TCPIP" in key["DependOnService"][1].split("\\0")
    par = keys[SERVICE_KEY_LONG + r"\Parameters"]
    assert par["RootDir"] == ("REG_SZ", os.path.join(svc.root, "imcdata"))
    assert par["ListenAddresses"] == ("REG_MULTI_SZ",
                                      f"127.0.0.1:{svc.port}\\0127.0.0.1:{port2}")

    # Re-running install updates: a value changed with reg is kept unless given again.
    assert svc.reg("add", SERVICE_KEY + r"\Parameters", "/v", "RootDir", "/d",
                   os.path.join(svc.root, "elsewhere"), "/f")[0] == 0
    svc.install()
    keys = parse_query(svc.reg("query", SERVICE_KEY, "/s")[1])
    par = keys[SERVICE_KEY_LONG + r"\Parameters"]
    assert par["RootDir"][1] == os.path.join(svc.root, "elsewhere")
    assert par["ListenAddresses"] == ("REG_MULTI_SZ", f"127.0.0.1:{svc.port}")

    # uninstall removes the key; a second one says so.
    rc, out, _ = svc.imsctl("uninstall")
    assert rc == 0 and "uninstalled" in out
    rc, _, err = svc.reg("query", SERVICE_KEY)
    assert rc == 1
    rc, out, _ = svc.imsctl("uninstall")
    assert rc == 0 and "not installed" in out


def test_install_default_listener(any_service):
    svc = any_service
    args = ["install"] + (["--account", svc.account] if IS_ROOT else [])
    rc, out, err = svc.imsctl(*args)
    assert rc == 0, err
    rc, out, _ = svc.reg("query", SERVICE_KEY + r"\Parameters", "/v", "ListenAddresses")
    assert rc == 0 and re.search(r"ListenAddresses    REG_MULTI_SZ    0\.0\.0\.0:25$", out, re.M)


def test_install_refusals(accounts, make_service):
    svc = make_service(None, ACCOUNT) if IS_ROOT else make_service()
    cases = [
        (["install", "--listen", "localhost:25"], 2, "--listen"),
        (["install", "--listen", "127.0.0.1:0"], 2, "--listen"),
        (["install", "--root-dir", "relative/dir"], 2, "absolute"),
        (["install", "--bogus"], 2, "unknown option"),
        (["frobnicate"], 2, "unknown command"),
        (["start", "--timeout", "0"], 2, "--timeout"),
        (["status", "extra"], 2, "unexpected argument"),
    ]
    if IS_ROOT:
        cases += [
            (["install"], 2, "must not run as root"),
            (["install", "--account", "root"], 2, "must not run as root"),
            (["install", "--account", "imsnosuchuser"], 1, "no such user"),
        ]
    else:
        cases += [(["install", "--account", "root"], 2, "only root")]
    for args, want_rc, want_text in cases:
        rc, out, err = svc.imsctl(*args)
        assert (rc, want_text in err) == (want_rc, True), f"{args}: got rc {rc}\n{out}{err}"
        assert err.startswith("imsctl: ")
    # None of them wrote anything.
    rc, _, _ = svc.reg("query", SERVICE_KEY)
    assert rc == 1


def test_not_installed(any_service):
    svc = any_service
    rc, out, err = svc.imsctl("start")
    assert rc == 1 and "imsctl: the service is not installed (imsctl install)" in err
    rc, out, _ = svc.imsctl("stop")
    assert rc == 0 and "MSExchangeIMC is not running." in out
    rc, st = svc.status()
    assert rc == 3 and "not installed" in st["_text"]
    assert svc.profiles() == []


# --- settings ------------------------------------------------------------------------------


def test_malformed_parameter_still_starts(any_service, subreaper):
    """A Parameters value of the wrong type keeps its default, with a warning (event 4086)."""
    svc = any_service
    svc.install()
    assert svc.reg("add", SERVICE_KEY + r"\Parameters", "/v", "ConsoleStatFrequency", "/t",
                   "REG_SZ", "/d", "abc", "/f")[0] == 0
    pid, _ = svc.start()
    stop_and_check(svc, pid, subreaper)

    # The warning itself, on the console of an imsd run in the foreground.
    cmd = [os.path.join(svc.bindir, "imsd"), "-console"]
    if svc.ctl_user and svc.ctl_user != svc.me:
        cmd = ["runuser", "-u", svc.ctl_user, "--", *cmd]
    p = subprocess.Popen(cmd, env=svc.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        # Ready once the status file is there. (Not `imsctl status` in a loop: its probe of the
        # pid lock, were it to come at the moment imsd takes the lock, would make imsd exit 3.)
        status_file = os.path.join(svc.root, "run", "imsd.status")
        wait_for(lambda: os.path.exists(status_file) or p.poll() is not None, 30,
                 "imsd -console to be ready")
        assert p.poll() is None, p.communicate()
        with open(status_file) as f:
            svc.pids.append(int(re.search(r"^pid=(\d+)$", f.read(), re.M).group(1)))
        assert len(svc.profiles()) == 1
        rc, out, err = svc.imsctl("stop")
        assert rc == 0, out + err
        out, err = p.communicate(timeout=RUN_TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err
    events = [l for l in err.splitlines() if "Event 4086 " in l]
    assert events and "ConsoleStatFrequency" in events[0] and "Warning" in events[0], err
    assert re.search(r"Event 1001 \(Initialization/Termination, Information\)", err), err


def test_imsd_already_running(any_service, subreaper):
    """A second imsd on the same state root exits 3 and leaves the first one alone."""
    svc = any_service
    svc.install()
    pid, profile = svc.start()
    cmd = [os.path.join(svc.bindir, "imsd")]
    if svc.ctl_user and svc.ctl_user != svc.me:
        cmd = ["runuser", "-u", svc.ctl_user, "--", *cmd]
    p = subprocess.run(cmd, env=svc.env, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=RUN_TIMEOUT)
    assert p.returncode == 3 and f"imsd: already running (pid {pid})" in p.stderr, p.stderr
    assert svc.profiles() == [profile] and alive(pid)
    rc, out, err = svc.imsctl("restart")
    assert rc == 0 and "MSExchangeIMC stopped." in out and "MSExchangeIMC started" in out, err
    new_pid = int(re.search(r"started \(pid (\d+)", out).group(1))
    svc.pids.append(new_pid)
    assert new_pid != pid and not alive(pid)
    profiles = svc.profiles()
    assert len(profiles) == 1 and profiles[0] != profile
    stop_and_check(svc, new_pid, subreaper)


# --- time limits ---------------------------------------------------------------------------


def test_stop_timeout_and_force(any_service, subreaper):
    """A service that does not stop in time: stop fails and leaves it; --force kills it."""
    svc = any_service
    svc.install()
    pid, profile = svc.start()
    os.kill(pid, signal.SIGSTOP)  # SIGTERM stays pending: it cannot stop
    try:
        rc, out, err = svc.imsctl("stop", "--timeout", "1")
        assert rc == 1 and "did not stop within 1 s" in err and "--force" in err, out + err
        assert alive(pid) and svc.profiles() == [profile]
        rc, st = svc.status()
        assert rc == 0 and st["pid"] == str(pid)
        rc, out, err = svc.imsctl("stop", "--timeout", "1", "--force")
        assert rc == 0 and "MSExchangeIMC stopped." in out and "SIGKILL" in err, out + err
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGCONT)
    # Killed: the key went with it, as after kill -9.
    assert svc.profiles() == [] and not svc.lock_held()
    status = reap(pid, GONE_TIMEOUT)
    if subreaper:
        assert status is not None and os.WIFSIGNALED(status), status
        assert os.WTERMSIG(status) == signal.SIGKILL


def test_start_timeout_and_bad_image(any_service, subreaper):
    """What imsctl start says when ImagePath never gets ready or cannot be run."""
    svc = any_service
    svc.install()
    # A program that never reports READY=1: stopped once the time is up.
    hang = os.path.join(svc.root, "hang.sh")
    marker = os.path.join(svc.root, "hang.pid")
    with open(hang, "w") as f:
        f.write(f"#!/bin/sh\necho $$ > {marker}\nexec sleep 300\n")
    os.chmod(hang, 0o755)
    assert svc.reg("add", SERVICE_KEY, "/v", "ImagePath", "/t", "REG_EXPAND_SZ", "/d", hang,
                   "/f")[0] == 0
    t0 = time.monotonic()
    rc, out, err = svc.imsctl("start", "--timeout", "1")
    assert rc == 1 and "did not report ready within 1 s" in err, out + err
    assert time.monotonic() - t0 < 15
    with open(marker) as f:
        hung = int(f.read())
    assert not alive(hung)
    # A program that is not there.
    missing = os.path.join(svc.root, "no-such-imsd")
    assert svc.reg("add", SERVICE_KEY, "/v", "ImagePath", "/d", missing, "/f")[0] == 0
    rc, out, err = svc.imsctl("start")
    assert rc == 1 and f"cannot run {missing}: No such file or directory" in err, out + err
    # A quoted ImagePath, as Windows writes one with spaces, is the path without the quotes.
    assert svc.reg("add", SERVICE_KEY, "/v", "ImagePath", "/d",
                   '"' + os.path.join(svc.bindir, "imsd") + '"', "/f")[0] == 0
    pid, _ = svc.start()
    stop_and_check(svc, pid, subreaper)


def test_relative_state_root(any_service, subreaper):
    """IMS_ROOT given relative to the working directory: imsd runs from "/", so imsctl hands
    it (and RootDir) on as absolute paths."""
    svc = any_service
    parent, name = os.path.split(svc.root)
    svc.env["IMS_ROOT"] = name

    def imsctl(*args):
        cmd = [os.path.join(svc.bindir, "imsctl"), *args]
        p = subprocess.run(cmd, env=svc.env, cwd=parent, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=RUN_TIMEOUT)
        return p.returncode, p.stdout, p.stderr

    args = ["install", "--listen", f"127.0.0.1:{svc.port}"]
    rc, out, err = imsctl(*(args + (["--account", svc.account] if IS_ROOT else [])))
    assert rc == 0, out + err
    assert re.search(r"^    RootDir    REG_SZ    " + re.escape(svc.root + "/imcdata") + "$", out,
                     re.M), out
    rc, out, err = imsctl("start")
    assert rc == 0, out + err
    pid = int(re.search(r"started \(pid (\d+)", out).group(1))
    svc.pids.append(pid)
    svc.env["IMS_ROOT"] = svc.root
    assert len(svc.profiles()) == 1
    assert os.path.isdir(os.path.join(svc.root, "imcdata", "In"))
    stop_and_check(svc, pid, subreaper)
