"""test_diagnostics.py - the Diagnostics Logging levels and the logging values of Parameters
take effect while imsd runs (issue 13): `imsctl diagnostics` writes the registry, the running
service follows the change notification, logs event 1005 and starts or stops the SMTP protocol
log for new sessions; an invalid value keeps the level in use (event 4086).

Each test runs its own imsd -console (events on its stderr, read by a thread as they come) on
a private IMS_ROOT and a free port, and stops it at teardown."""
import glob
import os
import shutil
import smtplib
import subprocess
import tempfile
import threading

import pytest

from conftest import IMS_BIN
from test_smtp import WAIT, Service, free_port, run, wait_for

DIAG_KEY = r"HKLM\System\CurrentControlSet\Services\MSExchangeIMC\Diagnostics"
PAR_KEY = r"HKLM\System\CurrentControlSet\Services\MSExchangeIMC\Parameters"


class Live:
    """A running imsd (-console unless console=False) whose stderr lines collect in
    self.lines and stdout lines in self.out."""

    def __init__(self, console=True):
        self.root = tempfile.mkdtemp(prefix="ims-diag-")
        os.chmod(self.root, 0o755)
        self.svc = Service(self.root, free_port(), start=False)
        self.lines = []
        self.out = []
        self.lock = threading.Lock()
        args = [os.path.join(IMS_BIN, "imsd")] + (["-console"] if console else [])
        self.proc = subprocess.Popen(args, env=self.svc.env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.readers = [threading.Thread(target=self._read, args=(self.proc.stderr, self.lines),
                                         daemon=True),
                        threading.Thread(target=self._read, args=(self.proc.stdout, self.out),
                                         daemon=True)]
        for r in self.readers:
            r.start()
        status = os.path.join(self.root, "run", "imsd.status")
        wait_for(lambda: os.path.exists(status) or self.proc.poll() is not None, "imsd ready")
        assert self.proc.poll() is None, self.text()

    def _read(self, stream, into):
        for line in stream:  # ends at EOF, when imsd has exited
            with self.lock:
                into.append(line.rstrip("\n"))

    def text(self):
        with self.lock:
            return "\n".join(self.lines)

    def wait_event(self, event_id, *parts):
        """The first event line with this id holding every part (bounded wait)."""
        def found():
            with self.lock:
                for l in self.lines:
                    if f"Event {event_id} (" in l and all(p in l for p in parts):
                        return l
            return None
        try:
            return wait_for(found, f"event {event_id} with {parts}")
        except AssertionError:
            raise AssertionError(f"no event {event_id} with {parts} in:\n{self.text()}")

    def count_events(self, event_id):
        with self.lock:
            return sum(f"Event {event_id} (" in l for l in self.lines)

    def imsctl(self, *args):
        return run("imsctl", *args, env=self.svc.env, check=False)

    def reg_add(self, key, name, typ, data):
        run("reg", "add", key, "/v", name, "/t", typ, "/d", data, "/f", env=self.svc.env)

    def logs(self):
        """The SMTP protocol log's files and their text."""
        out = {}
        for p in sorted(glob.glob(os.path.join(self.root, "imcdata", "Log", "L*.LOG"))):
            with open(p, encoding="utf-8", errors="replace") as f:
                out[p] = f.read()
        return out

    def log_text(self):
        """All of the log, lower-cased (smtplib writes its commands so: "ehlo")."""
        return "".join(self.logs().values()).lower()

    def session(self, helo, message=None):
        """One SMTP session: EHLO helo, a message to alice when given, QUIT (its 221 read)."""
        with smtplib.SMTP("127.0.0.1", self.svc.port, timeout=WAIT) as c:
            assert c.ehlo(helo)[0] == 250
            if message is not None:
                c.sendmail("sender@remote.test", ["alice@example.com"], message)

    def stop(self):
        """Stop imsd and read what it wrote to the end."""
        self.svc.stop()
        try:
            self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for r in self.readers:
            r.join(timeout=WAIT)

    def close(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        # A clean stop (under SAN=1 also: no sanitizer report on stderr).
        assert self.proc.returncode == 0, self.text()
        assert "Sanitizer" not in self.text(), self.text()


@pytest.fixture
def live():
    lv = Live()
    try:
        yield lv
    finally:
        lv.close()


@pytest.fixture
def quiet():
    """imsd without -console: events go to syslog only, until DisplayErrsOnConsole says."""
    lv = Live(console=False)
    try:
        yield lv
    finally:
        lv.close()


def test_protocol_log_on_and_off_without_restart(live):
    pid = live.svc.pid()
    # Off by default: a session writes no log.
    live.session("before.test")
    assert "before.test" not in live.log_text()

    p = live.imsctl("diagnostics", "smtp-protocol-log", "maximum")
    assert p.returncode == 0, p.stderr
    assert "SMTP Protocol Log" in p.stdout and "5 Maximum" in p.stdout
    live.wait_event(1005, "Diagnostics logging: SMTP Protocol Log None -> Maximum")
    # The level is applied on the loop before the event: the next session is logged, at
    # Maximum with its content. Bounded polling for the last records.
    live.session("during.test", b"Subject: logged\r\n\r\nmarker-body-line\r\n")
    wait_for(lambda: "\td\tmarker-body-line" in live.log_text(), "the content in the log")
    text = live.log_text()
    assert "\t<\tehlo during.test" in text
    assert "\t+\tconnection from 127.0.0.1:" in text
    assert live.svc.wait_mail("alice", 1)
    assert live.svc.pid() == pid  # the same process: no restart

    p = live.imsctl("diagnostics", "SMTP Protocol Log", "none")
    assert p.returncode == 0, p.stderr
    live.wait_event(1005, "SMTP Protocol Log Maximum -> None")
    connections = live.log_text().count("\t+\t")
    # Its "+" record would be written before the greeting and its EHLO before the reply:
    # once the 221 is read, a logged session would show.
    live.session("after.test", b"Subject: unlogged\r\n\r\nsecond-body-line\r\n")
    live.svc.wait_mail("alice", 2)
    text = live.log_text()
    assert "after.test" not in text and "second-body-line" not in text
    assert text.count("\t+\t") == connections
    assert live.svc.pid() == pid


def test_invalid_value_keeps_the_level(live):
    p = live.imsctl("diagnostics", "protolog", "3")
    assert p.returncode == 0, p.stderr
    live.wait_event(1005, "SMTP Protocol Log None -> Medium")

    live.reg_add(DIAG_KEY, "SMTP Protocol Log", "REG_DWORD", "9")
    live.wait_event(4086, "SMTP Protocol Log", "out of range", "the value in use, 3, stays")
    live.session("still.medium")
    wait_for(lambda: "\t<\tehlo still.medium" in live.log_text(), "the session at Medium")
    # The list shows what the registry holds, and says it is not used.
    p = live.imsctl("diagnostics")
    assert p.returncode == 0, p.stderr
    line = [l for l in p.stdout.splitlines() if l.startswith("SMTP Protocol Log")]
    assert line and "9 invalid" in line[0], p.stdout

    live.reg_add(DIAG_KEY, "SMTP Protocol Log", "REG_SZ", "5")
    live.wait_event(4086, "SMTP Protocol Log", "not a REG_DWORD")
    live.session("medium.again")
    wait_for(lambda: "\t<\tehlo medium.again" in live.log_text(), "still at Medium")
    assert "\td\t" not in live.log_text()  # never Maximum: no content
    # No change event for an invalid value, and each bad value told once: another value
    # of the key changing does not repeat it.
    assert live.count_events(1005) == 1
    bad = live.count_events(4086)
    p = live.imsctl("diagnostics", "addressing", "minimum")
    assert p.returncode == 0, p.stderr
    live.wait_event(1005, "Addressing None -> Minimum")
    assert live.count_events(4086) == bad


def test_bad_arguments(live):
    p = live.imsctl("diagnostics", "loudness", "maximum")
    assert p.returncode == 2
    assert 'no category "loudness"' in p.stderr
    for name in ("SMTP Protocol Log", "smtp-protocol-log", "protocol-log", "Message Archival"):
        assert name in p.stderr, p.stderr
    p = live.imsctl("diagnostics", "protocol-log", "loud")
    assert p.returncode == 2
    assert 'no level "loud"' in p.stderr and "none, minimum" in p.stderr, p.stderr
    p = live.imsctl("diagnostics", "protocol-log", "6")
    assert p.returncode == 2
    p = live.imsctl("diagnostics", "protocol-log", "5", "extra")
    assert p.returncode == 2
    # Nothing was written.
    p = live.imsctl("diagnostics", "protocol-log")
    assert p.returncode == 0 and "0 None" in p.stdout, p.stdout


def test_logging_parameters_live(live):
    live.reg_add(PAR_KEY, "ConsoleStatFrequency", "REG_DWORD", "1")
    live.wait_event(1005, "ConsoleStatFrequency 14 -> 1")
    live.reg_add(PAR_KEY, "ConsoleStatFrequency", "REG_DWORD", "0")
    live.wait_event(4086, "ConsoleStatFrequency", "the value in use, 1, stays")
    # Other Parameters still wait for a start; SIGHUP says which ones do not.
    live.proc.send_signal(1)
    live.wait_event(1002, "take effect at the next start", "apply at once")


def test_console_mode_follows_display_errs(quiet):
    assert quiet.text() == ""  # no console: nothing on stderr
    quiet.reg_add(PAR_KEY, "ConsoleStatFrequency", "REG_DWORD", "1")
    quiet.reg_add(PAR_KEY, "DisplayErrsOnConsole", "REG_DWORD", "10")
    # Console mode on: the event that says so is the first on stderr, and statistics follow
    # every ConsoleStatFrequency seconds.
    quiet.wait_event(1005, "DisplayErrsOnConsole 0 -> 10")
    def stats():
        with quiet.lock:
            return any("statistics at" in l for l in quiet.out)
    wait_for(stats, "the console's statistics on stdout")

    # Off again: later events go to syslog only. The protocol log's level is a barrier: it
    # is applied on the loop, with its event, before the next session runs.
    quiet.reg_add(PAR_KEY, "DisplayErrsOnConsole", "REG_DWORD", "0")
    wait_for(lambda: quiet.imsctl("diagnostics", "protolog", "minimum").returncode == 0, "set")
    def logged():
        quiet.session("barrier.test")
        return "\t+\t" in quiet.log_text()
    wait_for(logged, "a session logged at Minimum")
    quiet.stop()
    assert "DisplayErrsOnConsole 10 -> 0" not in quiet.text()
    assert "SMTP Protocol Log" not in quiet.text()
    assert "Event 1001" not in quiet.text()  # the stop, too, went to syslog only
