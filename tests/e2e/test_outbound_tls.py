"""test_outbound_tls.py - outbound STARTTLS and AUTH end to end: imsd relays to a smart host
(tests/smtp_peer.py with Python's ssl module) under each TlsPolicy -- none, may, encrypt,
verify (against the test PKI of tests/tls_certs.py: a good, a wrong-name, an expired and a
self-signed certificate) -- and authenticates with PLAIN or LOGIN from the credentials file,
never in plain text. What the peer saw (TLS version, AUTH user, the commands) and what imsd
recorded (the tracking log's TLS field, the queue file's defer records) are asserted."""
import os
import pwd
import shutil
import sys
import tempfile

import pytest

from conftest import REPO
from outbound_world import message, send, tracked, wait_out_empty, world  # noqa: F401
from test_smtp import run, wait_for

sys.path.insert(0, os.path.join(REPO, "tests"))
from tls_certs import make_pki  # noqa: E402

FAST_RETRY = ".0003"  # hours: about 1 s between tries
HOST = "127.0.0.5"
ROUTING = r"HKLM\System\CurrentControlSet\Services\MSExchangeIMC\Parameters\Routing"


@pytest.fixture(scope="module")
def pki():
    # Readable by the service account (nobody, when the tests run as root).
    d = tempfile.mkdtemp(prefix="ims-pki-")
    os.chmod(d, 0o755)
    try:
        yield make_pki(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def smart(world, policy, params=(), **kw):
    """imsd with SmartHost [127.0.0.5]:<port> and TlsPolicy policy."""
    p = [("TlsPolicy", "REG_SZ", policy)] + list(params)
    return world.service(dns=False, smarthost="[%s]:%d" % (HOST, world.outport), params=p,
                         retry=FAST_RETRY, **kw)


def tls_field(svc, addr):
    """The TLS field (the ninth) of addr's 1011 tracking lines."""
    return [l.split("\t")[8] for l in tracked(svc, 1011, addr)]


def queue_text(svc):
    d = os.path.join(svc.root, "imcdata", "Out")
    out = ""
    for name in os.listdir(d) if os.path.isdir(d) else []:
        p = os.path.join(d, name)
        if os.path.isfile(p):
            with open(p, "rb") as f:
                out += f.read().decode("latin-1")
    return out


def mail_commands(peer):
    return [c for c in peer.commands() if c.upper().startswith("MAIL")]


def delivered_tls(world, svc, peer, subject):
    send(svc, "alice@example.com", ["x@remote.test"], message(subject))
    [m] = peer.wait_messages(1)
    wait_out_empty(svc)
    wait_for(lambda: tls_field(svc, "x@remote.test"), "a 1011 tracking line")
    return m


# --- policies -------------------------------------------------------------------------------


def test_may_offered_goes_over_tls(world, pki):
    peer = world.peer(HOST, tls=(pki.chain, pki.key))
    svc = smart(world, "may")
    m = delivered_tls(world, svc, peer, "may tls")
    assert m["tls"] == "TLSv1.3", m
    [field] = tls_field(svc, "x@remote.test")
    assert field.startswith("TLSv1.3 TLS_"), field
    # STARTTLS, then EHLO again; MAIL only under TLS.
    cmds = [c.split()[0].upper() for c in peer.commands()]
    assert cmds[:3] == ["EHLO", "STARTTLS", "EHLO"], cmds


def test_may_not_offered_goes_plain(world):
    peer = world.peer(HOST)
    svc = smart(world, "may")
    m = delivered_tls(world, svc, peer, "may plain")
    assert m["tls"] is None
    assert tls_field(svc, "x@remote.test") == ["plain"]


def test_none_never_starttls(world, pki):
    peer = world.peer(HOST, tls=(pki.chain, pki.key))
    svc = smart(world, "none")
    m = delivered_tls(world, svc, peer, "none")
    assert m["tls"] is None
    assert not [c for c in peer.commands() if c.upper() == "STARTTLS"]


def test_may_failed_handshake_retries_plain(world):
    # The peer closes right after its 220: the handshake fails; the same host gets the
    # message in plain text on the next connection, without STARTTLS.
    peer = world.peer(HOST, tls_break=True)
    svc = smart(world, "may")
    m = delivered_tls(world, svc, peer, "may broken")
    assert m["tls"] is None
    starttls = [c for c in peer.commands() if c.upper() == "STARTTLS"]
    assert len(starttls) == 1, peer.commands()


def test_encrypt_without_starttls_defers(world):
    peer = world.peer(HOST)
    svc = smart(world, "encrypt")
    send(svc, "alice@example.com", ["x@remote.test"], message("encrypt none"))
    wait_for(lambda: "4.7.4" in queue_text(svc), "a 4.7.4 defer record")
    assert "TLS is required by policy but the server does not offer STARTTLS" in queue_text(svc)
    assert mail_commands(peer) == [], "MAIL was sent in plain text"
    assert peer.messages() == []


def test_encrypt_self_signed_delivered(world, pki):
    peer = world.peer(HOST, tls=(pki.self_cert, pki.self_key))
    svc = smart(world, "encrypt")
    m = delivered_tls(world, svc, peer, "encrypt self")
    assert m["tls"] == "TLSv1.3"


def test_verify_good_ca_delivered(world, pki):
    peer = world.peer(HOST, tls=(pki.chain, pki.key))
    svc = smart(world, "verify", [("TlsCaFile", "REG_SZ", pki.ca)])
    m = delivered_tls(world, svc, peer, "verify good")
    assert m["tls"] == "TLSv1.3"


def test_verify_wrong_name_defers_then_delivers(world, pki):
    peer = world.peer(HOST, tls=(pki.wrong_cert, pki.wrong_key))
    svc = smart(world, "verify", [("TlsCaFile", "REG_SZ", pki.ca)])
    send(svc, "alice@example.com", ["x@remote.test"], message("verify wrong"))
    wait_for(lambda: "4.7.5" in queue_text(svc), "a 4.7.5 defer record")
    assert "hostname mismatch" in queue_text(svc) or "IP address mismatch" in queue_text(svc), \
        queue_text(svc)
    assert mail_commands(peer) == [] and peer.messages() == []
    # The right certificate now (the peer at the same address): delivered on a retry.
    peer.stop()
    good = world.peer(HOST, tls=(pki.chain, pki.key))
    [m] = good.wait_messages(1, timeout=30)
    assert m["tls"] == "TLSv1.3"
    wait_out_empty(svc)


def test_verify_expired_defers(world, pki):
    peer = world.peer(HOST, tls=(pki.expired_cert, pki.expired_key))
    svc = smart(world, "verify", [("TlsCaFile", "REG_SZ", pki.ca)])
    send(svc, "alice@example.com", ["x@remote.test"], message("verify expired"))
    wait_for(lambda: "certificate has expired" in queue_text(svc), "an expired-certificate defer")
    assert "4.7.5" in queue_text(svc)
    assert mail_commands(peer) == [] and peer.messages() == []


def test_routing_entry_policy_overrides(world, pki):
    # Parameters say none; the routing entry for remote.test says verify with its CA file.
    peer = world.peer(HOST, tls=(pki.chain, pki.key))
    svc = world.service(dns=False, retry=FAST_RETRY, params=[("TlsPolicy", "REG_SZ", "none")])
    svc.stop()
    key = ROUTING + r"\remote.test"
    for name, data in (("Host", "[%s]:%d" % (HOST, world.outport)), ("TlsPolicy", "verify"),
                       ("TlsCaFile", pki.ca)):
        run("reg", "add", key, "/v", name, "/t", "REG_SZ", "/d", data, "/f", env=svc.env)
    svc.start()
    m = delivered_tls(world, svc, peer, "routing verify")
    assert m["tls"] == "TLSv1.3"


# --- AUTH ------------------------------------------------------------------------------------


def write_creds(svc, text, mode=0o600):
    path = os.path.join(svc.root, "ClientCredentials")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    if os.geteuid() == 0:  # the service account reads it: imsd runs as nobody
        os.chown(path, pwd.getpwnam("nobody").pw_uid, -1)
    return path


def auth_service(world, creds, mode=0o600, policy="may", console=False):
    svc = world.service(dns=False, smarthost="[%s]:%d" % (HOST, world.outport),
                        retry=FAST_RETRY, params=[("TlsPolicy", "REG_SZ", policy)])
    svc.stop()
    write_creds(svc, creds, mode)
    if console:
        return svc, svc.start_console()
    svc.start()
    return svc, None


@pytest.mark.parametrize("login", [False, True])
def test_auth_over_tls(world, pki, login):
    spec = "[%s]:%d" % (HOST, world.outport)
    peer = world.peer(HOST, tls=(pki.chain, pki.key), auth={"relay": "s3cret pass"},
                      auth_required=True, auth_mechs=("LOGIN",) if login else ("PLAIN", "LOGIN"))
    svc, _ = auth_service(world, "# smart host\n%s relay s3cret pass\n" % spec)
    m = delivered_tls(world, svc, peer, "auth")
    assert m["auth"] == "relay" and m["tls"] == "TLSv1.3"
    # The protocol log and the queue never hold the password.
    for dirpath, _, files in os.walk(svc.root):
        for f in files:
            if f == "ClientCredentials" or not os.path.isfile(os.path.join(dirpath, f)):
                continue  # (run/control is a socket: nothing to read)
            with open(os.path.join(dirpath, f), "rb") as fh:
                assert b"s3cret" not in fh.read(), os.path.join(dirpath, f)


def test_auth_never_in_plain_text(world):
    spec = "[%s]:%d" % (HOST, world.outport)
    peer = world.peer(HOST, auth={"relay": "pw"}, auth_tls_only=False, auth_required=True)
    svc, _ = auth_service(world, "%s relay pw\n" % spec)
    send(svc, "alice@example.com", ["x@remote.test"], message("auth plain"))
    wait_for(lambda: "credentials are never sent in plain text" in queue_text(svc),
             "the defer record saying why")
    assert not [c for c in peer.commands() if c.upper().startswith("AUTH")]
    assert mail_commands(peer) == []


def test_auth_bad_credentials_transient(world, pki):
    spec = "[%s]:%d" % (HOST, world.outport)
    peer = world.peer(HOST, tls=(pki.chain, pki.key), auth={"relay": "right"},
                      auth_required=True)
    svc, _ = auth_service(world, "%s relay wrong\n" % spec)
    send(svc, "alice@example.com", ["x@remote.test"], message("auth bad"))
    wait_for(lambda: "535 5.7.8" in queue_text(svc), "535 kept in a defer record")
    assert "\ndefer " in queue_text(svc) and "\nfail " not in queue_text(svc)
    assert mail_commands(peer) == []


def test_credentials_file_open_to_others_refused(world, pki):
    spec = "[%s]:%d" % (HOST, world.outport)
    peer = world.peer(HOST, tls=(pki.chain, pki.key), auth={"relay": "pw"})
    svc, p = auth_service(world, "%s relay pw\n" % spec, mode=0o644, console=True)
    try:
        send(svc, "alice@example.com", ["x@remote.test"], message("creds 644"))
        [m] = peer.wait_messages(1)
        assert m["auth"] is None  # the peer did not require it; we did not offer ours
    finally:
        err = svc.stop_console(p)
    assert "4161" in err and "chmod 600" in err, err


# --- by MX, and against another implementation -----------------------------------------------


def test_verify_by_mx_name(world, pki):
    # DNS route: the name checked (and sent as SNI) is the exchanger's, mail.example.test,
    # which the good certificate has; mx1.other.test is not in it.
    world.dns("remote.test MX 10 mail.example.test\nmail.example.test A 127.0.0.2\n"
              "other.test MX 10 mx1.other.test\nmx1.other.test A 127.0.0.3\n")
    good = world.peer("127.0.0.2", tls=(pki.chain, pki.key))
    other = world.peer("127.0.0.3", tls=(pki.chain, pki.key))
    svc = world.service(retry=FAST_RETRY, params=[("TlsPolicy", "REG_SZ", "verify"),
                                                  ("TlsCaFile", "REG_SZ", pki.ca)])
    send(svc, "alice@example.com", ["x@remote.test", "y@other.test"], message("by mx"))
    [m] = good.wait_messages(1)
    assert m["tls"] == "TLSv1.3" and m["rcpts"] == ["x@remote.test"]
    wait_for(lambda: "hostname mismatch" in queue_text(svc), "y@other.test deferred")
    assert mail_commands(other) == []


def test_aiosmtpd_peer(world, pki):
    """The same with aiosmtpd's STARTTLS (python3-aiosmtpd): another TLS server than ours."""
    import ssl
    from aiosmtpd.controller import Controller

    got = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            got.append((envelope.rcpt_tos, bool(session.ssl)))
            return "250 2.0.0 OK"

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki.chain, pki.key)
    ctl = Controller(Handler(), hostname=HOST, port=world.outport, tls_context=ctx,
                     require_starttls=True)
    ctl.start()
    try:
        svc = smart(world, "verify", [("TlsCaFile", "REG_SZ", pki.ca)])
        send(svc, "alice@example.com", ["x@remote.test"], message("aiosmtpd"))
        wait_for(lambda: got, "the message at aiosmtpd")
        assert got == [(["x@remote.test"], True)]
        wait_out_empty(svc)
        wait_for(lambda: tls_field(svc, "x@remote.test"), "a 1011 tracking line")
        assert tls_field(svc, "x@remote.test")[0].startswith("TLSv1.")
    finally:
        ctl.stop()
