#!/usr/bin/python3
"""queuegen.py OUT_DIR N [DOMAINS] - N spool files (format 2) in OUT_DIR as the outbound queue
keeps them: one recipient each at one of DOMAINS destinations (default 50), deferred once by a
451 with the next try a day away, so imsd loads them at start and leaves them waiting."""
import os
import sys
import time

out, n = sys.argv[1], int(sys.argv[2])
domains = int(sys.argv[3]) if len(sys.argv) > 3 else 50
os.makedirs(out, exist_ok=True)
now = int(time.time())
body = (b"From: <bench@example.com>\r\nTo: <x@remote.test>\r\nSubject: queued\r\n"
        b"Message-ID: <q%d@bench.test>\r\n\r\n" + b"x" * 900 + b"\r\n")
for i in range(n):
    qid = "%08X%08X" % (now - 3600, i)
    d = "d%d.test" % (i % domains)
    content = body % i
    head = ("IMS-SPOOL 2\nid %s\ntime %d\nclient 127.0.0.1\nhelo bench.test\nhost gw.bench\n"
            "from bench@example.com\nrcpt -\t-\tuser%d@%s\tdns:%s\nsize %020d\n\n"
            % (qid, now - 3600 - i % 86400, i, d, d, len(content))).encode()
    rec = ("defer 0\t1\t%d\t[127.0.0.2]|451 4.3.0 Try again later\n" % (now + 86400)).encode()
    with open(os.path.join(out, qid), "wb") as f:
        f.write(head + content + rec)
