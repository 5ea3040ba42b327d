"""outbound.py - the measuring half of bench/outbound.sh: smtp-source -> server (relaying) ->
smtp-sink, for imsd and Postfix: end-to-end messages per second (from smtp-source's start until
the sink has all N) and the server's CPU per message; the report as a text table and markdown.
outbound.sh sets the servers and the two sinks up.

  outbound.py load   --imsd PORT PIDFILE SINKOUT --postfix PORT PIDFILE SINKOUT --out FILE
  outbound.py report LOAD_FILE

SINKOUT is the standard output of that server's own `smtp-sink -c`: a running counter
"sess=A quit=B mesg=C" followed by CR, rewritten on every session end, QUIT and "." it gets.
Environment: IMS_BENCH_SCALE (message counts times this, default 1), IMS_BENCH_ROUNDS (runs per
server and point, default 2), IMS_BENCH_WAIT (seconds the sink may take after smtp-source
exited, at least; default 60), IMS_BENCH_STALL (seconds without a new message at the sink,
once smtp-source exited, after which a run is given up; default 15), IMS_BENCH_COMMAND (the
command line shown in the report), IMS_BENCH_POINTS, IMS_BENCH_PERF and IMS_BENCH_PERF_ARGS
(perfhook.py: only some points; perf on imsd through each of its runs, into
DIR/perf-<sessions>x<KiB>-<n>.data).
PIDFILE is imsd's $IMS_ROOT/run/imsd.pid or Postfix's master.pid; the server's processes are
that one and all its descendants."""
import argparse
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import perfhook  # noqa: E402  (IMS_BENCH_PERF, IMS_BENCH_POINTS)

SMTP_SOURCE = "/usr/sbin/smtp-source"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# (sessions, message bytes, messages at scale 1), as bench/inbound.py's points.
POINTS = [
    (1, 4096, 500),
    (1, 65536, 300),
    (20, 4096, 2000),
    (20, 65536, 800),
    (100, 4096, 2000),
    (100, 65536, 800),
]
WARMUP = (20, 4096, 100)  # run once per server before the points, not reported
POLL = 0.005  # seconds between reads of the sink's counter while waiting
WAIT_FACTOR = 10.0  # the sink may take this many times the sending time, or IMS_BENCH_WAIT
FAILED_WAIT = 2.0  # seconds to wait for the sink after smtp-source failed
QUIET = 1.0  # before a run: the sink's count must not have moved for this long...
QUIET_MAX = 10.0  # ...waiting for that at most this long (mail left over from a run before)
SETTLE = 0.5  # seconds after the last message reached the sink before CPU is read
SOURCE_TIMEOUT = 600.0  # seconds smtp-source may run at most

SENDER = "sender@remote.test"
RECIPIENT = "user@remote.test"
HELO = "client.test"
COUNTER = re.compile(rb"sess=(\d+) quit=(\d+) mesg=(\d+)$")


def proc_stat(pid):
    """(ppid, utime+stime, cutime+cstime) of pid in seconds, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2:].split()  # after the command name, which may hold spaces
    # fields[0] is field 3 (state) of proc(5): ppid is 4, utime..cstime are 14..17.
    ppid = int(fields[1])
    own = int(fields[11]) + int(fields[12])
    reaped = int(fields[13]) + int(fields[14])
    return ppid, own / CLK_TCK, reaped / CLK_TCK


class Sink:
    """One smtp-sink's running counter, read from the end of its output file."""

    def __init__(self, path):
        self.path = path

    def counts(self):
        """(sessions, messages) the sink has had so far."""
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                f.seek(max(0, size - 256))
                tail = f.read()
        except FileNotFoundError:
            return 0, 0
        # Every record ends in CR; the last piece may be half written, or empty.
        for rec in reversed(tail.split(b"\r")[:-1]):
            m = COUNTER.search(rec)
            if m:
                return int(m.group(1)), int(m.group(3))
        return 0, 0

    def messages(self):
        return self.counts()[1]


class Server:
    def __init__(self, name, port, pidfile, sinkout):
        self.name = name
        self.port = int(port)
        self.pidfile = pidfile
        self.sink = Sink(sinkout)
        # Messages smtp-source handed over (it exited 0) that the sink has not had yet: an
        # incomplete run's remainder may still come, and would count in a later run.
        self.owed = 0

    def main_pid(self):
        with open(self.pidfile) as f:
            return int(f.read().strip())

    def cpu(self):
        """CPU seconds used so far by the main process and all its live descendants, each with
        what it has reaped: a process that exited counts in its parent's cutime + cstime once
        waited for (Postfix's master reaps smtpd, cleanup, smtp... as they come and go; imsd is
        one process, all its threads in its own utime + stime)."""
        main = self.main_pid()
        stats = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                st = proc_stat(int(entry))
                if st:
                    stats[int(entry)] = st
        children = {}
        for pid, st in stats.items():
            children.setdefault(st[0], []).append(pid)
        total, todo = 0.0, [main]
        while todo:
            pid = todo.pop()
            if pid in stats:
                total += stats[pid][1] + stats[pid][2]
                todo.extend(children.get(pid, []))
        return total


def quiesce(srv):
    """Before a run: wait (bounded) for the messages earlier incomplete runs still owe the sink,
    and until its count stands still. Returns the messages that came meanwhile."""
    start = n = srv.sink.messages()
    now = time.monotonic()
    t_end, last_change = now + QUIET_MAX, now
    while (time.monotonic() < t_end
           and (n - start < srv.owed or time.monotonic() - last_change < QUIET)):
        time.sleep(0.05)
        m = srv.sink.messages()
        if m != n:
            n, last_change = m, time.monotonic()
    srv.owed = max(0, srv.owed - (n - start))
    return n - start


def run_point(srv, sessions, size, count):
    """One load point against one server: a dict of the measures."""
    late = quiesce(srv)
    owed = srv.owed
    os.sync()  # the previous run's writeback must not land on this one
    time.sleep(0.2)
    sess0, base = srv.sink.counts()
    cpu0 = srv.cpu()
    t0 = time.monotonic()
    try:
        p = subprocess.run([SMTP_SOURCE, "-s", str(sessions), "-m", str(count), "-l", str(size),
                            "-M", HELO, "-f", SENDER, "-t", RECIPIENT, f"127.0.0.1:{srv.port}"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=SOURCE_TIMEOUT)
    except subprocess.TimeoutExpired:  # killed: reported as a failed run
        p = subprocess.CompletedProcess([], -1, b"",
                                        f"smtp-source ran over {SOURCE_TIMEOUT:g} s".encode())
    t1 = time.monotonic()
    # Bounded: a failed smtp-source never has them all relayed, so wait only for what is on
    # its way; else until the deadline, or until the sink got nothing new for STALL seconds.
    wait_min = float(os.environ.get("IMS_BENCH_WAIT", "60"))
    stall = float(os.environ.get("IMS_BENCH_STALL", "15"))
    deadline = t1 + (FAILED_WAIT if p.returncode else max(wait_min, WAIT_FACTOR * (t1 - t0)))
    n = srv.sink.messages() - base
    t_last = t1
    while n < count and time.monotonic() < deadline and time.monotonic() - t_last < stall:
        time.sleep(POLL)
        m = srv.sink.messages() - base
        if m != n:
            n, t_last = m, time.monotonic()
    t2 = time.monotonic()
    time.sleep(SETTLE)
    cpu1 = srv.cpu()
    sess1, _ = srv.sink.counts()
    r = {"server": srv.name, "sessions": sessions, "size": size, "count": count,
         "send_s": t1 - t0, "e2e_s": t2 - t0, "relayed": n, "cpu_s": cpu1 - cpu0,
         "sink_sessions": sess1 - sess0, "late_before": late, "owed_before": owed,
         "rc": p.returncode}
    if not p.returncode:
        srv.owed += max(0, count - n)
    else:
        r["error"] = p.stderr.decode(errors="replace").strip().splitlines()[-1:]
    return r


def describe(r):
    out = (f"sent {r['send_s']:6.2f} s, sink got {r['relayed']}/{r['count']} at "
           f"{r['e2e_s']:6.2f} s ({r['sink_sessions']} sink sessions ended), "
           f"CPU {r['cpu_s']:6.2f} s")
    if r["late_before"]:
        out += f", {r['late_before']} late from the run before"
    if r["owed_before"]:
        out += f", {r['owed_before']} of earlier runs still missing (may count in this one)"
    if r["rc"]:
        out += f"  smtp-source exit {r['rc']}: {r.get('error')}"
    return out


def cmd_load(args, servers):
    scale = float(os.environ.get("IMS_BENCH_SCALE", "1"))
    rounds = max(1, int(os.environ.get("IMS_BENCH_ROUNDS", "2")))
    chosen = perfhook.points(POINTS, "outbound.py")  # before the warm-up: a bad word fails at once
    for srv in servers:  # warm both up: processes forked, connections to the sink made
        r = run_point(srv, *WARMUP)
        print(f"outbound: warm-up {WARMUP[0]} x {WARMUP[1] // 1024} KiB, {WARMUP[2]} msgs, "
              f"{srv.name:<7}: {describe(r)}", file=sys.stderr, flush=True)
    results = []
    turn = 0  # who goes first alternates from one run of a point to the next
    for sessions, size, base in chosen:
        count = max(sessions, int(round(base * scale)))
        for rnd in range(rounds):
            order = servers if turn % 2 == 0 else servers[::-1]
            turn += 1
            for srv in order:
                r = perfhook.around(srv, f"{sessions}x{size // 1024}",
                                    lambda: run_point(srv, sessions, size, count))
                r["round"] = rnd
                results.append(r)
                print(f"outbound: {sessions:3} x {size // 1024:2} KiB, {count:5} msgs, "
                      f"{srv.name:<7}: {describe(r)}", file=sys.stderr, flush=True)
    with open(args.out, "w") as f:
        json.dump({"scale": scale, "rounds": rounds, "points": results,
                   "command": os.environ.get("IMS_BENCH_COMMAND", "")}, f)


def summarize(runs):
    """One server's runs of one point: (msg/s or the reason there is none, CPU ms/msg, rate).
    A "*" marks a rate that may include late messages of an earlier incomplete run."""
    count = sum(r["count"] for r in runs)
    bad = [r for r in runs if r["relayed"] < r["count"]]
    cpu = f"{sum(r['cpu_s'] for r in runs) * 1000 / count:.2f}"
    if bad:
        b = bad[0]
        why = f"incomplete: sink got {b['relayed']} of {b['count']}"
        if b["rc"]:
            why += " (smtp-source failed)"
        return why, "-", None
    rate = count / sum(r["e2e_s"] for r in runs)
    star = "*" if any(r["owed_before"] for r in runs) else ""
    return f"{rate:.0f}{star}", cpu + star, rate


def report_rows(load):
    by = {}
    for r in load["points"]:
        by.setdefault((r["sessions"], r["size"]), {}).setdefault(r["server"], []).append(r)
    rows = []
    for (sessions, size), pair in by.items():
        i, p = summarize(pair["imsd"]), summarize(pair["postfix"])
        ratio = f"{i[2] / p[2]:.2f}" if i[2] and p[2] else "-"
        rows.append([str(sessions), f"{size // 1024} KiB", str(pair["imsd"][0]["count"]),
                     i[0], p[0], ratio, i[1], p[1]])
    return rows


def report_notes(load):
    """Why runs failed (smtp-source's last line, once per server and message), and what "*"
    means when it was used."""
    notes, seen = [], set()
    for r in load["points"]:
        if r["rc"] and r.get("error"):
            key = (r["server"], tuple(r["error"]))
            if key not in seen:
                seen.add(key)
                notes.append(f"{r['server']}: smtp-source exited {r['rc']} "
                             f"(first at {r['sessions']} x {r['size'] // 1024} KiB): "
                             + " ".join(r["error"]))
    if any(r["owed_before"] and r["relayed"] >= r["count"] for r in load["points"]):
        notes.append("*: an earlier run of this server was incomplete and not all of its "
                     "messages had reached the sink before this one began; they may be "
                     "counted here")
    return notes


HEAD = ["sessions", "size", "msgs", "imsd msg/s", "postfix msg/s", "imsd/postfix",
        "imsd CPU ms/msg", "postfix CPU ms/msg"]


def cmd_report(args):
    with open(args.load) as f:
        load = json.load(f)
    rows = report_rows(load)
    widths = [max(len(h), *(len(r[c]) for r in rows)) for c, h in enumerate(HEAD)]
    print(f"== outbound mail: smtp-source -> imsd or Postfix (relaying, SmartHost/relayhost) "
          f"-> smtp-sink, on loopback, one remote recipient, one message per connection; "
          f"msg/s = msgs / (smtp-source's start .. the sink has them all); "
          f"IMS_BENCH_SCALE={load['scale']:g}, {load['rounds']} run(s) per server and point, "
          f"who goes first alternating")
    if load.get("command"):
        print(f"command: {load['command']}")
    print(f"client:  {SMTP_SOURCE} -s SESSIONS -m MSGS -l SIZE -M {HELO} -f {SENDER} "
          f"-t {RECIPIENT} 127.0.0.1:PORT")
    print("  ".join(h.rjust(w) for h, w in zip(HEAD, widths)))
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
    notes = report_notes(load)
    for n in notes:
        print(n)
    print()
    print("markdown:")
    print()
    print("| " + " | ".join(HEAD) + " |")
    print("|" + "|".join("--:" for _ in HEAD) + "|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    if notes:
        print()
        for n in notes:
            print(f"- {n}")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("load")
    s.add_argument("--imsd", nargs=3, required=True, metavar=("PORT", "PIDFILE", "SINKOUT"))
    s.add_argument("--postfix", nargs=3, required=True, metavar=("PORT", "PIDFILE", "SINKOUT"))
    s.add_argument("--out", required=True)
    s = sub.add_parser("report")
    s.add_argument("load")
    args = ap.parse_args()
    if args.cmd == "report":
        cmd_report(args)
        return
    servers = [Server("imsd", *args.imsd), Server("postfix", *args.postfix)]
    cmd_load(args, servers)


if __name__ == "__main__":
    main()
