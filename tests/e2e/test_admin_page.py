"""test_admin_page.py - the administrator's page served by imsd on MetricsAddress: the page,
its assets and JSON APIs over urllib (state, settings, the queues with a message a peer holds
with 451 and its reply, counters, events); the Host check against DNS rebinding; actions
refused without or with a wrong password or token (403, event 1007), with a bad CSRF nonce, a
foreign Origin or Host, the wrong method or content type; accepted with the token and with
the administrator mailbox's password, recorded as "web 127.0.0.1 (token)". Then a real
browser: headless Chromium over WebDriver (chromedriver, plain HTTP from urllib) loads the
page, the token is typed in, "hold" is clicked, the queue changes; a screenshot is saved.

Waits are bounded (test_smtp.WAIT); nothing measures time."""
import base64
import json
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import urllib.error
import urllib.request

import pytest

from conftest import IMS_BIN, REPO
from outbound_world import Rule, message, send, tracking, world  # noqa: F401
from test_smtp import WAIT, Service, free_port, run, wait_for

ZONE = """
remote.test      MX 10 mx1.remote.test
mx1.remote.test  A  127.0.0.2
"""
HOLD_451 = "451 4.3.0 Try again later, greylisted"
SLOW_RETRY = "1"  # an hour: only an action brings the message back
PASSWORD = "Admin page password 1"


class Page:
    """The page's endpoint of one service."""

    def __init__(self, svc, port):
        self.svc, self.port = svc, port
        self.base = "http://127.0.0.1:%d" % port

    def request(self, path, data=None, headers=None, method=None):
        """(status, headers, body bytes); HTTP errors are answers too."""
        req = urllib.request.Request(self.base + path, data=data, headers=headers or {},
                                     method=method)
        try:
            with urllib.request.urlopen(req, timeout=WAIT) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def json(self, path):
        status, _, body = self.request(path)
        assert status == 200, (path, status, body)
        return json.loads(body)

    def nonce(self):
        status, _, body = self.request("/")
        assert status == 200
        m = re.search(rb'<meta name="csrf" content="([0-9a-f]{32})">', body)
        assert m, body[:400]
        return m.group(1).decode()

    def token(self):
        with open(os.path.join(self.svc.root, "run", "admin.token")) as f:
            return f.read().strip()

    def act(self, id, action, secret, nonce=None, origin=None, host=None, ctype=None,
            body=None):
        fields = {"id": id, "action": action, "csrf": nonce or self.nonce(), "secret": secret}
        h = {"Content-Type": ctype or "application/json",
             "Origin": origin if origin is not None else self.base}
        if origin == "":
            del h["Origin"]
        if host:
            h["Host"] = host
        data = body if body is not None else json.dumps(fields).encode()
        status, _, out = self.request("/api/queue-action", data=data, headers=h, method="POST")
        return status, (json.loads(out) if out.startswith(b"{") else out)

    def out(self):
        return [m for m in self.json("/api/queues")["messages"] if m["queue"] == "Out"]


def held_service(world, params=()):
    """A service relaying to a peer that answers 451, its page, and the message in Out once
    it was tried."""
    world.dns(ZONE)
    world.peer("127.0.0.2", rules=[Rule("rcpt", HOLD_451)])
    port = free_port()
    svc = world.service(retry=SLOW_RETRY,
                        params=[("MetricsAddress", "REG_SZ", "127.0.0.1:%d" % port), *params])
    page = Page(svc, port)
    send(svc, "alice@example.com", ["x@remote.test"], message("held by the peer"))

    def tried():
        ms = page.out()
        return ms if ms and ms[0]["recipients"][0]["attempts"] >= 1 else None
    [m] = wait_for(tried, "the message deferred in Out")
    return svc, page, m


def test_the_page_its_assets_and_apis(world):
    svc, page, m = held_service(world)
    status, headers, body = page.request("/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    csp = headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp
    assert headers["X-Frame-Options"] == "DENY"
    assert b"<script src=\"/admin.js\"" in body and b"<script>" not in body
    assert page.nonce() != page.nonce()  # one per page served
    for path, kind in (("/admin.js", "text/javascript"), ("/admin.css", "text/css")):
        status, headers, body = page.request(path)
        assert status == 200 and headers["Content-Type"].startswith(kind) and body
    # The page's files are the ones in data/admin, byte for byte.
    with open(os.path.join(REPO, "data", "admin", "admin.js"), "rb") as f:
        assert page.request("/admin.js")[2] == f.read()

    st = page.json("/api/state")
    assert st["pid"] > 0 and st["uptime"] >= 0 and st["profile"]
    assert st["web"] == "127.0.0.1:%d" % page.port
    assert str(svc.port) in st["listeners"]
    settings = {s["name"]: s["value"] for s in st["settings"]}
    assert settings["MetricsAddress"] == "127.0.0.1:%d" % page.port
    assert settings["RetryInterval"] == SLOW_RETRY
    assert "RelayAllowList" in settings and "MaxInboundConnections" in settings

    q = page.json("/api/queues")
    assert q["limit"] == 1000 and q["truncated"] is False and q["count"] == 1
    [got] = q["messages"]
    assert got["queue"] == "Out" and got["id"] == m["id"]
    [r] = got["recipients"]
    assert r["address"] == "x@remote.test" and r["reply"] == HOLD_451
    assert r["remote"] == "[127.0.0.2]" and r["next_try"] > 0

    s = page.json("/api/stats")
    assert "messages_received_total" in s["keys"] and s["samples"]
    i = s["keys"].index("messages_received_total")
    # A sample a second: the one after the message was received counts it.
    def counted():
        x = page.json("/api/stats")
        return x if x["samples"][-1][i + 2] == 1 else None
    s = wait_for(counted, "the message in the counters' history")
    newest = s["samples"][-1][0]
    later = page.json("/api/stats?since=%d" % newest)
    assert all(x[0] > newest for x in later["samples"])

    evs = page.json("/api/events")
    assert any(e["id"] == 1000 for e in evs), evs  # started
    last = evs[-1]["seq"]
    assert page.json("/api/events?since=%d" % last) == []

    assert page.request("/nothing")[0] == 404
    assert page.request("/metrics")[0] == 200  # still there


def test_host_check_against_dns_rebinding(world):
    svc, page, m = held_service(world)
    for host in ("localhost:%d" % page.port, "[::1]:%d" % page.port):
        assert page.request("/api/state", headers={"Host": host})[0] == 200
    for host in ("evil.example:%d" % page.port, "127.0.0.1:1", "localhost.evil.example"):
        for path in ("/", "/api/queues", "/admin.js"):
            status, _, body = page.request(path, headers={"Host": host})
            assert status == 403, (host, path, status)
            assert b"Host" in body
    status, out = page.act(m["id"], "hold", page.token(), host="evil.example:%d" % page.port)
    assert status == 403
    assert not page.out()[0]["held"]


def test_actions_refused(world):
    svc, page, m = held_service(world)
    id = m["id"]
    token = page.token()
    # No credential, a wrong one: 403 and an event each (the answer waits longer each time).
    for secret in ("", "not the token"):
        status, out = page.act(id, "hold", secret)
        assert status == 403 and out["ok"] is False and "password or token" in out["error"]
    evs = [e for e in page.json("/api/events") if e["id"] == 1007]
    assert len(evs) == 2 and "hold message %s" % id in evs[0]["text"], evs
    # A nonce the service never issued.
    status, out = page.act(id, "hold", token, nonce="0" * 32)
    assert status == 403 and "CSRF" in out["error"]
    # A foreign Origin; no Origin nor Referer; a foreign Referer.
    assert page.act(id, "hold", token, origin="http://evil.example")[0] == 403
    assert page.act(id, "hold", token, origin="")[0] == 403
    status, _ = page.act(id, "hold", token, origin="null")
    assert status == 403
    # The body: another content type, not JSON, a missing field, an unknown action.
    assert page.act(id, "hold", token, ctype="text/plain")[0] == 415
    assert page.act(id, "hold", token, body=b"{not json")[0] == 400
    assert page.act(id, "hold", token, body=b'{"id":"x","action":"hold"}')[0] == 400
    assert page.act(id, "explode", token)[0] == 400
    assert page.act(id, "hold", token, body=b"x" * 5000)[0] == 413
    # The method: GET on the action route, POST on a page.
    assert page.request("/api/queue-action")[0] == 405
    assert page.request("/api/state", data=b"{}", method="POST")[0] == 405
    assert page.act(id, "hold", token, body=b"{}", ctype="application/json")[0] == 400
    # Nothing changed.
    [m2] = page.out()
    assert m2["held"] is False and m2["recipients"][0]["state"] == "waiting"


def test_token_file_and_actions_with_the_token(world):
    svc, page, m = held_service(world)
    path = os.path.join(svc.root, "run", "admin.token")
    st = os.stat(path)
    # Owned by the service account (root's test runs it as nobody), readable by it only.
    account = page.json("/api/state")["account"]
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == pwd.getpwnam(account).pw_uid
    token = page.token()
    assert re.fullmatch(r"[0-9a-f]{64}", token)

    status, out = page.act(m["id"], "hold", token)
    assert status == 200 and out["ok"] is True and out["text"].startswith("held"), out
    [h] = page.out()
    assert h["held"] is True
    status, out = page.act(m["id"], "hold", token)
    assert status == 409 and out["ok"] is False and "held already" in out["error"]
    # A form works as well as JSON.
    form = "id=%s&action=release&csrf=%s&secret=%s" % (m["id"], page.nonce(), token)
    status, out = page.act(m["id"], "release", token, body=form.encode(),
                           ctype="application/x-www-form-urlencoded")
    assert status == 200 and out["ok"] is True, out
    assert page.out()[0]["held"] is False
    # The actor in the tracking log is the page, with the peer and how it logged on.
    def acted():
        text = "".join(tracking(svc))
        return text if "web 127.0.0.1 (token)" in text else None
    wait_for(acted, "the page's actions in the tracking log")
    status, out = page.act("NOSUCHQUEUEID", "retry", token)
    assert status == 409 and "not in a queue" in out["error"]
    # Deleting with an NDR empties Out.
    status, out = page.act(m["id"], "delete-ndr", token)
    assert status == 200 and out["ok"] is True, out
    wait_for(lambda: not page.out() or None, "Out empty")
    svc.stop()
    assert not os.path.exists(path)  # a clean stop removes the token


def test_action_with_the_administrators_password(world):
    svc, page, m = held_service(world, params=[("AdministratorMailbox", "REG_SZ", "alice")])
    p = subprocess.run([os.path.join(IMS_BIN, "imsadm"), "mailbox", "password", "alice"],
                       input=PASSWORD + "\n", env=svc.env, text=True, capture_output=True,
                       timeout=WAIT)
    assert p.returncode == 0, p.stderr
    status, out = page.act(m["id"], "hold", "not " + PASSWORD)
    assert status == 403
    status, out = page.act(m["id"], "hold", PASSWORD)
    assert status == 200 and out["ok"] is True, out
    assert page.out()[0]["held"] is True
    wait_for(lambda: "web 127.0.0.1 (password)" in "".join(tracking(svc)) or None,
             "the password's action in the tracking log")


# --- a real browser ----------------------------------------------------------------------

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


class WebDriver:
    """The W3C WebDriver protocol over plain HTTP (urllib) to a chromedriver we start."""

    def __init__(self, tmp):
        self.port = free_port()
        self.log = open(os.path.join(tmp, "chromedriver.log"), "w")
        self.proc = subprocess.Popen([CHROMEDRIVER, "--port=%d" % self.port],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.base = "http://127.0.0.1:%d" % self.port
        self.session = None
        self.profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp)
        wait_for(self._up, "chromedriver listening")

    def _up(self):
        try:
            return self.call("GET", "/status")["ready"] or None
        except OSError:
            return None

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=WAIT) as r:
                return json.loads(r.read())["value"]
        except urllib.error.HTTPError as e:
            raise AssertionError("WebDriver %s %s: %s" % (method, path, e.read()[:500]))

    def start(self):
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--user-data-dir=" + self.profile]}}}}
        self.session = self.call("POST", "/session", caps)["sessionId"]

    def s(self, path):
        return "/session/%s%s" % (self.session, path)

    def go(self, url):
        self.call("POST", self.s("/url"), {"url": url})

    def find(self, css):
        """The element for css, or None."""
        els = self.call("POST", self.s("/elements"), {"using": "css selector", "value": css})
        return list(els[0].values())[0] if els else None

    def text(self, el):
        return self.call("GET", self.s("/element/%s/text" % el))

    def send_keys(self, el, text):
        self.call("POST", self.s("/element/%s/value" % el), {"text": text})

    def click(self, el):
        self.call("POST", self.s("/element/%s/click" % el), {})

    def screenshot(self, path):
        png = base64.b64decode(self.call("GET", self.s("/screenshot")))
        with open(path, "wb") as f:
            f.write(png)

    def close(self):
        try:
            if self.session:
                self.call("DELETE", self.s(""))
        except (AssertionError, OSError):
            pass
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.log.close()


@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get("CI"):
            pytest.fail("chromium or chromedriver is missing in CI (tools/deps.sh installs them)")
        pytest.skip("chromium and chromium-driver are not installed")
    d = WebDriver(str(tmp_path))
    try:
        d.start()
        yield d
    finally:
        d.close()


def test_in_chromium_hold_through_the_page(world, browser, tmp_path):
    svc, page, m = held_service(world)
    id = m["id"]
    # A few seconds of history first, so that the charts in the screenshot have lines.
    wait_for(lambda: len(page.json("/api/stats")["samples"]) >= 4 or None, "4 samples")
    browser.go(page.base + "/")
    # The page shows the message with the peer's reply, filled in by admin.js.
    def shown():
        row = browser.find('tr[data-id="%s"]' % id)
        return row if row and HOLD_451 in browser.text(row) else None
    wait_for(shown, "the held message with its reply on the page")
    assert "pid" in browser.text(browser.find("#service"))
    browser.send_keys(browser.find("#secret"), page.token())
    browser.click(browser.find('button[data-id="%s"][data-action="hold"]' % id))
    wait_for(lambda: page.out()[0]["held"] or None, "the message held through the page")
    def said():
        t = browser.text(browser.find("#status"))
        return t if "held" in t else None
    assert id in wait_for(said, "the page's answer")
    wait_for(lambda: "held" in browser.text(browser.find('tr[data-id="%s"]' % id)) or None,
             "the page showing it held")
    shot = tmp_path / "admin-page.png"
    browser.screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = os.path.join(REPO, "build", "test-output")
    os.makedirs(out, exist_ok=True)
    shutil.copy(str(shot), os.path.join(out, "admin-page.png"))
    print("screenshot: %s (and %s)" % (shot, os.path.join(out, "admin-page.png")))


def test_clients_that_go_away_before_their_answer():
    """A wrong token's answer waits; a client that hangs up meanwhile (and one that hangs up
    during a listing, or sends half a request) leaves nothing behind: the service answers the
    next client and stops cleanly (exit 0; under SAN=1 no sanitizer report on its stderr)."""
    root = tempfile.mkdtemp(prefix="ims-admin-")  # /tmp: the service account must enter it
    os.chmod(root, 0o755)
    port = free_port()
    svc = Service(root, free_port(), extra_params=[("MetricsAddress", "REG_SZ",
                                                     "127.0.0.1:%d" % port)], start=False)
    p = svc.start_console()
    try:
        page = Page(svc, port)
        nonce, host = page.nonce(), "127.0.0.1:%d" % port
        body = json.dumps({"id": "X", "action": "hold", "csrf": nonce, "secret": "wrong"})
        for request in (
                "POST /api/queue-action HTTP/1.1\r\nHost: %s\r\nOrigin: http://%s\r\n"
                "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (host, host, len(body), body),
                "GET /api/queues HTTP/1.1\r\nHost: %s\r\n\r\n" % host,
                "POST /api/queue-action HTTP/1.1\r\nHost: %s\r\nContent-Length: 100\r\n\r\n{"
                % host):
            with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
                s.sendall(request.encode())
        status, out = page.act("X", "hold", "still wrong")
        assert status == 403
        assert page.json("/api/state")["pid"] == svc.pid()
    finally:
        err = svc.stop_console(p)
        shutil.rmtree(root, ignore_errors=True)
    assert p.returncode == 0, err
    assert "Sanitizer" not in err and "runtime error" not in err, err
