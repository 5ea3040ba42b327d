#!/usr/bin/python3
"""dnsanswer_corpus.py - writes the seed inputs of dnsanswer_fuzz into
tests/fuzz/corpus/dnsanswer_fuzz/ (the input format is at the top of tests/fuzz/dnsanswer_fuzz.c):
real answers built with dnslib. Run it from anywhere with /usr/bin/python3; its files are
committed."""
import os
import struct

from dnslib import AAAA, CNAME, DNSRecord, MX, QTYPE, RR, A

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "dnsanswer_fuzz")


def answer(qname, qtype, rrs):
    """the wire form of an answer to qname/qtype holding rrs (name, type, rdata)."""
    q = DNSRecord.question(qname, qtype)
    r = q.reply()
    for name, t, rdata in rrs:
        r.add_answer(RR(name, getattr(QTYPE, t), rdata=rdata, ttl=60))
    return r.pack()


def chunk(data):
    return b"\0" + struct.pack("!H", len(data)) + data


def fail(code):
    return bytes([code])


def write(name, first, chunks):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(bytes([first]) + b"".join(chunks))


mx2 = answer("two.test", "MX", [("two.test", "MX", MX("a.two.test", 10)),
                                ("two.test", "MX", MX("b.two.test", 10)),
                                ("two.test", "MX", MX("c.two.test", 20))])
write("two_prefs", 0, [chunk(mx2),
                       chunk(answer("a.two.test", "A", [("a.two.test", "A", A("192.0.2.1")),
                                                        ("a.two.test", "A", A("192.0.2.11"))])),
                       chunk(answer("a.two.test", "AAAA", [("a.two.test", "AAAA", AAAA("2001:db8::1"))])),
                       chunk(answer("b.two.test", "A", [("b.two.test", "A", A("192.0.2.2"))])),
                       fail(1),
                       fail(2), fail(4)])
write("null_mx", 1, [chunk(answer("null.test", "MX", [("null.test", "MX", MX(".", 0))]))])
write("cname_chain", 2, [chunk(answer("c.test", "MX", [("c.test", "MX", MX("alias.c.test", 5))])),
                         chunk(answer("alias.c.test", "A", [
                             ("alias.c.test", "CNAME", CNAME("alias2.c.test")),
                             ("alias2.c.test", "CNAME", CNAME("real.c.test")),
                             ("real.c.test", "A", A("192.0.2.40"))])),
                         chunk(answer("alias.c.test", "AAAA", [
                             ("alias.c.test", "CNAME", CNAME("real.c.test")),
                             ("real.c.test", "AAAA", AAAA("2001:db8::40"))]))])
many = [("many.test", "MX", MX("mx%02d.many.test" % i, i % 7)) for i in range(40)]
write("many_mx", 0, [chunk(answer("many.test", "MX", many))] +
      [chunk(answer("mx%02d.many.test" % i, "A", [("mx%02d.many.test" % i, "A", A("198.51.100.%d" % i))]))
       for i in range(40)])
write("nodata", 0x80, [chunk(answer("implicit.test", "MX", [])),
                       chunk(answer("implicit.test", "A", [("implicit.test", "A", A("0.0.0.0")),
                                                           ("implicit.test", "A", A("192.0.2.20"))]))])
write("servfail", 0, [fail(2)])
