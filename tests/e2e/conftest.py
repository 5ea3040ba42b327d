"""Shared fixtures of the end-to-end tests: a private IMS_ROOT per test and runners for the
programs in $IMS_BIN (set by `make e2e` to the absolute build/bin path)."""
import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMS_BIN = os.environ.get("IMS_BIN") or os.path.join(REPO, "build", "bin")

# A program that waits for input it never gets must fail the test, not hang it.
RUN_TIMEOUT = 60


@pytest.fixture
def ims_root(tmp_path):
    """A fresh, empty state root for one test."""
    root = tmp_path / "ims_root"
    root.mkdir()
    return root


@pytest.fixture
def env(ims_root):
    """The environment the programs run in: IMS_ROOT set to the test's root."""
    e = dict(os.environ)
    e["IMS_ROOT"] = str(ims_root)
    return e


@pytest.fixture
def workdir(tmp_path):
    """The directory the programs run in (for relative file names)."""
    d = tmp_path / "work"
    d.mkdir()
    return d


def _run(prog, args, env, cwd, input):
    if isinstance(input, str):
        input = input.encode("utf-8")
    p = subprocess.run(
        [os.path.join(IMS_BIN, prog), *[a if isinstance(a, bytes) else str(a) for a in args]],
        input=input,
        # No input means end of input at once: a prompt must take it as No.
        stdin=None if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        timeout=RUN_TIMEOUT,
    )
    return (
        p.returncode,
        p.stdout.decode("utf-8", "surrogateescape"),
        p.stderr.decode("utf-8", "surrogateescape"),
    )


@pytest.fixture
def run_reg(env, workdir):
    """run_reg(*args, input=None) -> (rc, stdout, stderr) of $IMS_BIN/reg."""

    def run(*args, input=None):
        return _run("reg", args, env, workdir, input)

    return run
