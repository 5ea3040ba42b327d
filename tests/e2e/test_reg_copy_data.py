"""test_reg_copy_data.py - `reg copy /s` of a MAPI profile copies every byte.

A regression test: the copy writes into the hive while it reads from it, and the data it had
read once moved under it (a few copies in forty came out damaged). The shape that showed it
is a real profile's, so the test makes one with `mapiprofile` and compares `reg query /s` of
source and copy, forty times over."""
import os
import subprocess

from conftest import IMS_BIN, REPO

PROFILES = r"HKCU\Software\Microsoft\Windows NT\CurrentVersion\Windows Messaging Subsystem\Profiles"


def run(prog, *args, env):
    p = subprocess.run([os.path.join(IMS_BIN, prog), *args], env=env, capture_output=True,
                       text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert p.returncode == 0, (prog, args, p.stdout, p.stderr)
    return p.stdout


def test_copy_of_profiles_is_exact(tmp_path):
    for i in range(40):
        root = tmp_path / f"r{i}"
        root.mkdir()
        env = dict(os.environ, IMS_ROOT=str(root), IMS_MAPISVC=os.path.join(REPO, "data", "mapisvc.inf"))
        run("mapiprofile", "create", "Gateway", "--service", "MSEMS", env=env)
        run("reg", "copy", PROFILES + r"\Gateway", r"HKCU\Software\Dst", "/s", "/f", env=env)
        src = run("reg", "query", PROFILES + r"\Gateway", "/s", env=env)
        dst = run("reg", "query", r"HKCU\Software\Dst", "/s", env=env)
        src = src.replace(PROFILES + r"\Gateway", "X")
        dst = dst.replace(r"HKEY_CURRENT_USER\Software\Dst", "X")
        src = src.replace("HKEY_CURRENT_USER" + PROFILES[4:] + r"\Gateway", "X")
        assert src == dst, f"round {i}"
