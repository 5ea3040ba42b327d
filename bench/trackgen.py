#!/usr/bin/python3
"""trackgen.py - writes DIR/Tracking.log with DAYS day files (the last ending today, GMT) and
EVENTS tracking lines in all, as imsd writes them: messages received (1012) and either
delivered locally (1013) or queued (1010) and relayed (1011) with a remote and its reply, some
deferred first (1100). One message, Message-ID <bench-target@client.test>, sits in the middle
day. Fixed seed: the same files every run. Usage: trackgen.py DIR [EVENTS] [DAYS]"""
import os
import random
import sys
import time

def main():
    root = sys.argv[1]
    total = int(sys.argv[2]) if len(sys.argv) > 2 else 1000000
    days = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    rnd = random.Random(13)
    d = os.path.join(root, "Tracking.log")
    os.makedirs(d, exist_ok=True)
    today = int(time.time()) // 86400
    per_day = total // days
    counter = 0
    target_day = days // 2
    for k in range(days):
        day = today - days + 1 + k
        t0 = day * 86400
        name = time.strftime("%Y%m%d.log", time.gmtime(t0))
        lines = []
        n = 0
        target_at = per_day // 2 if k == target_day else -1
        while n < per_day:
            counter += 1
            when = t0 + (n * 86000) // per_day
            qid = "%08X%08X" % (when, counter)
            msgid = ("<bench-target@client.test>" if target_at >= 0 and n >= target_at
                     else "<%d.%d@client%d.test>" % (counter, rnd.randrange(1 << 30), counter % 97))
            if target_at >= 0 and n >= target_at:
                target_at = -1
            sender = "user%d@client%d.test" % (rnd.randrange(5000), rnd.randrange(50))
            ts = lambda t: time.strftime("%Y-%m-%d %H:%M:%S GMT", time.gmtime(min(t, t0 + 86399)))
            size = rnd.randrange(500, 200000)
            if rnd.random() < 0.5:
                rcpt = "user%d@example.com" % rnd.randrange(2000)
                base = "\t%s\t%s\t%s\t%d\t192.0.2.%d\tims.example.com" % (
                    qid, sender, rcpt, size, counter % 250)
                lines.append(ts(when) + "\t1012" + base + "\t\t\t\t" + msgid)
                lines.append(ts(when + 1) + "\t1013" + base)
                n += 2
            else:
                rcpt = "user%d@remote%d.test" % (rnd.randrange(2000), rnd.randrange(300))
                base = "\t%s\t%s\t%s\t%d\t192.0.2.%d\tims.example.com" % (
                    qid, sender, rcpt, size, counter % 250)
                mx = "mx%d.remote.test[198.51.100.%d]" % (counter % 7, counter % 250)
                lines.append(ts(when) + "\t1012" + base + "\t\t\t\t" + msgid)
                lines.append(ts(when) + "\t1010" + base)
                n += 2
                if rnd.random() < 0.2:
                    lines.append(ts(when + 2) + "\t1100" + base + "\t\t" + mx +
                                 "\t451 4.3.0 Try again later")
                    n += 1
                lines.append(ts(when + 3) + "\t1011" + base + "\tplain\t" + mx +
                             "\t250 2.0.0 Ok: queued as %X" % counter)
                n += 1
        with open(os.path.join(d, name), "w") as f:
            f.write("\n".join(lines) + "\n")
    print(counter, "messages")

main()
