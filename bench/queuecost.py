"""queuecost.py - the measuring half of bench/queuecost.sh: what a big outbound queue costs imsd.
Two installed, stopped IMS_ROOTs (one with an empty Out, one to be given N queued messages):
start-up until the queue is loaded, memory after it (VmRSS, VmHWM, per queued recipient), then
inbound smtp-source rounds against both, alternating, and the same with the N messages due (their
next try now, so the scheduler works against the 451 destination during the load). Prints a
table; asserts nothing. queuecost.sh installs the roots and the 451 destination.

  queuecost.py --bin DIR --empty ROOT PORT --full ROOT PORT --route SPEC --n N --out FILE
  queuecost.py report FILE

Environment: IMS_BENCH_ROUNDS (rounds per configuration, default 3), IMS_BENCH_DUE_ROUNDS
(rounds with the queue due, default 2; 0 skips them), IMS_BENCH_COLD (1, the default: one
more start of the full root with the page cache dropped first; 0 skips it), IMS_BENCH_PERF (a
directory: after the measured rounds, one more round per configuration under perf record -g,
its data and report by symbol left there)."""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from inbound import Server, run_point, proc_stat  # noqa: E402 (the same load and counting)

LOAD = (20, 4096, 2000)  # smtp-source -s 20 -l 4096 -m 2000, as inbound.sh's 20 x 4 KiB point
WARMUP = (20, 4096, 100)  # once per server before the rounds, not reported
LOAD_WAIT = 120.0  # seconds a start may take to load the queue, at most
POLL = 0.05  # seconds between looks at the queue's counter while it loads
SETTLE = 1.0  # seconds after the queue is loaded before memory is read
HERE = os.path.dirname(os.path.abspath(__file__))


class Ims:
    """One installed IMS_ROOT: its imsctl, its counters, its process."""

    def __init__(self, name, bindir, root, port):
        self.name = name
        self.bin = bindir
        self.root = root
        self.env = dict(os.environ, IMS_ROOT=root)
        self.srv = Server("imsd", port, os.path.join(root, "store", "bench"),
                          os.path.join(root, "run", "imsd.pid"))

    def ctl(self, *args, check=True):
        return subprocess.run([os.path.join(self.bin, "imsctl"), *args], env=self.env,
                              stdin=subprocess.DEVNULL, capture_output=True, check=check,
                              timeout=180).stdout

    def counters(self):
        try:
            return json.loads(self.ctl("stats", "--json"))["counters"]
        except (subprocess.CalledProcessError, ValueError, KeyError):
            return {}

    def queued(self):
        return self.counters().get("queue_messages.outbound", -1)

    def pid(self):
        return self.srv.main_pid()

    def status(self):
        """VmRSS and VmHWM of imsd in KiB."""
        out = {}
        with open(f"/proc/{self.pid()}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0])
        return out

    def cpu(self):
        """CPU seconds imsd has used; 0 when it is not running."""
        try:
            st = proc_stat(self.pid())
        except (OSError, ValueError):
            return 0.0
        return st[1] if st else 0.0

    def start(self, n):
        """Start imsd and wait until its queue holds n messages: the times and memory."""
        t0 = time.monotonic()
        self.ctl("start")
        t1 = time.monotonic()
        q = self.queued()
        while q != n and time.monotonic() < t1 + LOAD_WAIT:
            time.sleep(POLL)
            q = self.queued()
        t2 = time.monotonic()
        cpu = self.cpu()
        time.sleep(SETTLE)
        return {"ready_s": t1 - t0, "loaded_s": t2 - t0, "queued": q, "cpu_s": cpu,
                **self.status()}

    def stop(self):
        self.ctl("stop", "--force", check=False)

    def out_dir(self):
        return os.path.join(self.root, "imcdata", "Out")

    def fill(self, n, route, due):
        """Out emptied, then n queued messages generated into it (imsd stopped)."""
        out = self.out_dir()
        for e in os.scandir(out):
            if e.is_file(follow_symlinks=False):  # Out/Archive stays
                os.unlink(e.path)
        args = [sys.executable, os.path.join(HERE, "queuegen.py"), out, str(n), "--route", route]
        subprocess.run(args + (["--due"] if due else []), check=True)
        if os.getuid() == 0:  # the service account (nobody) owns the spool
            st = os.stat(os.path.join(self.root, "imcdata"))
            for e in os.scandir(out):
                if e.is_file(follow_symlinks=False):
                    os.chown(e.path, st.st_uid, st.st_gid)
        os.sync()


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def inbound_round(ims, other, label, rnd):
    """One LOAD round against ims while `other` stays idle: the measures, with what the queue
    did meanwhile (deferred recipients, the idle one's CPU)."""
    key = "recipients_deferred_total.remote"
    c0 = ims.counters()
    idle0 = other.cpu() if other else 0.0
    r = run_point(ims.srv, *LOAD)
    c1 = ims.counters()
    r.update({"config": label, "round": rnd,
              "other_cpu_s": other.cpu() - idle0 if other else 0.0,
              "deferred": c1.get(key, 0) - c0.get(key, 0),
              "deferred_since_start": c1.get(key, 0), "rss_kib": ims.status()["VmRSS"]})
    rate = r["count"] / r["deliver_s"] if r["deliver_s"] else 0
    print(f"queuecost: {label:<5} round {rnd}: sent {r['send_s']:5.2f} s, delivered "
          f"{r['delivered']}/{r['count']} at {r['deliver_s']:5.2f} s ({rate:.0f}/s), CPU "
          f"{r['cpu_s'] * 1000 / r['count']:.2f} ms/msg, remote recipients deferred meanwhile "
          f"{r['deferred']} ({r['deferred_since_start']} since its start)"
          + (f", idle imsd's CPU {r['other_cpu_s'] * 1000:.0f} ms" if other else "")
          + (f"  smtp-source exit {r['rc']}: {r.get('error')}" if r["rc"] else ""),
          file=sys.stderr, flush=True)
    ims.srv.clear_maildir()
    return r


def profile(ims, other, label, perf_dir):
    """One more round against ims under perf record -g: perf-LABEL.data and its report by
    symbol (perf-LABEL.txt) in perf_dir."""
    data = os.path.join(perf_dir, f"perf-{label}.data")
    p = subprocess.Popen(["perf", "record", "-q", "-g", "-p", str(ims.pid()), "-o", data],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    time.sleep(0.5)  # perf attached
    inbound_round(ims, other, f"{label} (perf)", 0)
    p.send_signal(2)  # SIGINT: perf writes its file and exits
    p.wait(timeout=60)
    with open(os.path.join(perf_dir, f"perf-{label}.txt"), "w") as f:
        subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "sym",
                        "--stdio", "-g", "none"], stdout=f, stderr=subprocess.DEVNULL)


def cmd_run(args):
    rounds = max(1, int(os.environ.get("IMS_BENCH_ROUNDS", "3")))
    due_rounds = max(0, int(os.environ.get("IMS_BENCH_DUE_ROUNDS", "2")))
    cold = os.environ.get("IMS_BENCH_COLD", "1") != "0"
    perf_dir = os.environ.get("IMS_BENCH_PERF")
    empty = Ims("empty", args.bin, *args.empty)
    full = Ims("full", args.bin, *args.full)
    n = args.n
    res = {"n": n, "rounds": rounds, "due_rounds": due_rounds, "load": LOAD, "starts": [],
           "runs": []}

    def start(ims, label, count):
        s = ims.start(count)
        s["config"] = label
        res["starts"].append(s)
        print(f"queuecost: start {label:<10}: ready {s['ready_s']:.2f} s, {s['queued']} "
              f"queued after {s['loaded_s']:.2f} s, VmRSS {s['VmRSS'] / 1024:.1f} MiB, "
              f"VmHWM {s['VmHWM'] / 1024:.1f} MiB", file=sys.stderr, flush=True)
        return s

    print(f"queuecost: generating {n} messages in {full.out_dir()}", file=sys.stderr)
    t0 = time.monotonic()
    full.fill(n, args.route, due=False)
    print(f"queuecost: generated in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    if cold:  # a start after a reboot: every spool file read from the disk
        drop_caches()
        start(full, "full cold", n)
        full.stop()
    start(empty, "empty", 0)
    start(full, "full", n)
    for ims, other in ((empty, full), (full, empty)):
        run_point(ims.srv, *WARMUP)
        ims.srv.clear_maildir()
    for rnd in range(rounds):
        pair = [(empty, full, "empty"), (full, empty, "full")]
        for ims, other, label in pair if rnd % 2 == 0 else pair[::-1]:
            res["runs"].append(inbound_round(ims, other, label, rnd))
    for ims, label in ((empty, "empty"), (full, "full")):
        res.setdefault("after", {})[label] = ims.status()
    if perf_dir:  # after the measured rounds, which perf would slow down
        for ims, other, label in ((empty, full, "empty"), (full, empty, "full")):
            profile(ims, other, label, perf_dir)
    # The same n, due: each round starts the full root afresh on a newly generated queue, so
    # that the scheduler is busy with it from the start of the round. The empty root's rounds
    # of this phase run with the full one stopped, so that its work is not theirs.
    for rnd in range(due_rounds):
        full.stop()
        r = inbound_round(empty, None, "empty", rnd)
        r["phase"] = "due"
        res["runs"].append(r)
        full.fill(n, args.route, due=True)
        start(full, "due", n)
        r = inbound_round(full, empty, "due", rnd)
        r["phase"] = "due"
        res["runs"].append(r)
    if perf_dir and due_rounds:
        full.stop()
        full.fill(n, args.route, due=True)
        start(full, "due (perf)", n)
        profile(full, empty, "due", perf_dir)
    full.stop()
    with open(args.out, "w") as f:
        json.dump(res, f)


def rate(runs):
    count = sum(r["count"] for r in runs)
    late = [r for r in runs if r["delivered"] < r["count"] or r["rc"]]
    if late:
        return f"incomplete {late[0]['delivered']}/{late[0]['count']}", "", "", ""
    each = sorted(r["count"] / r["deliver_s"] for r in runs)
    mid = len(each) // 2
    median = each[mid] if len(each) % 2 else (each[mid - 1] + each[mid]) / 2
    return (f"{count / sum(r['send_s'] for r in runs):.0f}",
            f"{count / sum(r['deliver_s'] for r in runs):.0f}",
            f"{sum(r['cpu_s'] for r in runs) * 1000 / count:.2f}", f"{median:.0f}")


def cmd_report(args):
    with open(args.file) as f:
        res = json.load(f)
    n = res["n"]
    s, (sessions, size, count) = res["starts"], res["load"]
    print(f"== a big outbound queue: imsd with {n} messages (1 recipient each) in Out, all "
          f"routed to a smart host that answers 4xx to RCPT")
    print()
    print("start-up (imsctl start until queue_messages.outbound shows them all; memory 1 s "
          "later):")
    print(f"  {'configuration':<12} {'ready s':>8} {'loaded s':>9} {'CPU s':>6} "
          f"{'VmRSS MiB':>10} {'VmHWM MiB':>10}")
    for x in s:
        print(f"  {x['config']:<12} {x['ready_s']:8.2f} {x['loaded_s']:9.2f} {x['cpu_s']:6.2f} "
              f"{x['VmRSS'] / 1024:10.1f} {x['VmHWM'] / 1024:10.1f}")
    e = next(x for x in s if x["config"] == "empty")
    fl = next(x for x in s if x["config"] == "full")
    print(f"  memory per queued recipient: VmRSS {(fl['VmRSS'] - e['VmRSS']) * 1024 / n:.0f} "
          f"bytes, VmHWM {(fl['VmHWM'] - e['VmHWM']) * 1024 / n:.0f} bytes")
    print()
    print(f"inbound: smtp-source -s {sessions} -m {count} -l {size} to bench@example.com, "
          f"delivered files counted in the Maildir; rates over all rounds")
    print(f"  {'configuration':<32} {'rounds':>6} {'acc/s':>6} {'dlv/s':>6} {'median':>6} "
          f"{'vs empty':>8} {'CPU ms/msg':>10} {'deferred':>9}")
    phases = [("steady", "empty", "Out empty"),
              ("steady", "full", f"{n} waiting (next try +1 d)"),
              ("due", "empty", "Out empty (due phase)"),
              ("due", "due", f"{n} due (next try now)")]
    base = {}
    for phase, cfg, label in phases:
        runs = [r for r in res["runs"] if r.get("phase", "steady") == phase and r["config"] == cfg]
        if not runs:
            continue
        acc, dlv, cpu, median = rate(runs)
        if cfg == "empty":
            base[phase] = dlv
        vs = ""
        if cfg != "empty" and dlv and base.get(phase, "").isdigit():
            vs = f"{(float(dlv) / float(base[phase]) - 1) * 100:+.1f} %"
        deferred = sum(r["deferred"] for r in runs)
        print(f"  {label:<32} {len(runs):6} {acc:>6} {dlv:>6} {median:>6} {vs:>8} {cpu:>10} "
              f"{deferred:9}")
    each = " ".join(f"{r['config']}:{r['count'] / r['deliver_s']:.0f}" for r in res["runs"])
    print(f"  each round's dlv/s, in order: {each}")
    idle = max((r["other_cpu_s"] for r in res["runs"] if r.get("phase", "steady") == "steady"),
               default=0)
    print(f"  the idle imsd's CPU during the other's rounds (steady phase): at most "
          f"{idle * 1000:.0f} ms a round")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "report":
        ap = argparse.ArgumentParser()
        ap.add_argument("cmd")
        ap.add_argument("file")
        cmd_report(ap.parse_args())
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--empty", nargs=2, required=True, metavar=("ROOT", "PORT"))
    ap.add_argument("--full", nargs=2, required=True, metavar=("ROOT", "PORT"))
    ap.add_argument("--route", required=True, metavar="SPEC")
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--out", required=True)
    cmd_run(ap.parse_args())


if __name__ == "__main__":
    main()
