"""test_control.py - imsd's control socket ($IMS_ROOT/run/control) with a raw client: its mode,
the wire format (TAB-separated request, dot-stuffed body, .OK/.ERR), its limits (request size,
clients at once), and that it goes away with the service."""
import os
import shutil
import socket
import stat
import tempfile
import time

import pytest

from test_smtp import Service, free_port, WAIT

LIMIT = 64 * 1024    # IMSD_CTL_REQUEST_MAX
CLIENTS_MAX = 16     # IMSD_CTL_CLIENTS_MAX


def connect(root):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(WAIT)
    s.connect(os.path.join(root, "run", "control"))
    return s


def read_all(s):
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            # the server closed with our request unread (a refusal): what it sent came first
            return data
        if not chunk:
            return data
        data += chunk


def call(root, request):
    with connect(root) as s:
        s.sendall(request)
        return read_all(s)


@pytest.fixture
def svc():
    root = tempfile.mkdtemp(prefix="ims-ctl-")
    os.chmod(root, 0o755)
    s = None
    try:
        s = Service(root, free_port())
        yield s
    finally:
        if s:
            s.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_socket_mode_and_ping(svc):
    path = os.path.join(svc.root, "run", "control")
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    out = call(svc.root, b"ping\n")
    lines = out.decode().splitlines()
    assert lines[-1] == ".OK", out
    assert lines[0].startswith("imsd "), out
    assert f"pid {svc.pid()}" in lines[0]
    import pwd
    me = os.geteuid()
    assert lines[1] == f"client {pwd.getpwuid(me).pw_name} (uid {me})", out


def test_unknown_and_malformed(svc):
    assert call(svc.root, b"nosuch\targ\n") == b".ERR unknown command nosuch\n"
    assert call(svc.root, b"\n") == b".ERR empty request\n"
    # CRLF is taken as LF
    assert call(svc.root, b"ping\r\n").endswith(b".OK\n")
    # at most 4096 words (IMS_CTL_ARGS_MAX)
    assert call(svc.root, b"\t".join([b"ping"] * 4097) + b"\n") == \
        b".ERR too many words in the request\n"
    assert call(svc.root, b"\t".join([b"nosuch"] * 4096) + b"\n") == \
        b".ERR unknown command nosuch\n"


def test_request_too_long(svc):
    with connect(svc.root) as s:
        try:
            s.sendall(b"x" * (LIMIT + 10))
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert read_all(s) == b".ERR request too long\n"
    # one just below the limit is read whole (and is an unknown command)
    word = b"p" * 20 + b"\t" + b"a" * (LIMIT - 40)
    assert call(svc.root, word + b"\n").startswith(b".ERR unknown command ppp")


def test_clients_bounded(svc):
    held = []
    try:
        for _ in range(CLIENTS_MAX):
            held.append(connect(svc.root))
        # each held one is accepted before the next: ping through a fresh one is refused
        # once the 16 are in (the server takes them in order)
        extra = None
        for _ in range(50):
            extra = connect(svc.root)
            extra.sendall(b"ping\n")
            out = read_all(extra)
            extra.close()
            if out.startswith(b".ERR too many"):
                break
        assert out.startswith(b".ERR too many control clients"), out
    finally:
        for s in held:
            s.close()
    # the slots come back once the loop has seen them hang up
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        out = call(svc.root, b"ping\n")
        if out.endswith(b".OK\n"):
            break
        time.sleep(0.05)
    assert out.endswith(b".OK\n"), out


def test_socket_removed_at_stop(svc):
    path = os.path.join(svc.root, "run", "control")
    assert os.path.exists(path)
    svc.stop()
    assert not os.path.exists(path)
    with pytest.raises((FileNotFoundError, ConnectionRefusedError)):
        connect(svc.root)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another user")
@pytest.mark.parametrize("pause", [0, 0.2])
def test_stranger_refused(svc, pause):
    """The mode keeps strangers out; were it wider, SO_PEERCRED still would. The refusal
    reaches a client however late it sends its request (pause): the service keeps the socket
    until the request has come, so neither the client's write nor its read fails first."""
    path = os.path.join(svc.root, "run", "control")
    os.chmod(path, 0o666)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become uid 1 (daemon), ask, report what came back
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(1)
            os.setuid(1)
            with connect(svc.root) as s:
                time.sleep(pause)
                s.sendall(b"ping\n")
                out = read_all(s)
            os.write(w, out)
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read()
    os.waitpid(pid, 0)
    assert out == b".ERR permission denied\n"


def test_hang_up_mid_answer(svc):
    """A client that goes away while a stream (stats-history) or an answer is under way costs
    the service nothing: the next request is answered, and the clients' slots came back."""
    for _ in range(CLIENTS_MAX + 4):  # more than the slots: each one must be given back
        with connect(svc.root) as s:
            s.sendall(b"stats-history\n")
            s.recv(1)
        with connect(svc.root) as s:
            s.sendall(b"stats\n")
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        out = call(svc.root, b"ping\n")
        if out.endswith(b".OK\n"):
            break
        time.sleep(0.05)
    assert out.endswith(b".OK\n"), out
    out = call(svc.root, b"stats-history\n")
    assert out.startswith(b"time\t") and out.endswith(b"\n.OK\n"), out[-200:]
