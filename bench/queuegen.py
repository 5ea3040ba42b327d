#!/usr/bin/python3
"""queuegen.py OUT_DIR N [DOMAINS] [--route SPEC] [--due] - N spool files (format 2) in OUT_DIR
as the outbound queue keeps them: one recipient each at one of DOMAINS domains (default 50),
deferred once by a 451. By default each is routed by DNS (dns:<its domain>) with its next try a
day away, so imsd loads them at start and leaves them waiting. --route SPEC routes every one to
the host spec SPEC (smarthost:SPEC, as with SmartHost); --due makes the next try now and the
arrival recent (the last 10 minutes, before any delay notice), so imsd tries them at once."""
import argparse
import os
import time

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("n", type=int)
ap.add_argument("domains", type=int, nargs="?", default=50)
ap.add_argument("--route", metavar="SPEC", help="smart host spec for every recipient")
ap.add_argument("--due", action="store_true", help="next try now instead of a day away")
args = ap.parse_args()
out, n, domains = args.out, args.n, args.domains
os.makedirs(out, exist_ok=True)
now = int(time.time())
body = (b"From: <bench@example.com>\r\nTo: <x@remote.test>\r\nSubject: queued\r\n"
        b"Message-ID: <q%d@bench.test>\r\n\r\n" + b"x" * 900 + b"\r\n")
next_try = now if args.due else now + 86400
for i in range(n):
    qid = "%08X%08X" % (now - 3600, i)
    d = "d%d.test" % (i % domains)
    route = "smarthost:" + args.route if args.route else "dns:" + d
    arrived = now - 60 - i % 540 if args.due else now - 3600 - i % 86400
    content = body % i
    head = ("IMS-SPOOL 2\nid %s\ntime %d\nclient 127.0.0.1\nhelo bench.test\nhost gw.bench\n"
            "from bench@example.com\nrcpt -\t-\tuser%d@%s\t%s\nsize %020d\n\n"
            % (qid, arrived, i, d, route, len(content))).encode()
    rec = ("defer 0\t1\t%d\t[127.0.0.2]|451 4.3.0 Try again later\n" % next_try).encode()
    with open(os.path.join(out, qid), "wb") as f:
        f.write(head + content + rec)
