"""test_reg_users.py - who may read and write which hive, with real Unix users.

Runs as root (as CI does): creates two Unix users, drives `reg` as each of them against one
shared IMS_ROOT, and removes the users afterwards. As a plain user the tests are skipped,
except under CI, where they must run."""
import os
import pwd
import shutil
import stat
import subprocess
import tempfile

import pytest

BIN = os.environ.get("IMS_BIN", os.path.join(os.path.dirname(__file__), "../../build/bin"))
REG = os.path.join(BIN, "reg")

if os.geteuid() != 0:
    if os.environ.get("CI") == "true":
        raise RuntimeError("CI runs the suite as root; these tests need root")
    pytest.skip("needs root to create users", allow_module_level=True)


def _useradd(name):
    subprocess.run(["userdel", "-f", name], capture_output=True)
    subprocess.run(["useradd", "-M", "-N", "-s", "/usr/sbin/nologin", name], check=True)
    return pwd.getpwnam(name).pw_uid


@pytest.fixture(scope="module")
def users():
    names = ["imsregta", "imsregtb"]
    uids = [_useradd(n) for n in names]
    yield dict(zip(names, uids))
    for n in names:
        subprocess.run(["userdel", "-f", n], capture_output=True)


@pytest.fixture
def root_dir():
    d = tempfile.mkdtemp(prefix="ims-users-")
    os.chmod(d, 0o755)
    # The binaries must be reachable by the test users too.
    yield d
    shutil.rmtree(d)


def reg(root_dir, *args, user=None):
    cmd = [REG, *args]
    if user:
        cmd = ["runuser", "-u", user, "--", *cmd]
    env = dict(os.environ, IMS_ROOT=root_dir)
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                       timeout=30)
    return p.returncode, p.stdout, p.stderr


def test_hklm_readable_by_all_writable_by_root(users, root_dir):
    assert reg(root_dir, "add", r"HKLM\Software\T", "/v", "x", "/d", "machine", "/f")[0] == 0
    rc, out, _ = reg(root_dir, "query", r"HKLM\Software\T", "/v", "x", user="imsregta")
    assert rc == 0 and "machine" in out
    rc, _, err = reg(root_dir, "add", r"HKLM\Software\T", "/v", "y", "/d", "1", "/f",
                     user="imsregta")
    assert rc == 1 and err
    rc, out, _ = reg(root_dir, "query", r"HKLM\Software\T")
    assert "    y    " not in out


def test_user_hive_private(users, root_dir):
    uid_a = users["imsregta"]
    assert reg(root_dir, "add", r"HKLM\Software\Init", "/f")[0] == 0
    assert reg(root_dir, "add", r"HKCU\Software\Mine", "/v", "s", "/d", "secret", "/f",
               user="imsregta")[0] == 0
    hive = os.path.join(root_dir, "registry", "HKU", f"S-1-22-1-{uid_a}")
    st = os.stat(hive)
    assert st.st_uid == uid_a and stat.S_IMODE(st.st_mode) == 0o700
    data = os.stat(os.path.join(hive, "data.mdb"))
    assert data.st_uid == uid_a and stat.S_IMODE(data.st_mode) == 0o600
    # The owner reads it back through HKCU and through HKU.
    rc, out, _ = reg(root_dir, "query", r"HKCU\Software\Mine", "/v", "s", user="imsregta")
    assert rc == 0 and "secret" in out
    rc, out, _ = reg(root_dir, "query", rf"HKU\S-1-22-1-{uid_a}\Software\Mine", user="imsregta")
    assert rc == 0 and "secret" in out
    # Another user can neither read nor write it.
    rc, out, _ = reg(root_dir, "query", rf"HKU\S-1-22-1-{uid_a}\Software\Mine", user="imsregtb")
    assert rc == 1 and "secret" not in out
    rc, _, _ = reg(root_dir, "add", rf"HKU\S-1-22-1-{uid_a}\Software\Evil", "/f",
                   user="imsregtb")
    assert rc == 1
    # Nor make a hive in somebody else's name.
    uid_b = users["imsregtb"]
    rc, _, _ = reg(root_dir, "add", rf"HKU\S-1-22-1-{uid_a + 77}\X", "/f", user="imsregtb")
    assert rc == 1
    assert not os.path.exists(os.path.join(root_dir, "registry", "HKU", f"S-1-22-1-{uid_a + 77}"))
    # Root reads any user's hive.
    rc, out, _ = reg(root_dir, "query", rf"HKU\S-1-22-1-{uid_a}\Software\Mine")
    assert rc == 0 and "secret" in out
    # A hive root makes for another user belongs to that user, who can then use it.
    assert reg(root_dir, "add", rf"HKU\S-1-22-1-{uid_b}\Software\FromRoot", "/v", "v", "/d",
               "given", "/f")[0] == 0
    rc, out, _ = reg(root_dir, "query", r"HKCU\Software\FromRoot", user="imsregtb")
    assert rc == 0 and "given" in out
    assert reg(root_dir, "add", r"HKCU\Software\FromRoot", "/v", "w", "/d", "1", "/f",
               user="imsregtb")[0] == 0


def test_squatted_hive_refused(users, root_dir):
    """A directory made in another user's name is not taken for that user's hive."""
    uid_a = users["imsregta"]
    assert reg(root_dir, "add", r"HKLM\Software\Init", "/f")[0] == 0
    hku = os.path.join(root_dir, "registry", "HKU")
    os.makedirs(hku, exist_ok=True)
    os.chmod(hku, 0o1777)
    squat = os.path.join(hku, f"S-1-22-1-{uid_a}")
    subprocess.run(["runuser", "-u", "imsregtb", "--", "mkdir", "-m", "0777", squat], check=True)
    rc, _, _ = reg(root_dir, "add", r"HKCU\Software\X", "/f", user="imsregta")
    assert rc == 1
    rc, _, _ = reg(root_dir, "add", rf"HKU\S-1-22-1-{uid_a}\Software\X", "/f")
    assert rc == 1
    assert not os.path.exists(os.path.join(squat, "data.mdb"))


def test_state_root_owner_writes_hklm(users, root_dir):
    """A plain user running a private instance owns IMS_ROOT and so may write its HKLM."""
    uid_a = users["imsregta"]
    os.chown(root_dir, uid_a, -1)
    assert reg(root_dir, "add", r"HKLM\Software\Private", "/v", "x", "/d", "1", "/f",
               user="imsregta")[0] == 0
    rc, out, _ = reg(root_dir, "query", r"HKLM\Software\Private", user="imsregtb")
    assert rc == 0 and "REG_SZ" in out
    assert reg(root_dir, "add", r"HKLM\Software\Private", "/v", "y", "/d", "1", "/f",
               user="imsregtb")[0] == 1
