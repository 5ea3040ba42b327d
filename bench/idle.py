"""idle.py - the measuring half of bench/idle.sh: K idle connections held against imsd (memory,
CPU, time to open them, all still open at the end), and smtp-source's load with and without
them, rounds alternating. idle.sh sets imsd up. Prints a text and a markdown report; asserts
nothing.

  idle.py run    --port PORT --maildir DIR --pidfile FILE --imsctl PATH --out FILE
  idle.py report FILE

Environment: IMS_BENCH_IDLE (K, default 10000), IMS_BENCH_HOLD (seconds the first K are held
idle, default 5), IMS_BENCH_ROUNDS (rounds of the load with and without them, default 3),
IMS_BENCH_SESSIONS (default 20), IMS_BENCH_MSGS (messages per load run, default 2000),
IMS_BENCH_SIZE (bytes per message, default 4096), IMS_BENCH_SOURCES (source addresses the idle
connections come from, 127.0.0.2 on, default 8), IMS_BENCH_PERF and IMS_BENCH_PERF_ARGS
(perfhook.py: perf on imsd through each load run, into DIR/perf-idle<K>-<n>.data)."""
import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inbound  # noqa: E402  (the Server class, run_point, read_banner)
import perfhook  # noqa: E402  (IMS_BENCH_PERF)

FD_SPARE = 64  # descriptors the client keeps for itself beside its idle connections
CONNECT_TIMEOUT = 30.0  # seconds for one idle connection to get its banner
SETTLE = 0.5  # seconds after the last banner before memory is read
CLOSE_SETTLE = 1.0  # seconds after closing the idle ones, for imsd to end their sessions
WARMUP = (20, 4096, 200)  # one load run before the rounds, not reported
# Seconds from the end of one load run to the start of the next, whichever kind: the disk
# (discards, writeback of the last run's deletions) goes on after a run, and a run that waited
# longer (for its K idle to open) would start on a quieter disk. Longer than K take to open.
GAP = float(os.environ.get("IMS_BENCH_GAP", "5"))
# Linux's IP_BIND_ADDRESS_NO_PORT (Python has no name for it before 3.12): bind() takes only
# the address and connect() picks the port, so ports are per (source, destination) pair.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def env_int(name, default):
    return int(os.environ.get(name, str(default)))


def status_kib(pid, key):
    """A "Key:   N kB" line of /proc/<pid>/status, in KiB (None if pid is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def open_files_limit(pid):
    """imsd's soft limit of open files from /proc/<pid>/limits (a number, or "unlimited")."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft = line.split()[3]
                return soft if soft == "unlimited" else int(soft)
    return None


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def kernel_memory():
    """(Slab KiB from /proc/meminfo, TCP socket buffer pages from /proc/net/sockstat): the
    kernel's side of the connections, both ends of loopback counted."""
    slab = tcp_pages = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Slab:"):
                slab = int(line.split()[1])
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                parts = line.split()
                tcp_pages = int(parts[parts.index("mem") + 1])
    return slab, tcp_pages


def imsd_counters(imsctl):
    """imsctl stats --json's counters (key -> number), or {} if it failed."""
    p = subprocess.run([imsctl, "stats", "--json"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, timeout=30)
    try:
        return json.loads(p.stdout)["counters"]
    except (ValueError, KeyError):
        return {}


class Idle:
    """K connections, each past the 220 banner and silent, from several loopback sources."""

    def __init__(self, port, k, sources):
        self.port = port
        self.k = k
        self.sources = [f"127.0.0.{2 + i}" for i in range(sources)]
        self.socks = []
        self.error = None
        self.open_s = 0.0

    def open(self):
        t0 = time.monotonic()
        for i in range(self.k):
            sk = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sk.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sk.bind((self.sources[i % len(self.sources)], 0))
                sk.settimeout(CONNECT_TIMEOUT)
                sk.connect(("127.0.0.1", self.port))
                self.socks.append(sk)
                inbound.read_banner(sk)
            except OSError as e:  # reported with the numbers, not fatal to the run
                if sk not in self.socks:
                    sk.close()
                self.error = f"connection {i}: {e}"
                break
        self.open_s = time.monotonic() - t0

    def alive(self):
        """How many are still open: nothing to read and no end of file (imsd said nothing
        after its banner and closed none of them)."""
        n = 0
        for sk in self.socks:
            sk.setblocking(False)
            try:
                if sk.recv(1):  # unexpected words (a 421 on time-out), but still open
                    n += 1
            except BlockingIOError:
                n += 1
            except OSError:
                pass
        return n

    def close(self):
        for sk in self.socks:
            sk.close()
        self.socks = []


def memory(srv):
    pid = srv.main_pid()
    pss_rss = inbound.smaps(pid) or (0, 0)
    slab, tcp_pages = kernel_memory()
    return {"rss": status_kib(pid, "VmRSS"), "pss": pss_rss[0], "fds": fd_count(pid),
            "slab": slab, "tcp_pages": tcp_pages}


def idle_phase(srv, imsctl, k, sources, hold):
    """The first K on a fresh imsd: memory before and after, CPU to accept and while held."""
    mem0 = memory(srv)
    cpu0 = srv.cpu()
    idle = Idle(srv.port, k, sources)
    try:
        idle.open()
        time.sleep(SETTLE)
        cpu1 = srv.cpu()
        mem1 = memory(srv)
        time.sleep(hold)
        cpu2 = srv.cpu()
        mem2 = memory(srv)
        alive = idle.alive()
        opened = len(idle.socks)
        counters = imsd_counters(imsctl)
    finally:
        idle.close()
    time.sleep(CLOSE_SETTLE)
    mem3 = memory(srv)
    return {"k": k, "opened": opened, "open_s": idle.open_s,
            "error": idle.error, "hold_s": hold, "mem0": mem0, "mem1": mem1, "mem2": mem2,
            "mem_closed": mem3, "cpu_open_s": cpu1 - cpu0, "cpu_hold_s": cpu2 - cpu1,
            "alive": alive, "imsd_current": counters.get("connections_inbound"),
            "imsd_rejected": counters.get("connections_rejected_total")}


def load_run(srv, imsctl, point, k, sources, last_end):
    """One smtp-source run, with K idle connections held through it when k > 0, starting GAP
    seconds after last_end (CLOCK_MONOTONIC) at the earliest."""
    idle = Idle(srv.port, k, sources) if k else None
    extra = {}
    try:
        if idle:
            idle.open()
            time.sleep(SETTLE)
            extra["open_s"] = idle.open_s
            extra["error"] = idle.error
            extra["mem_before"] = memory(srv)
        time.sleep(max(0.0, last_end + GAP - time.monotonic()))
        extra["gap_s"] = time.monotonic() - last_end
        t0 = time.monotonic()
        r = perfhook.around(srv, f"idle{k}", lambda: inbound.run_point(srv, *point))
        extra["end"] = time.monotonic()
        if idle:
            extra["held_s"] = time.monotonic() - t0 + SETTLE
            extra["mem_after"] = memory(srv)
            extra["alive"] = idle.alive()
            counters = imsd_counters(imsctl)
            extra["imsd_current"] = counters.get("connections_inbound")
    finally:
        if idle:
            idle.close()
    if idle:
        time.sleep(CLOSE_SETTLE)
    r.update(extra)
    r["idle"] = k
    return r


def cmd_run(args):
    k = env_int("IMS_BENCH_IDLE", 10000)
    hold = float(os.environ.get("IMS_BENCH_HOLD", "5"))
    rounds = max(1, env_int("IMS_BENCH_ROUNDS", 3))
    point = (env_int("IMS_BENCH_SESSIONS", 20), env_int("IMS_BENCH_SIZE", 4096),
             env_int("IMS_BENCH_MSGS", 2000))
    sources = max(1, env_int("IMS_BENCH_SOURCES", 8))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = k + FD_SPARE
    if soft < want:
        soft = want if hard == resource.RLIM_INFINITY else min(hard, want)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft < want:
        print(f"idle: only {soft} descriptors (RLIMIT_NOFILE): {soft - FD_SPARE} idle "
              f"connections, not {k}", file=sys.stderr)
        k = soft - FD_SPARE
    srv = inbound.Server("imsd", args.port, args.maildir, args.pidfile)
    pid = srv.main_pid()
    limit = open_files_limit(pid)
    print(f"idle: imsd pid {pid}, open files limit {limit}, {fd_count(pid)} open; client "
          f"limit {soft}", file=sys.stderr, flush=True)
    out = {"k": k, "rounds": rounds, "point": point, "sources": sources,
           "imsd_nofile": limit, "client_nofile": soft}

    first = idle_phase(srv, args.imsctl, k, sources, hold)
    out["idle"] = first
    print(f"idle: {k} opened in {first['open_s']:.2f} s, {first['alive']} still open after "
          f"{hold:g} s, imsd VmRSS {first['mem0']['rss']} -> {first['mem1']['rss']} KiB"
          + (f"; FAILED at {first['error']}" if first["error"] else ""),
          file=sys.stderr, flush=True)

    inbound.run_point(srv, *WARMUP)  # heap grown, Maildir made: not reported
    last_end = time.monotonic()
    runs = []
    for rnd in range(rounds):
        order = (0, k) if rnd % 2 == 0 else (k, 0)
        for n in order:
            r = load_run(srv, args.imsctl, point, n, sources, last_end)
            last_end = r["end"]
            r["round"] = rnd
            runs.append(r)
            print(f"idle: round {rnd}, {n:5} idle: {point[0]} x {point[1] // 1024} KiB x "
                  f"{point[2]}: sent {r['send_s']:.2f} s, delivered {r['delivered']}/"
                  f"{r['count']} at {r['deliver_s']:.2f} s, CPU {r['cpu_s']:.2f} s, "
                  f"{r['gap_s']:.1f} s after the last run"
                  + (f", idle still open {r['alive']}/{n}" if n else "")
                  + (f"  smtp-source exit {r['rc']}: {r.get('error')}" if r["rc"] else ""),
                  file=sys.stderr, flush=True)
    out["runs"] = runs
    with open(args.out, "w") as f:
        json.dump(out, f)
    report(out)


def rates(runs):
    """(acc/s, dlv/s, CPU ms/msg) over runs: messages / summed time; None when any failed."""
    count = sum(r["count"] for r in runs)
    if any(r["rc"] or r["delivered"] < r["count"] for r in runs):
        return None
    return (count / sum(r["send_s"] for r in runs), count / sum(r["deliver_s"] for r in runs),
            sum(r["cpu_s"] for r in runs) * 1000 / count)


def report(out):
    k = out["k"]
    f = out["idle"]
    m0, m1, m2, m3 = f["mem0"], f["mem1"], f["mem2"], f["mem_closed"]
    sessions, size, msgs = out["point"]
    lines = [
        f"== idle connections: {k} against imsd (banner read, then silent; from "
        f"{out['sources']} loopback sources), imsd open files limit {out['imsd_nofile']}",
        f"opened in {f['open_s']:.2f} s ({k / f['open_s']:.0f}/s); still open after "
        f"{f['hold_s']:g} s: {f['alive']}/{k}; imsd counts {f['imsd_current']} inbound, "
        f"{f['imsd_rejected']} rejected" + (f"; FAILED at {f['error']}" if f["error"] else ""),
        f"imsd VmRSS {m0['rss']} -> {m1['rss']} KiB: {(m1['rss'] - m0['rss']) / k:.2f} KiB "
        f"per connection (PSS {(m1['pss'] - m0['pss']) / k:.2f}); after {f['hold_s']:g} s "
        f"idle {m2['rss']} KiB; after closing them {m3['rss']} KiB",
        f"kernel (both ends of loopback): Slab {(m1['slab'] - m0['slab']) / k:.2f} KiB per "
        f"connection, TCP buffers {m0['tcp_pages']} -> {m1['tcp_pages']} pages",
        f"imsd CPU to accept them {f['cpu_open_s'] * 1000:.0f} ms "
        f"({f['cpu_open_s'] * 1e6 / k:.0f} us each); while holding them {f['hold_s']:g} s: "
        f"{f['cpu_hold_s'] * 1000:.0f} ms",
        "",
        f"load: smtp-source -s {sessions} -m {msgs} -l {size}, {out['rounds']} round(s), "
        f"with and without the {k} idle, alternating",
    ]
    head = ["round", "idle", "gap s", "acc/s", "dlv/s", "CPU ms/msg", "idle open s", "idle alive",
            "VmRSS KiB before/after"]
    rows = []
    for r in out["runs"]:
        ok = not r["rc"] and r["delivered"] >= r["count"]
        rss = (f"{r['mem_before']['rss']}/{r['mem_after']['rss']}" if r["idle"] else "-")
        rows.append([str(r["round"]), str(r["idle"]), f"{r['gap_s']:.1f}",
                     f"{r['count'] / r['send_s']:.0f}" if not r["rc"] else "error",
                     f"{r['count'] / r['deliver_s']:.0f}" if ok else
                     f"{r['delivered']}/{r['count']}",
                     f"{r['cpu_s'] * 1000 / r['count']:.2f}",
                     f"{r['open_s']:.2f}" if r["idle"] else "-",
                     f"{r['alive']}/{r['idle']}" if r["idle"] else "-", rss])
    widths = [max(len(h), *(len(row[c]) for row in rows)) for c, h in enumerate(head)]
    lines.append("  ".join(h.rjust(w) for h, w in zip(head, widths)))
    for row in rows:
        lines.append("  ".join(c.rjust(w) for c, w in zip(row, widths)))
    without = rates([r for r in out["runs"] if not r["idle"]])
    with_ = rates([r for r in out["runs"] if r["idle"]])
    if without and with_:
        lines.append(f"without idle: {without[0]:.0f} acc/s, {without[1]:.0f} dlv/s, "
                     f"{without[2]:.2f} CPU ms/msg; with {k} idle: {with_[0]:.0f} acc/s, "
                     f"{with_[1]:.0f} dlv/s, {with_[2]:.2f} CPU ms/msg; ratio with/without: "
                     f"acc {with_[0] / without[0]:.3f}, dlv {with_[1] / without[1]:.3f}, CPU "
                     f"{with_[2] / without[2]:.3f}")
        # The VM's disk and CPUs are shared: rounds differ by up to 2x, so each round's own
        # pair (run back to back) is compared too, and the median of those ratios given.
        pairs = []
        for rnd in range(out["rounds"]):
            a = rates([r for r in out["runs"] if r["round"] == rnd and not r["idle"]])
            b = rates([r for r in out["runs"] if r["round"] == rnd and r["idle"]])
            if a and b:
                pairs.append((b[1] / a[1], b[2] / a[2]))
        if pairs:
            lines.append("per round, with/without: dlv " + ", ".join(f"{x:.2f}" for x, _ in pairs)
                         + f" (median {statistics.median(x for x, _ in pairs):.2f}); CPU ms/msg "
                         + ", ".join(f"{y:.2f}" for _, y in pairs)
                         + f" (median {statistics.median(y for _, y in pairs):.2f})")
    else:
        lines.append("a run failed or did not deliver everything: no ratio")
    print("\n".join(lines))
    print()
    print("markdown:")
    print()
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("--:" for _ in head) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("run")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--maildir", required=True)
    s.add_argument("--pidfile", required=True)
    s.add_argument("--imsctl", required=True)
    s.add_argument("--out", required=True)
    s = sub.add_parser("report")
    s.add_argument("file")
    args = ap.parse_args()
    if args.cmd == "run":
        cmd_run(args)
    else:
        with open(args.file) as f:
            report(json.load(f))


if __name__ == "__main__":
    main()
