"""wine_oracle.py - drive Wine's reg.exe headless as the reference oracle of the e2e tests,
and normalise .reg files and `reg query` output so that ours and Wine's can be compared."""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

WINE_LAUNCH_TRIES = 4  # starts of `wine reg` tried when Wine cannot launch it
WINE_TIMEOUT = 120  # seconds for one Wine call; the first one may create the prefix (~12 s)
WINE_PERSIST = 60  # seconds the wineserver outlives its last client (wineserver -pN)
BOM_UTF16LE = b"\xff\xfe"
QUERY_INDENT = "    "  # value lines of `reg query` start with four spaces
CONTINUATION = "  "  # wrapped hex lines of a .reg file start with two spaces


def wine_available():
    """True when the wine loader and wineserver are both on PATH."""
    return shutil.which("wine") is not None and shutil.which("wineserver") is not None


class WineError(RuntimeError):
    """A Wine call failed or did not finish."""


class WinePrefix:
    """A WINEPREFIX with a persistent wineserver, used only through `wine reg`.

    path None makes a fresh prefix in a temporary directory, removed by stop(); a given
    path (e.g. $IMS_WINE_PREFIX) is created when missing and kept."""

    def __init__(self, path=None):
        self.owned = path is None
        self.path = Path(tempfile.mkdtemp(prefix="ims-wine-")) if path is None else Path(path)
        self.reused = (self.path / "system.reg").exists()
        self.env = dict(os.environ)
        self.env.pop("DISPLAY", None)  # headless: no window may be attempted
        self.env.update(
            WINEPREFIX=str(self.path),
            WINEDEBUG="-all",
            # No Mono/Gecko install prompts while the prefix is made.
            WINEDLLOVERRIDES="mscoree,mshtml=",
            # Wine maps this locale to code page 1252 (ANSI) and 437 (OEM).
            LANG="C.UTF-8",
            LC_ALL="C.UTF-8",
        )

    def _run(self, argv, timeout=WINE_TIMEOUT):
        # Output goes to files, not pipes: the first Wine call starts services.exe and other
        # processes that live as long as the wineserver and inherit its descriptors, so a
        # pipe would never reach end-of-file.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                p = subprocess.run(
                    argv,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired as e:
                raise WineError(f"{argv} did not finish in {timeout} s") from e
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(argv, p.returncode, out.read(), err.read())

    def start(self):
        """Make the prefix if needed and keep a wineserver running for it."""
        self.path.mkdir(parents=True, exist_ok=True)
        # A persistent server keeps each `wine reg` call near 0.15 s instead of 0.5 s; it
        # also ends by itself WINE_PERSIST s after its last client should stop() never run.
        self._run(["wineserver", f"-p{WINE_PERSIST}"])
        if not self.reused:
            # system.reg appears only when the server saves (at the latest on stop()).
            p = self._run(["wineboot", "-i"])
            if p.returncode != 0 or not (self.path / "drive_c").is_dir():
                raise WineError(
                    f"wineboot -i did not make a prefix in {self.path}: rc={p.returncode} "
                    f"{p.stdout!r} {p.stderr!r}"
                )

    def stop(self):
        """Stop the wineserver (which saves the registry); remove the prefix when it was
        ours."""
        self._run(["wineserver", "-k"], timeout=30)
        self._run(["wineserver", "-w"], timeout=30)
        if self.owned:
            shutil.rmtree(self.path, ignore_errors=True)

    def reg(self, *args, check=True):
        """Run `wine reg ARGS`; the result's stdout is Wine's raw bytes (CRLF, code page 437)."""
        # Under load Wine sometimes fails to start the program at all (its loader prints
        # "Application could not be started", or nothing): reg.exe never ran, so that is no
        # answer of the oracle's. Tried again, a bounded number of times.
        for attempt in range(WINE_LAUNCH_TRIES):
            p = self._run(["wine", "reg", *[str(a) for a in args]])
            said = p.stdout + p.stderr
            # A reg.exe that ran says why it failed; a failure with no word at all is the
            # loader's too (seen under load: rc 1, nothing printed).
            if b"Application could not be started" not in said and (p.returncode == 0 or said):
                break
            time.sleep(0.5 * (attempt + 1))
        if check and p.returncode != 0:
            raise WineError(
                f"wine reg {' '.join(map(str, args))}: rc={p.returncode}\n"
                f"stdout: {p.stdout!r}\nstderr: {p.stderr!r}"
            )
        return p


# --- .reg files -------------------------------------------------------------------------


def decode_reg(data):
    """The text of a .reg file: UTF-16LE after its BOM, otherwise CP1252 (REGEDIT4)."""
    if data.startswith(BOM_UTF16LE):
        return data[len(BOM_UTF16LE):].decode("utf-16-le")
    return data.decode("cp1252")


def reg_entries(text):
    """Split a .reg text into logical entries, each with its line ends: one line, plus the
    continuation lines of wrapped hex data. Joining the entries gives text back exactly."""
    entries = []
    for line in text.splitlines(keepends=True):
        if line.startswith(CONTINUATION) and entries and _is_value_entry(entries[-1]):
            entries[-1] += line
        else:
            entries.append(line)
    return entries


def _is_value_entry(entry):
    return entry[:1] in ('"', "@")


def canonical_reg(data):
    """A .reg file as a list of entries with each key's run of value entries sorted.

    Wine sorts values by name while Windows (and we) keep creation order; everything else
    (header, key lines and their order, blank lines, line ends, wrapping) stays as it is,
    so two canonical lists are equal only when the files differ in value order alone."""
    out, run = [], []
    for entry in reg_entries(decode_reg(data)):
        if _is_value_entry(entry):
            run.append(entry)
            continue
        out.extend(sorted(run))
        run = []
        out.append(entry)
    out.extend(sorted(run))
    return out


# --- reg query output -------------------------------------------------------------------


def to_oem(text):
    """text as Wine prints it to a pipe: in code page 437, '?' for what 437 lacks."""
    return text.encode("cp437", errors="replace").decode("cp437")


def canonical_query(stdout, wine, drop_types=("REG_QWORD",)):
    """`reg query` output as lines: CRs stripped, Wine's CP437 bytes decoded (ours, UTF-8
    bytes or text, is folded to what CP437 can show), lines of the types in drop_types
    removed (Wine 8.0 prints REG_QWORD data as "(null)"), and each key's value lines
    sorted."""
    if wine:
        text = stdout.decode("cp437")
    else:
        text = to_oem(stdout.decode("utf-8") if isinstance(stdout, bytes) else stdout)
    lines = text.replace("\r", "").split("\n")
    drop = tuple(f"{QUERY_INDENT}{t}{QUERY_INDENT}" for t in drop_types)
    out, run = [], []
    for line in lines:
        if line.startswith(QUERY_INDENT):
            if not any(d in line for d in drop):
                run.append(line)
            continue
        out.extend(sorted(run))
        run = []
        out.append(line)
    out.extend(sorted(run))
    return out


def wine_value_sort_key(name):
    """Wine's value order: case-insensitive (lower-case folding) by UTF-16 unit, the
    default value (name None or "") first."""
    return (name or "").lower()
