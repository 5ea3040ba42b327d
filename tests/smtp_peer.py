#!/usr/bin/python3
"""smtp_peer.py - a scriptable SMTP server for tests: the remote mail exchanger (or smart host)
that imsd's outbound side talks to. Standard library only.

As a module:

    peer = Peer("127.0.0.2", 0, directory)          # binds at once; peer.port is the port
    peer.add_rule("dot", "451 4.3.0 Try again later", times=1)   # the first "." gets 451
    ...
    peer.messages()                                  # what it accepted, oldest first
    peer.stop()                                      # closes everything, joins every thread

As a program (prints "port N" once bound, serves until SIGTERM/SIGINT or, with --exit-on-eof,
end of stdin):

    python3 tests/smtp_peer.py --address 127.0.0.2 --port 0 --dir DIR \\
        [--greeting 421|554] [--helo-only] [--no-pipelining] [--no-8bitmime] [--size N] \\
        [--no-dsn] [--no-enhancedstatuscodes] [--reply 'STAGE[/ADDRESS][*N]=REPLY'] ... \\
        [--drop-after-data N] [--stall STAGE] [--close-421 STAGE] [--max-connections N]

Every message it accepts (a 2xx reply to the final ".") is recorded in the directory as
`<n>.eml`, the data exactly as received after dot-unstuffing (CRLF kept, the final "." line
not included), and `<n>.json`: {"helo", "ehlo", "mail_from", "mail_params", "rcpts",
"rcpt_params", "peer", "connection", "acked", "violations"}. Both are written to a temporary
name and renamed, .eml first, so a reader that sees the .json sees the whole message.
`commands.log` has one line per command and reply ("<conn> C <line>" / "<conn> S <line>").

Behaviours are rules: (stage, action, address, times). A stage is "greeting", "ehlo", "helo",
"mail", "rcpt", "data", "dot" (the end of data), "rset", "noop" or "quit". An action is a reply
("451 4.3.0 later"; a reply starting with 421 also closes the connection), DROP (close without
a reply; at "dot" the data was received whole and is recorded with "acked": false, as a real
server that committed it before its reply was lost would have it: RFC 1047) or STALL (say
nothing more, hold the connection until the client goes or the peer stops). A rule with an
address applies only to RCPT of that address (compared without case). A rule with times N
applies to its first N matches, counted across connections, then the next rule or the normal
behaviour applies. The first rule that matches wins.

The peer checks what a client must not do and notes each in the message's "violations" (and
peer.violations): pipelining without PIPELINING, a bare CR or LF, a data line over 1000
octets with its CRLF (RFC 5321 4.5.3.1.6), 8-bit data without BODY=8BITMIME. Parameters that
were not advertised (SIZE, BODY, DSN's RET/ENVID/NOTIFY/ORCPT, any other) get 555.

TLS and AUTH (module use only): tls=(certfile, keyfile) offers STARTTLS (Python's ssl module;
bytes pipelined after STARTTLS are discarded, the session starts again as RFC 3207 says);
tls_break=True closes the connection right after the 220 instead (a failed handshake).
auth={"user": "password"} offers AUTH with auth_mechs (PLAIN LOGIN) (only under TLS when auth_tls_only);
auth_required refuses MAIL without it (530 5.7.0). The .json gets "tls" (the protocol version,
or null) and "auth" (the user name, or null).

Everything is bounded: command lines (--max-line), messages (--max-message, then 552),
connections at once (--max-connections, then 421), idle time (--timeout, then 421).
"""
import argparse
import base64
import binascii
import json
import os
import re
import select
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time

DROP = "drop"
STALL = "stall"
STAGES = ("greeting", "ehlo", "helo", "mail", "rcpt", "data", "dot", "rset", "noop", "quit")
DATA_LINE_MAX = 1000  # RFC 5321 4.5.3.1.6, CRLF included
_ADDR = re.compile(r"^(FROM|TO):\s*<([^<>]*)>(.*)$", re.I | re.S)


class Rule:
    def __init__(self, stage, action, address=None, times=None):
        stage = stage.lower()
        if stage not in STAGES:
            raise ValueError("unknown stage %r" % stage)
        if action not in (DROP, STALL) and not re.match(r"^[2-5]\d\d[ -]", action + " "):
            raise ValueError("an action is DROP, STALL or a reply 'ddd text', not %r" % action)
        self.stage, self.action = stage, action
        self.address = address.lower() if address else None
        self.times = times  # None: always
        self.fired = 0

    def __repr__(self):
        return "Rule(%r, %r, address=%r, times=%r, fired=%d)" % (
            self.stage, self.action, self.address, self.times, self.fired)


def parse_rule(spec):
    """'STAGE[/ADDRESS][*N]=ACTION' -> Rule (the CLI's --reply)."""
    left, sep, action = spec.partition("=")
    if not sep:
        raise ValueError("want STAGE[/ADDRESS][*N]=REPLY, not %r" % spec)
    times = None
    if "*" in left:
        left, n = left.rsplit("*", 1)
        times = int(n)
    stage, _, address = left.partition("/")
    return Rule(stage, action, address or None, times)


class _Closed(Exception):
    """The connection is over (client gone, time-out, DROP, 421, peer stopping)."""


class _Conn:
    """One client connection: a socket and the bytes read from it but not yet used."""

    def __init__(self, peer, sock, addr, number):
        self.peer, self.sock, self.number = peer, sock, number
        self.addr = "%s:%d" % addr[:2]
        self.buf = bytearray()

    def fill(self):
        """Read more into buf, waking up now and then to see whether the peer stops."""
        deadline = time.monotonic() + self.peer.timeout
        while True:
            if self.peer._stopping.is_set():
                raise _Closed()
            left = deadline - time.monotonic()
            if left <= 0:
                self.send("421 4.4.2 Timeout, closing")
                raise _Closed()
            pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
            r = [self.sock] if pending else select.select([self.sock], [], [], min(0.2, left))[0]
            if r:
                try:
                    data = self.sock.recv(65536)
                except ssl.SSLWantReadError:
                    continue
                except OSError:
                    raise _Closed()
                if not data:
                    raise _Closed()
                self.buf += data
                return

    def line(self, limit):
        """The next line with its line end; at most limit bytes. None when longer."""
        start = 0
        while True:
            i = self.buf.find(b"\n", start)
            if i >= 0:
                if i + 1 > limit:
                    return None
                out = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return out
            if len(self.buf) > limit:
                return None
            start = len(self.buf)
            self.fill()

    def send(self, text):
        """Send a reply (lines joined by \\n become a multi-line reply) and log it."""
        lines = text.split("\n")
        code = lines[0][:3]
        texts = [l[4:] if l[:3] == code and l[3:4] in (" ", "-") else l for l in lines]
        out = ["%s-%s" % (code, t) for t in texts[:-1]] + ["%s %s" % (code, texts[-1])]
        for l in out:
            self.peer._log(self.number, "S", l)
        try:
            self.sock.sendall("".join(l + "\r\n" for l in out).encode("latin-1"))
        except OSError:
            raise _Closed()

    def hold(self):
        """STALL: say nothing, discard what comes, until the client goes or the peer stops."""
        while not self.peer._stopping.is_set():
            r, _, _ = select.select([self.sock], [], [], 0.2)
            if r:
                try:
                    if not self.sock.recv(65536):
                        break
                except OSError:
                    break
        raise _Closed()


class Peer:
    def __init__(self, address="127.0.0.2", port=0, directory=None, *, greeting=220,
                 helo_only=False, pipelining=True, eightbitmime=True, size=None, dsn=True,
                 enhancedstatuscodes=True, rules=(), drop_after_data=0, stall=None,
                 close_421=None, max_connections=20, max_line=2048, max_message=64 << 20,
                 timeout=60.0, name="peer.test", tls=None, tls_break=False, auth=None,
                 auth_tls_only=True, auth_required=False, auth_mechs=("PLAIN", "LOGIN")):
        """Bind and start serving. directory: where messages go (a new temporary one if None).
        drop_after_data: drop the connection after the data of the first N transactions
        (-1: always). stall: a stage at which to stall, always. close_421: a stage answered
        421 (the connection then closed). greeting: 220, or 421/554 for every connection."""
        self.address, self.name = address, name
        self.tls_ctx = None
        if tls:
            self.tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls_ctx.load_cert_chain(*tls)
        self.tls_break, self.auth, self.auth_tls_only = tls_break, auth, auth_tls_only
        self.auth_required, self.auth_mechs = auth_required, tuple(auth_mechs)
        self.helo_only, self.pipelining, self.eightbitmime = helo_only, pipelining, eightbitmime
        self.size, self.dsn, self.enhancedstatuscodes = size, dsn, enhancedstatuscodes
        self.max_connections, self.max_line = max_connections, max_line
        self.max_message, self.timeout = max_message, timeout
        self.directory = directory or tempfile.mkdtemp(prefix="smtp-peer-")
        os.makedirs(self.directory, exist_ok=True)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.rules = []
        if greeting != 220:
            text = {421: "421 4.3.2 Service not available, closing",
                    554: "554 5.3.2 No SMTP service here"}.get(greeting, "%d Greeting" % greeting)
            self.rules.append(Rule("greeting", text))
        if stall:
            self.rules.append(Rule(stall, STALL))
        if close_421:
            self.rules.append(Rule(close_421, "421 4.3.2 Closing at %s" % close_421))
        if drop_after_data:
            self.rules.append(Rule("dot", DROP, times=None if drop_after_data < 0 else drop_after_data))
        self.rules.extend(rules)
        # Counters and logs (under _lock).
        self.connections = 0      # TCP connections accepted (over the limit ones too)
        self.refused = 0          # of those, turned away over max_connections
        self.transactions = 0     # MAIL commands answered 250
        self.active = 0           # connections open now
        self.violations = []      # (connection, text) of every client misbehaviour seen
        self.log = []             # (connection, "C"/"S", line), the first 100000
        self._seq = 0
        self._threads = []
        self._socks = set()
        self._logf = open(os.path.join(self.directory, "commands.log"), "a", encoding="latin-1")
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((address, port))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, name="peer-accept", daemon=True)
        self._acceptor.start()

    # --- the test's side ---------------------------------------------------------------------

    def add_rule(self, stage, action, address=None, times=None):
        with self._lock:
            self.rules.append(Rule(stage, action, address, times))

    def set_rules(self, rules):
        """Replace every rule (the behaviour changes for the next command of any connection)."""
        with self._lock:
            self.rules = list(rules)

    def clear_rules(self):
        self.set_rules([])

    def messages(self, include_dropped=False):
        return read_messages(self.directory, include_dropped)

    def wait_messages(self, n, timeout=20.0, include_dropped=False):
        """The messages once there are at least n; AssertionError after timeout seconds."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.messages(include_dropped)
            if len(m) >= n:
                return m
            if time.monotonic() > deadline:
                raise AssertionError("peer %s:%d: %d of %d messages after %gs" %
                                     (self.address, self.port, len(m), n, timeout))
            time.sleep(0.02)

    def commands(self, conn=None):
        """The command lines received (of one connection if given), without line ends."""
        with self._lock:
            return [l for c, d, l in self.log if d == "C" and (conn is None or c == conn)]

    def stop(self):
        """Stop serving: close the listener and every connection, join every thread."""
        self._stopping.set()
        try:
            self._listener.close()
        except OSError:
            pass
        self._acceptor.join(5)
        with self._lock:
            socks, threads = list(self._socks), list(self._threads)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in threads:
            t.join(5)
        with self._lock:
            if not self._logf.closed:
                self._logf.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # --- serving -----------------------------------------------------------------------------

    def _log(self, conn, direction, line):
        with self._lock:
            if len(self.log) < 100000:
                self.log.append((conn, direction, line))
            if not self._logf.closed:
                self._logf.write("%d %s %s\n" % (conn, direction, line))
                self._logf.flush()

    def _violation(self, conn, text, found):
        if text not in found:
            found.append(text)
            with self._lock:
                self.violations.append((conn.number, text))

    def _rule(self, stage, address=None):
        """The action of the first rule that matches (counting it), else None."""
        with self._lock:
            for r in self.rules:
                if r.stage != stage:
                    continue
                if r.address is not None and (address or "").lower() != r.address:
                    continue
                if r.times is not None and r.fired >= r.times:
                    continue
                r.fired += 1
                return r.action
        return None

    def _accept_loop(self):
        self._listener.settimeout(0.2)
        while not self._stopping.is_set():
            try:
                sock, addr = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            sock.setblocking(True)
            with self._lock:
                self.connections += 1
                number = self.connections
                over = self.active >= self.max_connections
                if over:
                    self.refused += 1
                else:
                    self.active += 1
                self._socks.add(sock)
                # Threads that are done need not be joined at stop: forget them.
                self._threads = [t for t in self._threads if t.is_alive()]
                t = threading.Thread(target=self._serve, args=(sock, addr, number, over),
                                     name="peer-conn-%d" % number, daemon=True)
                self._threads.append(t)
            t.start()

    def _serve(self, sock, addr, number, over):
        conn = _Conn(self, sock, addr, number)
        self._log(number, "+", "connection from %s" % conn.addr)
        try:
            if over:
                conn.send("421 4.7.0 Too many connections, try again later")
                return
            self._session(conn)
        except _Closed:
            pass
        finally:
            try:
                sock.close()
            except OSError:
                pass
            with self._lock:
                self._socks.discard(sock)
                if not over:
                    self.active -= 1
            self._log(number, "-", "closed")

    def _act(self, conn, action, normal):
        """Carry out a rule's action (or the normal reply). True when a 2xx/3xx was sent."""
        if action == DROP:
            raise _Closed()
        if action == STALL:
            conn.hold()
        reply = action or normal
        conn.send(reply)
        if reply.startswith("421"):
            raise _Closed()
        return reply[0] in "23"

    def _esc(self, code):
        return (code + " ") if self.enhancedstatuscodes else ""

    def _session(self, conn):
        action = self._rule("greeting")
        greeting = "220 %s ESMTP smtp_peer ready" % self.name
        if action and action[:3] == "554":
            # RFC 5321 3.1: after a 554 greeting, wait for QUIT, answer 503 to anything else.
            conn.send(action)
            while True:
                line = conn.line(self.max_line)
                if line is None:
                    conn.send("500 5.5.2 Line too long")
                    raise _Closed()
                text = line.rstrip(b"\r\n").decode("latin-1")
                self._log(conn.number, "C", text)
                if text.upper() == "QUIT":
                    conn.send("221 2.0.0 Bye")
                    raise _Closed()
                conn.send("503 5.5.1 No service here")
        self._act(conn, action, greeting)

        st = {"helo": None, "ehlo": False, "mail": None, "mail_params": [], "rcpts": [],
              "rcpt_params": [], "found": [], "tls": None, "auth": None}
        while True:
            line = conn.line(self.max_line)
            if line is None:
                conn.send("500 5.5.2 Line too long")
                raise _Closed()
            text = line.rstrip(b"\r\n").decode("latin-1")
            self._log(conn.number, "C", text)
            if not line.endswith(b"\r\n") or b"\r" in line[:-2]:
                self._violation(conn, "command line without CRLF end", st["found"])
            verb, _, arg = text.partition(" ")
            verb = verb.upper()
            # RFC 2920: without PIPELINING the client waits for each reply before it sends on.
            if conn.buf and not (st["ehlo"] and self.pipelining):
                self._violation(conn, "pipelining without PIPELINING (%s)" % verb, st["found"])
            handler = getattr(self, "_cmd_" + verb.lower(), None)
            if handler is None:
                conn.send("500 5.5.1 Command unrecognized")
                continue
            handler(conn, st, arg)

    def _reset(self, st):
        st.update(mail=None, mail_params=[], rcpts=[], rcpt_params=[])

    def _cmd_ehlo(self, conn, st, arg):
        if self.helo_only:
            conn.send("500 5.5.1 Command unrecognized: EHLO")
            return
        action = self._rule("ehlo")
        lines = ["250-%s greets %s" % (self.name, arg)]
        if self.pipelining:
            lines.append("PIPELINING")
        if self.eightbitmime:
            lines.append("8BITMIME")
        if self.size is not None:
            lines.append("SIZE %d" % self.size)
        if self.dsn:
            lines.append("DSN")
        if self.enhancedstatuscodes:
            lines.append("ENHANCEDSTATUSCODES")
        if (self.tls_ctx or self.tls_break) and not st["tls"]:
            lines.append("STARTTLS")
        if self.auth and not st["auth"] and (st["tls"] or not self.auth_tls_only):
            lines.append("AUTH " + " ".join(self.auth_mechs))
        if self._act(conn, action, "\n".join(lines)):
            self._reset(st)
            st.update(helo=arg, ehlo=True)

    def _cmd_starttls(self, conn, st, arg):
        if not (self.tls_ctx or self.tls_break) or st["tls"] or not st["ehlo"]:
            conn.send("503 %sSTARTTLS not possible now" % self._esc("5.5.1"))
            return
        conn.send("220 %sReady to start TLS" % self._esc("2.0.0"))
        if self.tls_break:
            raise _Closed()
        conn.buf.clear()  # RFC 3207 5: what was pipelined after STARTTLS is not trusted
        raw = conn.sock
        raw.settimeout(10)
        try:
            conn.sock = self.tls_ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self._log(conn.number, "+", "TLS handshake failed: %s" % e)
            raise _Closed()
        conn.sock.settimeout(None)
        self._log(conn.number, "+", "TLS %s %s" % (conn.sock.version(), conn.sock.cipher()[0]))
        self._reset(st)
        st.update(helo=None, ehlo=False, tls=conn.sock.version())

    def _cmd_auth(self, conn, st, arg):
        offered = self.auth and (st["tls"] or not self.auth_tls_only)
        if not offered or st["auth"] or st["mail"] is not None:
            conn.send("503 %sAUTH not possible now" % self._esc("5.5.1"))
            return
        mech, _, initial = arg.partition(" ")
        mech = mech.upper()
        if mech not in self.auth_mechs:
            conn.send("504 %sUnrecognized authentication type" % self._esc("5.5.4"))
            return

        def b64(text):
            try:
                return base64.b64decode(text, validate=True).decode("utf-8", "replace")
            except (binascii.Error, ValueError):
                return None

        def answer(prompt):
            conn.send("334 " + prompt)
            line = conn.line(self.max_line)
            text = (line or b"").rstrip(b"\r\n").decode("latin-1")
            self._log(conn.number, "C", "<credentials>")
            return text

        if mech == "PLAIN":
            raw = b64(initial if initial else answer(""))
            parts = raw.split("\0") if raw is not None else []
            user, password = (parts[1], parts[2]) if len(parts) == 3 else (None, None)
        elif mech == "LOGIN":
            user = b64(answer("VXNlcm5hbWU6"))
            password = b64(answer("UGFzc3dvcmQ6"))
        else:
            conn.send("504 %sUnrecognized authentication type" % self._esc("5.5.4"))
            return
        if user is not None and self.auth.get(user) == password:
            st["auth"] = user
            conn.send("235 %sAuthentication successful" % self._esc("2.7.0"))
        else:
            conn.send("535 %sAuthentication credentials invalid" % self._esc("5.7.8"))

    def _cmd_helo(self, conn, st, arg):
        if self._act(conn, self._rule("helo"), "250 %s" % self.name):
            self._reset(st)
            st.update(helo=arg, ehlo=False)

    def _params(self, conn, st, text, allowed):
        """The parameters of MAIL/RCPT as a list; None (555 sent) when one was not offered."""
        params = text.split()
        for p in params:
            key, _, value = p.partition("=")
            key = key.upper()
            ok = st["ehlo"] and allowed(key, value.upper())
            if not ok:
                conn.send("555 %sParameter %s not recognized" % (self._esc("5.5.4"), p))
                return None
        return params

    def _mail_param(self, key, value):
        if key == "SIZE":
            return self.size is not None and value.isdigit()
        if key == "BODY":
            return self.eightbitmime and value in ("7BIT", "8BITMIME")
        if key in ("RET", "ENVID"):
            return self.dsn
        return False

    def _cmd_mail(self, conn, st, arg):
        m = _ADDR.match(arg)
        if st["helo"] is None:
            conn.send("503 %sSend HELO/EHLO first" % self._esc("5.5.1"))
            return
        if st["mail"] is not None:
            conn.send("503 %sNested MAIL command" % self._esc("5.5.1"))
            return
        if not m or m.group(1).upper() != "FROM":
            conn.send("501 %sSyntax: MAIL FROM:<address>" % self._esc("5.5.4"))
            return
        if self.auth_required and not st["auth"]:
            conn.send("530 %sAuthentication required" % self._esc("5.7.0"))
            return
        params = self._params(conn, st, m.group(3), self._mail_param)
        if params is None:
            return
        for p in params:
            k, _, v = p.partition("=")
            if k.upper() == "SIZE" and self.size and int(v) > self.size:
                conn.send("552 %sMessage size exceeds fixed maximum" % self._esc("5.3.4"))
                return
        if self._act(conn, self._rule("mail"), "250 %sSender OK" % self._esc("2.1.0")):
            st.update(mail=m.group(2), mail_params=params, rcpts=[], rcpt_params=[])
            with self._lock:
                self.transactions += 1

    def _cmd_rcpt(self, conn, st, arg):
        m = _ADDR.match(arg)
        if st["mail"] is None:
            conn.send("503 %sNeed MAIL first" % self._esc("5.5.1"))
            return
        if not m or m.group(1).upper() != "TO":
            conn.send("501 %sSyntax: RCPT TO:<address>" % self._esc("5.5.4"))
            return
        params = self._params(conn, st, m.group(3),
                              lambda k, v: self.dsn and k in ("NOTIFY", "ORCPT"))
        if params is None:
            return
        addr = m.group(2)
        if self._act(conn, self._rule("rcpt", addr), "250 %sRecipient OK" % self._esc("2.1.5")):
            st["rcpts"].append(addr)
            st["rcpt_params"].append(params)

    def _cmd_data(self, conn, st, arg):
        if st["mail"] is None:
            conn.send("503 %sNeed MAIL first" % self._esc("5.5.1"))
            return
        if not st["rcpts"]:
            conn.send("554 %sNo valid recipients" % self._esc("5.5.1"))
            return
        action = self._rule("data")
        if not self._act(conn, action, "354 End data with <CR><LF>.<CR><LF>"):
            self._reset(st)
            return
        self._data(conn, st)

    def _data(self, conn, st):
        found = list(st["found"])  # this message's violations (the session's so far too)
        eight = any(p.upper() == "BODY=8BITMIME" for p in st["mail_params"])
        parts, total, over = [], 0, False
        while True:
            line = conn.line(self.max_message + 5)
            if line is None:
                conn.send("552 %sMessage too big" % self._esc("5.3.4"))
                raise _Closed()
            if line == b".\r\n":
                break
            if not line.endswith(b"\r\n") or b"\r" in line[:-2]:
                self._violation(conn, "bare CR or LF in data", found)
            if len(line) > DATA_LINE_MAX:
                self._violation(conn, "data line of %d octets" % len(line), found)
            if not eight and any(b > 127 for b in line):
                self._violation(conn, "8-bit data without BODY=8BITMIME", found)
            if line.startswith(b"."):
                line = line[1:]
            total += len(line)
            if total > self.max_message or (self.size and total > self.size):
                over = True
                parts = []
            if not over:
                parts.append(line)
        self._log(conn.number, "D", "%d octets" % total)
        data = b"".join(parts)
        try:
            if over:
                conn.send("552 %sMessage too big" % self._esc("5.3.4"))
                return
            action = self._rule("dot")
            if action == DROP:
                # Received whole, and then no reply: the RFC 1047 case. Recorded (unacked).
                self._record(conn, st, data, False, found)
                raise _Closed()
            if self._act(conn, action, "250 %sMessage accepted" % self._esc("2.0.0")):
                self._record(conn, st, data, True, found)
        finally:
            self._reset(st)

    def _record(self, conn, st, data, acked, found):
        with self._lock:
            self._seq += 1
            n = self._seq
        meta = {"helo": st["helo"], "ehlo": st["ehlo"], "mail_from": st["mail"],
                "mail_params": st["mail_params"], "rcpts": st["rcpts"],
                "rcpt_params": st["rcpt_params"], "peer": conn.addr,
                "connection": conn.number, "acked": acked, "violations": found,
                "tls": st["tls"], "auth": st["auth"]}
        base = os.path.join(self.directory, str(n))
        for suffix, content in ((".eml", data), (".json", json.dumps(meta).encode())):
            tmp = base + suffix + ".tmp"
            with open(tmp, "wb") as f:
                f.write(content)
            os.rename(tmp, base + suffix)

    def _cmd_rset(self, conn, st, arg):
        self._reset(st)
        self._act(conn, self._rule("rset"), "250 %sReset" % self._esc("2.0.0"))

    def _cmd_noop(self, conn, st, arg):
        self._act(conn, self._rule("noop"), "250 %sOK" % self._esc("2.0.0"))

    def _cmd_quit(self, conn, st, arg):
        self._act(conn, self._rule("quit"), "221 %sBye" % self._esc("2.0.0"))
        raise _Closed()


def read_messages(directory, include_dropped=False):
    """The recorded messages of a directory, oldest first: dicts of the .json's fields plus
    "n" and "data" (the .eml's bytes). Dropped ones (acked false) only if asked."""
    out = []
    for name in os.listdir(directory):
        if not name.endswith(".json") or not name[:-5].isdigit():
            continue
        n = int(name[:-5])
        with open(os.path.join(directory, name), "rb") as f:
            meta = json.loads(f.read())
        if not meta["acked"] and not include_dropped:
            continue
        with open(os.path.join(directory, "%d.eml" % n), "rb") as f:
            meta["data"] = f.read()
        meta["n"] = n
        out.append(meta)
    return sorted(out, key=lambda m: m["n"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--address", default="127.0.0.2")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--dir", required=True, help="where the messages are recorded")
    ap.add_argument("--greeting", type=int, default=220, choices=(220, 421, 554))
    ap.add_argument("--helo-only", action="store_true", help="EHLO gets 500")
    ap.add_argument("--no-pipelining", action="store_true")
    ap.add_argument("--no-8bitmime", action="store_true")
    ap.add_argument("--size", type=int, default=None, help="offer SIZE N (and enforce it)")
    ap.add_argument("--no-dsn", action="store_true")
    ap.add_argument("--no-enhancedstatuscodes", action="store_true")
    ap.add_argument("--reply", action="append", default=[], metavar="STAGE[/ADDR][*N]=REPLY",
                    help="a rule; REPLY 'drop' or 'stall' for those actions")
    ap.add_argument("--drop-after-data", type=int, default=0, metavar="N",
                    help="drop the connection after the data of the first N transactions (-1: all)")
    ap.add_argument("--stall", choices=STAGES)
    ap.add_argument("--close-421", choices=STAGES)
    ap.add_argument("--max-connections", type=int, default=20)
    ap.add_argument("--max-line", type=int, default=2048)
    ap.add_argument("--max-message", type=int, default=64 << 20)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--exit-on-eof", action="store_true", help="stop when stdin is closed")
    args = ap.parse_args()

    peer = Peer(args.address, args.port, args.dir, greeting=args.greeting,
                helo_only=args.helo_only, pipelining=not args.no_pipelining,
                eightbitmime=not args.no_8bitmime, size=args.size, dsn=not args.no_dsn,
                enhancedstatuscodes=not args.no_enhancedstatuscodes,
                rules=[parse_rule(s) for s in args.reply], drop_after_data=args.drop_after_data,
                stall=args.stall, close_421=args.close_421, max_connections=args.max_connections,
                max_line=args.max_line, max_message=args.max_message, timeout=args.timeout)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("port %d" % peer.port, flush=True)
    try:
        while not stop.is_set():
            if args.exit_on_eof:
                r, _, _ = select.select([sys.stdin], [], [], 0.5)
                if r and not os.read(sys.stdin.fileno(), 4096):
                    break
            else:
                stop.wait(0.5)
    finally:
        peer.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
