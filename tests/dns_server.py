#!/usr/bin/python3
"""dns_server.py - a small DNS server for tests: answers from a zone file over UDP and TCP on
one port, like a recursive resolver would (CNAME chains followed inside the zone), and fails on
purpose for names marked so.

    python3 tests/dns_server.py --port 0 --zone FILE [--address 127.0.0.1] [--udp-max 512]

Prints "port N" on stdout (flushed) once both sockets are bound, then serves until SIGTERM,
SIGINT or (with --exit-on-eof) end of stdin. SIGHUP reads the zone file again.

Zone file: one record a line, "name TYPE value...", '#' starts a comment, names are absolute
(a trailing dot is optional) and compared without case; every record has TTL 60.
    example.test   MX     10 mx1.example.test      preference and exchange ("." : null MX)
    mx1.example.test A    192.0.2.1
    mx1.example.test AAAA 2001:db8::1
    www.example.test CNAME mx1.example.test
    txt.example.test TXT  some text
    bad.example.test SERVFAIL [TYPE]    answer SERVFAIL (only for queries of TYPE if given)
    no.example.test  REFUSED  [TYPE]    answer REFUSED
    slow.example.test TIMEOUT [TYPE]    never answer
    gone.example.test NXDOMAIN          NXDOMAIN even though the name has records below it
A name with records of other types (or names below it) answers NOERROR without data
(NODATA); any other name NXDOMAIN. UDP answers longer than --udp-max (or the client's EDNS
size) are truncated (TC) so the client retries over TCP.
"""
import argparse
import os
import selectors
import signal
import socket
import struct
import sys

from dnslib import AAAA, CNAME, DNSRecord, MX, QTYPE, RCODE, RR, TXT, A

TTL = 60
MAX_CNAME = 8  # links followed in one answer
MAX_TCP = 65535 + 2  # one length-prefixed message
FAILURES = ("SERVFAIL", "REFUSED", "TIMEOUT", "NXDOMAIN")


def norm(name):
    """name - lower case, without the trailing dot."""
    name = str(name).lower()
    return name[:-1] if name.endswith(".") and name != "." else name


class Zone:
    """records: name -> list of (qtype name, rdata); marks: name -> list of (failure, qtype|None)."""

    def __init__(self, path):
        self.records = {}
        self.marks = {}
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                line = line.split("#", 1)[0].strip()
                if not line:
                    continue
                parts = line.split()
                if len(parts) < 2:
                    raise ValueError("%s:%d: want 'name TYPE value'" % (path, lineno))
                name, rtype, args = norm(parts[0]), parts[1].upper(), parts[2:]
                if rtype in FAILURES:
                    qt = args[0].upper() if args else None
                    self.marks.setdefault(name, []).append((rtype, qt))
                    continue
                self.records.setdefault(name, []).append((rtype, self.rdata(rtype, args, path, lineno)))

    @staticmethod
    def rdata(rtype, args, path, lineno):
        try:
            if rtype == "A":
                return A(list(socket.inet_pton(socket.AF_INET, args[0])))
            if rtype == "AAAA":
                return AAAA(list(socket.inet_pton(socket.AF_INET6, args[0])))
            if rtype == "MX":
                return MX(args[1], int(args[0]))
            if rtype == "CNAME":
                return CNAME(args[0])
            if rtype == "TXT":
                return TXT(" ".join(args))
        except (IndexError, ValueError, OSError) as e:
            raise ValueError("%s:%d: %s" % (path, lineno, e))
        raise ValueError("%s:%d: unknown type %s" % (path, lineno, rtype))

    def exists(self, name):
        if name in self.records:
            return True
        suffix = "." + name
        return any(n.endswith(suffix) for n in self.records)

    def mark(self, name, qtype):
        for failure, qt in self.marks.get(name, []):
            if qt is None or qt == qtype:
                return failure
        return None


def answer(zone, request):
    """the reply to request, or None for no answer at all."""
    reply = request.reply()
    reply.header.ra = 1
    q = request.q
    qtype = QTYPE.get(q.qtype, str(q.qtype))
    name = norm(q.qname)
    for _ in range(MAX_CNAME + 1):
        failure = zone.mark(name, qtype)
        if failure == "TIMEOUT":
            return None
        if failure:
            reply.header.rcode = getattr(RCODE, failure)
            return reply
        recs = zone.records.get(name, [])
        cname = [r for t, r in recs if t == "CNAME"]
        if cname and qtype != "CNAME":
            reply.add_answer(RR(name + ".", QTYPE.CNAME, rdata=cname[0], ttl=TTL))
            name = norm(cname[0].label)
            continue
        matching = [r for t, r in recs if t == qtype or qtype == "ANY"]
        for r in matching:
            reply.add_answer(RR(name + ".", getattr(QTYPE, type(r).__name__), rdata=r, ttl=TTL))
        if not matching and not zone.exists(name):
            reply.header.rcode = RCODE.NXDOMAIN
        return reply
    reply.header.rcode = RCODE.SERVFAIL  # a CNAME loop
    return reply


def udp_limit(request, udp_max):
    """how long a UDP answer to request may be: the client's EDNS size, else udp_max."""
    for ar in request.ar:
        if ar.rtype == QTYPE.OPT:
            return max(udp_max, ar.rclass)
    return udp_max


def reply_bytes(zone, data, tcp, udp_max):
    try:
        request = DNSRecord.parse(data)
    except Exception:  # not DNS: ignore, as a server would
        return None
    if not request.questions:
        return None
    reply = answer(zone, request)
    if reply is None:
        return None
    out = reply.pack()
    if not tcp and len(out) > udp_limit(request, udp_max):
        # dnslib's truncate() drops the question, and clients match answers by it
        short = request.reply()
        short.header.ra = 1
        short.header.tc = 1
        short.header.rcode = reply.header.rcode
        out = short.pack()
    return out


def bind_pair(address, port):
    """a UDP and a TCP socket on the same port (a free one when port is 0)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    for _ in range(50):
        u = socket.socket(family, socket.SOCK_DGRAM)
        u.bind((address, port))
        p = u.getsockname()[1]
        t = socket.socket(family, socket.SOCK_STREAM)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            t.bind((address, p))
        except OSError:
            u.close()
            t.close()
            if port:
                raise
            continue
        t.listen(16)
        return u, t, p
    raise OSError("no free port for UDP and TCP together")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--address", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--zone", required=True)
    ap.add_argument("--udp-max", type=int, default=512)
    ap.add_argument("--exit-on-eof", action="store_true", help="stop when stdin is closed")
    args = ap.parse_args()

    state = {"zone": Zone(args.zone), "reload": False, "stop": False}
    signal.signal(signal.SIGHUP, lambda *_: state.update(reload=True))
    signal.signal(signal.SIGTERM, lambda *_: state.update(stop=True))
    signal.signal(signal.SIGINT, lambda *_: state.update(stop=True))

    udp, tcp, port = bind_pair(args.address, args.port)
    sel = selectors.DefaultSelector()
    sel.register(udp, selectors.EVENT_READ, "udp")
    sel.register(tcp, selectors.EVENT_READ, "listen")
    if args.exit_on_eof:
        sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
    conns = {}  # socket -> bytes received
    print("port %d" % port, flush=True)

    while not state["stop"]:
        if state["reload"]:
            state["reload"] = False
            try:
                state["zone"] = Zone(args.zone)
            except (OSError, ValueError) as e:
                print("reload failed: %s" % e, file=sys.stderr, flush=True)
        try:
            events = sel.select(timeout=1.0)
        except InterruptedError:
            continue
        for key, _ in events:
            what, s = key.data, key.fileobj
            if what == "stdin":
                if not os.read(sys.stdin.fileno(), 4096):
                    state["stop"] = True
            elif what == "udp":
                data, peer = s.recvfrom(65535)
                out = reply_bytes(state["zone"], data, False, args.udp_max)
                if out is not None:
                    s.sendto(out, peer)
            elif what == "listen":
                c, _ = s.accept()
                conns[c] = b""
                sel.register(c, selectors.EVENT_READ, "conn")
            else:
                try:
                    data = s.recv(65535)
                except OSError:
                    data = b""
                buf = conns[s] + data
                if not data or len(buf) > MAX_TCP:
                    sel.unregister(s)
                    del conns[s]
                    s.close()
                    continue
                while len(buf) >= 2:
                    n = struct.unpack("!H", buf[:2])[0]
                    if len(buf) < 2 + n:
                        break
                    out = reply_bytes(state["zone"], buf[2:2 + n], True, args.udp_max)
                    buf = buf[2 + n:]
                    if out is not None:
                        s.sendall(struct.pack("!H", len(out)) + out)
                conns[s] = buf
    return 0


if __name__ == "__main__":
    sys.exit(main())
