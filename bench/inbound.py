"""inbound.py - the measuring half of bench/inbound.sh: smtp-source load points against imsd and
Postfix (accepted/s, delivered/s, server CPU per message), idle connections (memory and CPU per
connection), and the report as a text table and as markdown. inbound.sh sets the servers up.

  inbound.py load   --imsd PORT MAILDIR PIDFILE --postfix PORT MAILDIR PIDFILE --out FILE
  inbound.py idle   --imsd ... --postfix ... --out FILE
  inbound.py report LOAD_FILE IDLE_FILE

Environment: IMS_BENCH_SCALE (message counts times this, default 1), IMS_BENCH_ROUNDS (runs per
server and point, default 2), IMS_BENCH_IDLE (idle connections, default 500), IMS_BENCH_HOLD
(seconds they are held, default 5); IMS_BENCH_POINTS, IMS_BENCH_PERF and IMS_BENCH_PERF_ARGS
(perfhook.py: only some load points; perf on imsd through each of its load runs, into
DIR/perf-<sessions>x<KiB>-<n>.data). The imsd PIDFILE is $IMS_ROOT/run/imsd.pid (one process). The Postfix PIDFILE is the master's
($queue_directory/pid/master.pid); every Postfix process is in the master's process group."""
import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import perfhook  # noqa: E402  (IMS_BENCH_PERF, IMS_BENCH_POINTS)

SMTP_SOURCE = "/usr/sbin/smtp-source"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# (sessions, message bytes, messages at scale 1): each point takes a few seconds for the
# slower server on a 2-core VM.
POINTS = [
    (1, 4096, 500),
    (1, 65536, 300),
    (20, 4096, 2000),
    (20, 65536, 800),
    (100, 4096, 2000),
    (100, 65536, 800),
]
WARMUP = (20, 4096, 100)  # run once per server before the points, not reported
POLL = 0.005  # seconds between counts of the Maildir while waiting for delivery
DELIVERY_WAIT_MIN = 60.0  # seconds delivery may take after the last 250, at least...
DELIVERY_WAIT_FACTOR = 10.0  # ...or this many times the sending time
FAILED_WAIT = 2.0  # seconds to wait for deliveries after smtp-source failed
SETTLE = 0.5  # seconds after the last delivery before CPU is read (queue file removal etc.)
CONNECT_TIMEOUT = 30.0  # seconds for one idle connection to get its banner
SOURCE_TIMEOUT = 600.0  # seconds smtp-source may run at most
FD_SPARE = 64  # descriptors the idle client keeps for itself beside its connections

SENDER = "sender@remote.test"
RECIPIENT = "bench@example.com"
HELO = "client.test"


def proc_stat(pid):
    """(pgrp, utime+stime, cutime+cstime) of pid in seconds, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2:].split()  # after the command name, which may hold spaces
    # fields[0] is field 3 (state) of proc(5): pgrp is 5, utime..cstime are 14..17.
    pgrp = int(fields[2])
    own = int(fields[11]) + int(fields[12])
    reaped = int(fields[13]) + int(fields[14])
    return pgrp, own / CLK_TCK, reaped / CLK_TCK


def smaps(pid):
    """(Pss, Rss) of pid in KiB from /proc/<pid>/smaps_rollup, or None if it is gone."""
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("Pss", "Rss"):
                    out[key] = int(value.split()[0])
    except OSError:
        return None
    return out.get("Pss", 0), out.get("Rss", 0)


class Server:
    def __init__(self, name, port, maildir, pidfile):
        self.name = name
        self.port = int(port)
        self.maildir = maildir
        self.pidfile = pidfile

    def main_pid(self):
        with open(self.pidfile) as f:
            return int(f.read().strip())

    def pids(self):
        """The server's processes: imsd's one; Postfix's master and its process group."""
        main = self.main_pid()
        if self.name == "imsd":
            return [main]
        group = [main]
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != main:
                st = proc_stat(int(entry))
                if st and st[0] == main:
                    group.append(int(entry))
        return group

    def cpu(self):
        """CPU seconds used so far: the live processes' own time, plus what the main process
        has reaped (Postfix's master collects the time of every child that exited)."""
        main = self.main_pid()
        total = 0.0
        for pid in self.pids():
            st = proc_stat(pid)
            if st:
                total += st[1] + (st[2] if pid == main else 0.0)
        return total

    def memory(self):
        """(Pss KiB, Rss KiB, processes) summed over the server's processes."""
        pss = rss = n = 0
        for pid in self.pids():
            m = smaps(pid)
            if m:
                pss += m[0]
                rss += m[1]
                n += 1
        return pss, rss, n

    def delivered(self):
        try:
            return len(os.listdir(os.path.join(self.maildir, "new")))
        except FileNotFoundError:
            return 0

    def clear_maildir(self):
        for sub in ("new", "cur", "tmp"):
            d = os.path.join(self.maildir, sub)
            try:
                entries = list(os.scandir(d))
            except FileNotFoundError:
                continue
            for e in entries:
                os.unlink(e.path)


def run_point(srv, sessions, size, count):
    """One load point against one server: a dict of the measures."""
    srv.clear_maildir()
    os.sync()  # the previous run's writeback must not land on this one
    time.sleep(0.2)
    cpu0 = srv.cpu()
    t0 = time.monotonic()
    p = subprocess.run([SMTP_SOURCE, "-s", str(sessions), "-m", str(count), "-l", str(size),
                        "-M", HELO, "-f", SENDER, "-t", RECIPIENT, f"127.0.0.1:{srv.port}"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=SOURCE_TIMEOUT)
    t1 = time.monotonic()
    # A failed run never delivers them all: wait only for what is on its way.
    deadline = t1 + (FAILED_WAIT if p.returncode else
                     max(DELIVERY_WAIT_MIN, DELIVERY_WAIT_FACTOR * (t1 - t0)))
    n = srv.delivered()
    while n < count and time.monotonic() < deadline:
        time.sleep(POLL)
        n = srv.delivered()
    t2 = time.monotonic()
    time.sleep(SETTLE)
    cpu1 = srv.cpu()
    r = {"server": srv.name, "sessions": sessions, "size": size, "count": count,
         "send_s": t1 - t0, "deliver_s": t2 - t0, "delivered": n, "cpu_s": cpu1 - cpu0,
         "rc": p.returncode}
    if p.returncode:
        r["error"] = p.stderr.decode(errors="replace").strip().splitlines()[-1:]
    return r


def cmd_load(args, servers):
    scale = float(os.environ.get("IMS_BENCH_SCALE", "1"))
    rounds = max(1, int(os.environ.get("IMS_BENCH_ROUNDS", "2")))
    chosen = perfhook.points(POINTS, "inbound.py")  # before the warm-up: a bad word fails at once
    for srv in servers:  # warm both up: processes forked, caches filled, Maildir made
        run_point(srv, *WARMUP)
        srv.clear_maildir()
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
                print(f"inbound: {sessions:3} x {size // 1024:2} KiB, {count:5} msgs, "
                      f"{srv.name:<7}: sent {r['send_s']:6.2f} s, delivered "
                      f"{r['delivered']}/{count} at {r['deliver_s']:6.2f} s, CPU "
                      f"{r['cpu_s']:6.2f} s"
                      + (f"  smtp-source exit {r['rc']}: {r.get('error')}" if r["rc"] else ""),
                      file=sys.stderr, flush=True)
            for srv in servers:
                srv.clear_maildir()
    with open(args.out, "w") as f:
        json.dump({"scale": scale, "rounds": rounds, "points": results}, f)


def read_banner(sk):
    """Read the greeting up to its last line ("220 ", not "220-")."""
    buf = b""
    while True:
        chunk = sk.recv(4096)
        if not chunk:
            raise OSError("closed before the banner")
        buf += chunk
        lines = buf.split(b"\r\n")
        if any(l[:4] == b"220 " for l in lines[:-1]):
            return
        if any(l[:3] != b"220" for l in lines[:-1]):
            raise OSError(f"not a 220 greeting: {buf[:100]!r}")


def idle_one(srv, k, hold):
    mem0 = srv.memory()
    cpu0 = srv.cpu()
    t0 = time.monotonic()
    socks = []
    error = None
    try:
        for _ in range(k):
            try:
                sk = socket.create_connection(("127.0.0.1", srv.port), timeout=CONNECT_TIMEOUT)
                socks.append(sk)
                read_banner(sk)
            except OSError as e:  # reported with the numbers, not fatal to the run
                error = f"connection {len(socks)}: {e}"
                break
        t_open = time.monotonic() - t0
        time.sleep(0.5)
        cpu1 = srv.cpu()
        mem1 = srv.memory()
        time.sleep(hold)
        cpu2 = srv.cpu()
        alive = 0  # every connection must still be open: the server may not have dropped any
        for sk in socks:
            sk.setblocking(False)
            try:
                if sk.recv(1):  # more to say is unexpected, but the connection is open
                    alive += 1
            except BlockingIOError:  # nothing to read, no end of file: open
                alive += 1
            except OSError:
                pass
    finally:
        for sk in socks:
            sk.close()
    return {"server": srv.name, "k": k, "open_s": t_open, "hold_s": hold,
            "pss0": mem0[0], "rss0": mem0[1], "procs0": mem0[2],
            "pss1": mem1[0], "rss1": mem1[1], "procs1": mem1[2],
            "cpu_open_s": cpu1 - cpu0, "cpu_hold_s": cpu2 - cpu1, "alive": alive,
            "error": error}


def cmd_idle(args, servers):
    k = int(os.environ.get("IMS_BENCH_IDLE", "500"))
    hold = float(os.environ.get("IMS_BENCH_HOLD", "5"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < k + FD_SPARE:
        soft = k + FD_SPARE if hard == resource.RLIM_INFINITY else min(hard, k + FD_SPARE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft < k + FD_SPARE:
        k = soft - FD_SPARE
        print(f"inbound: only {soft} descriptors (RLIMIT_NOFILE): {k} idle connections",
              file=sys.stderr)
    results = []
    for srv in servers:
        r = idle_one(srv, k, hold)
        results.append(r)
        time.sleep(1.0)  # let the closed sessions end before the other server's turn
        print(f"inbound: idle {k} connections, {srv.name:<7}: open {r['open_s']:.2f} s, "
              f"{r['alive']} still open after {hold:g} s", file=sys.stderr, flush=True)
    with open(args.out, "w") as f:
        json.dump({"idle": results}, f)


def summarize(runs):
    """One server's runs of one point: rates over all rounds (messages / summed time), or the
    reason there is none."""
    count = sum(r["count"] for r in runs)
    failed = [r for r in runs if r["rc"]]
    late = [r for r in runs if r["delivered"] < r["count"]]
    acc = "error" if failed else f"{count / sum(r['send_s'] for r in runs):.0f}"
    if failed:
        dlv = "error"
    elif late:
        dlv = f"timeout {late[0]['delivered']}/{late[0]['count']}"
    else:
        dlv = f"{count / sum(r['deliver_s'] for r in runs):.0f}"
    cpu = f"{sum(r['cpu_s'] for r in runs) * 1000 / count:.2f}"
    return acc, dlv, cpu


def report_rows(load):
    by = {}
    for r in load["points"]:
        by.setdefault((r["sessions"], r["size"]), {}).setdefault(r["server"], []).append(r)
    rows = []
    for (sessions, size), pair in by.items():
        i, p = summarize(pair["imsd"]), summarize(pair["postfix"])
        rows.append([f"{sessions} x {size // 1024} KiB", str(pair["imsd"][0]["count"]),
                     i[0], p[0], i[1], p[1], i[2], p[2]])
    return rows


HEAD = ["sessions x size", "msgs", "imsd acc/s", "postfix acc/s", "imsd dlv/s",
        "postfix dlv/s", "imsd CPU ms/msg", "postfix CPU ms/msg"]


def idle_lines(idle):
    out = []
    for r in idle["idle"]:
        k = r["k"]
        pss = (r["pss1"] - r["pss0"]) / k
        rss = (r["rss1"] - r["rss0"]) / k
        out.append(
            f"{r['server']}: {k} idle connections (banner read, then silent), opened in "
            f"{r['open_s']:.2f} s; memory per connection: PSS {pss:.1f} KiB, RSS {rss:.1f} KiB "
            f"(processes {r['procs0']} -> {r['procs1']}; PSS sum {r['pss0'] / 1024:.1f} -> "
            f"{r['pss1'] / 1024:.1f} MiB, RSS sum {r['rss0'] / 1024:.1f} -> "
            f"{r['rss1'] / 1024:.1f} MiB); CPU to accept them {r['cpu_open_s'] * 1000:.0f} ms "
            f"({r['cpu_open_s'] * 1e6 / k:.0f} us/conn), CPU while holding them "
            f"{r['hold_s']:g} s: {r['cpu_hold_s'] * 1000:.0f} ms; still open: {r['alive']}/{k}"
            + (f"; FAILED at {r['error']}" if r.get("error") else ""))
    return out


def cmd_report(args):
    with open(args.load) as f:
        load = json.load(f)
    with open(args.idle) as f:
        idle = json.load(f)
    rows = report_rows(load)
    widths = [max(len(h), *(len(r[c]) for r in rows)) for c, h in enumerate(HEAD)]
    print(f"== inbound mail: imsd vs Postfix, smtp-source on loopback, one recipient, one "
          f"message per connection; IMS_BENCH_SCALE={load['scale']:g}, msgs per run, "
          f"{load['rounds']} run(s) per server and point, who goes first alternating")
    print("  ".join(h.rjust(w) for h, w in zip(HEAD, widths)))
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
    print()
    for line in idle_lines(idle):
        print(line)
    print()
    print("markdown:")
    print()
    print("| " + " | ".join(HEAD) + " |")
    print("|" + "|".join("---" if c == 0 else "--:" for c in range(len(HEAD))) + "|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()
    for r in idle["idle"]:
        k = r["k"]
        print(f"- idle, {r['server']}: {k} connections; per connection PSS "
              f"{(r['pss1'] - r['pss0']) / k:.1f} KiB, RSS {(r['rss1'] - r['rss0']) / k:.1f} KiB "
              f"({r['procs1']} processes, RSS sum {r['rss1'] / 1024:.1f} MiB); accept CPU "
              f"{r['cpu_open_s'] * 1e6 / k:.0f} µs/conn; CPU while holding {r['hold_s']:g} s: "
              f"{r['cpu_hold_s'] * 1000:.0f} ms")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("load", "idle"):
        s = sub.add_parser(name)
        s.add_argument("--imsd", nargs=3, required=True, metavar=("PORT", "MAILDIR", "PIDFILE"))
        s.add_argument("--postfix", nargs=3, required=True,
                       metavar=("PORT", "MAILDIR", "PIDFILE"))
        s.add_argument("--out", required=True)
    s = sub.add_parser("report")
    s.add_argument("load")
    s.add_argument("idle")
    args = ap.parse_args()
    if args.cmd == "report":
        cmd_report(args)
        return
    servers = [Server("imsd", *args.imsd), Server("postfix", *args.postfix)]
    if args.cmd == "load":
        cmd_load(args, servers)
    else:
        cmd_idle(args, servers)


if __name__ == "__main__":
    main()
