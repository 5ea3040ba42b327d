"""starttls.py - the measuring half of bench/starttls.sh: build/bench/tlsload (STARTTLS, one
message per connection) against imsd and Postfix: messages/s at 1, 20 and 100 sessions,
handshakes/s, and the memory an idle TLS session costs each server. starttls.sh sets the
servers up; the Server class (processes, CPU, memory, Maildir) is inbound.py's.

  starttls.py load       TLSLOAD --imsd PORT MAILDIR PIDFILE --postfix ... --out FILE
  starttls.py handshakes TLSLOAD --imsd ... --postfix ... --out FILE
  starttls.py idle       TLSLOAD --imsd ... --postfix ... [--plain] --out FILE
  starttls.py report     LOAD HANDSHAKES IDLE_TLS IDLE_PLAIN

Environment: IMS_BENCH_SCALE (message and handshake counts times this, default 1),
IMS_BENCH_ROUNDS (runs per server and point, default 2), IMS_BENCH_IDLE (idle sessions,
default 1000)."""
import argparse
import json
import os
import select
import subprocess
import sys
import time

from inbound import Server

# (sessions, message bytes, messages at scale 1, tlsload --quickack): first as a real peer
# (delayed ACKs), then acknowledging at once (the servers' own cost; see tlsload.c).
POINTS = [(1, 4096, 200, False), (20, 4096, 2000, False), (100, 4096, 2000, False),
          (1, 4096, 500, True), (20, 4096, 2000, True), (100, 4096, 2000, True)]
WARMUP = (20, 4096, 100, False)  # once per server before the points, not reported
HANDSHAKES = [(1, 500), (20, 2000)]  # (sessions, handshakes at scale 1)
TLS = ["--tls13"]  # both servers allow TLS 1.2 and 1.3; the client asks for 1.3
IDLE_SETUP = 20  # idle sessions being set up at once
POLL = 0.005
DELIVERY_WAIT_MIN = 60.0
DELIVERY_WAIT_FACTOR = 10.0
SETTLE = 0.5  # seconds after the last delivery (or the idle sessions' set-up) before reading
RUN_TIMEOUT = 600  # seconds one tlsload run may take (its -T)
READY_TIMEOUT = 300.0  # seconds for "idle N ready"
EXIT_TIMEOUT = 30.0  # seconds for tlsload to end after its stdin closed

SENDER = "sender@remote.test"
RECIPIENT = "bench@example.com"
HELO = "client.test"


def fields(line):
    """tlsload's closing line "tlsload: k=v k=v ..." as a dict."""
    out = {}
    for word in line.split()[1:]:
        k, sep, v = word.partition("=")
        if sep:
            out[k] = v
    return out


def tlsload(tool, port, extra):
    cmd = [tool, "-T", str(RUN_TIMEOUT), "-M", HELO, *extra, f"127.0.0.1:{port}"]
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=RUN_TIMEOUT + 30)
    out = p.stdout.decode(errors="replace").strip().splitlines()
    err = p.stderr.decode(errors="replace").strip()
    if p.returncode or not out:
        sys.exit(f"starttls: {' '.join(cmd)}: exit {p.returncode}: {err or 'no output'}")
    return fields(out[-1])


def run_point(args, srv, sessions, size, count, quickack):
    srv.clear_maildir()
    os.sync()
    time.sleep(0.2)
    cpu0 = srv.cpu()
    t0 = time.monotonic()
    f = tlsload(args.tlsload, srv.port,
                ["-s", str(sessions), "-m", str(count), "-l", str(size), "-f", SENDER, "-t",
                 RECIPIENT, *TLS, *(["--quickack"] if quickack else [])])
    t1 = time.monotonic()
    deadline = t1 + max(DELIVERY_WAIT_MIN, DELIVERY_WAIT_FACTOR * (t1 - t0))
    n = srv.delivered()
    while n < count and time.monotonic() < deadline:
        time.sleep(POLL)
        n = srv.delivered()
    t2 = time.monotonic()
    time.sleep(SETTLE)
    cpu1 = srv.cpu()
    return {"server": srv.name, "sessions": sessions, "size": size, "count": count,
            "quickack": quickack, "send_s": float(f["seconds"]), "deliver_s": t2 - t0,
            "delivered": n, "cpu_s": cpu1 - cpu0, "protocol": f["protocol"], "cipher": f["cipher"],
            "group": f["group"], "tls_ms": float(f["tls_ms"]), "differing": int(f["differing"])}


def rounds_and_scale():
    return (max(1, int(os.environ.get("IMS_BENCH_ROUNDS", "2"))),
            float(os.environ.get("IMS_BENCH_SCALE", "1")))


def cmd_load(args, servers):
    rounds, scale = rounds_and_scale()
    for srv in servers:
        run_point(args, srv, *WARMUP)
        srv.clear_maildir()
    results = []
    turn = 0
    for sessions, size, base, quickack in POINTS:
        count = max(sessions, int(round(base * scale)))
        for rnd in range(rounds):
            order = servers if turn % 2 == 0 else servers[::-1]
            turn += 1
            for srv in order:
                r = run_point(args, srv, sessions, size, count, quickack)
                r["round"] = rnd
                results.append(r)
                print(f"starttls: {sessions:3} x {size // 1024} KiB"
                      f"{', quickack' if quickack else ''}, {count:5} msgs, "
                      f"{srv.name:<7}: {count / r['send_s']:7.1f} msgs/s, delivered "
                      f"{r['delivered']}/{count} at {r['deliver_s']:6.2f} s, CPU "
                      f"{r['cpu_s']:6.2f} s, {r['protocol']} {r['cipher']} {r['group']}",
                      file=sys.stderr, flush=True)
            for srv in servers:
                srv.clear_maildir()
    with open(args.out, "w") as f:
        json.dump({"scale": scale, "rounds": rounds, "points": results}, f)


def cmd_handshakes(args, servers):
    rounds, scale = rounds_and_scale()
    results = []
    turn = 0
    for sessions, base in HANDSHAKES:
        count = max(sessions, int(round(base * scale)))
        for rnd in range(rounds):
            order = servers if turn % 2 == 0 else servers[::-1]
            turn += 1
            for srv in order:
                time.sleep(0.2)
                cpu0 = srv.cpu()
                f = tlsload(args.tlsload, srv.port,
                            ["--handshakes", "-s", str(sessions), "-m", str(count), *TLS])
                time.sleep(SETTLE)
                r = {"server": srv.name, "sessions": sessions, "count": count, "round": rnd,
                     "seconds": float(f["seconds"]), "cpu_s": srv.cpu() - cpu0,
                     "protocol": f["protocol"], "cipher": f["cipher"], "group": f["group"],
                     "tls_ms": float(f["tls_ms"])}
                results.append(r)
                print(f"starttls: handshakes, {sessions:3} sessions, {count} of them, "
                      f"{srv.name:<7}: {count / r['seconds']:7.1f}/s, CPU {r['cpu_s']:.2f} s",
                      file=sys.stderr, flush=True)
    with open(args.out, "w") as f:
        json.dump({"scale": scale, "rounds": rounds, "handshakes": results}, f)


def vmrss(pid):
    """VmRSS of pid in KiB (/proc/<pid>/status), 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def memory(srv):
    """What the server holds now, in KiB: imsd's VmRSS; for Postfix, the VmRSS sum of its smtpd
    processes and their count; for both, the PSS and RSS sums over all processes."""
    pids = srv.pids()
    pss, rss, procs = srv.memory()
    out = {"pss": pss, "rss": rss, "procs": procs}
    if srv.name == "imsd":
        out["vmrss"] = vmrss(pids[0])
    else:
        smtpd = [p for p in pids if comm(p) == "smtpd"]
        out["vmrss"] = sum(vmrss(p) for p in smtpd)
        out["smtpd"] = len(smtpd)
    return out


def hold(args, srv, k, plain):
    """tlsload --idle k against srv: the memory once all k are up, then the end of the run."""
    cmd = [args.tlsload, "-T", str(RUN_TIMEOUT), "-M", HELO, "-s", str(IDLE_SETUP),
           "--idle", str(k), *(["--plain"] if plain else TLS), f"127.0.0.1:{srv.port}"]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        lines = []
        buf = b""
        while not any(l.startswith("tlsload:") for l in lines):  # the line after "ready"
            left = deadline - time.monotonic()
            if left <= 0 or p.poll() is not None and not select.select([p.stdout], [], [], 0)[0]:
                break
            if select.select([p.stdout], [], [], min(left, 1.0))[0]:
                chunk = os.read(p.stdout.fileno(), 4096)
                if not chunk:
                    break
                buf += chunk
                *done, buf = buf.split(b"\n")
                lines += [l.decode(errors="replace") for l in done]
        if f"idle {k} ready" not in lines:
            p.kill()
            err = p.communicate(timeout=EXIT_TIMEOUT)[1].decode(errors="replace").strip()
            sys.exit(f"starttls: {' '.join(cmd)}: not ready: {err or lines}")
        f = fields([l for l in lines if l.startswith("tlsload:")][-1])
        time.sleep(SETTLE)
        mem = memory(srv)
        # communicate() closes stdin: at that end of file tlsload closes the sessions and exits.
        err = p.communicate(timeout=EXIT_TIMEOUT)[1]
        if p.returncode:
            sys.exit(f"starttls: {' '.join(cmd)}: exit {p.returncode}: "
                     f"{err.decode(errors='replace').strip()}")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return mem, f


def cmd_idle(args, servers):
    k = int(os.environ.get("IMS_BENCH_IDLE", "1000"))
    results = []
    for srv in servers:
        before = memory(srv)
        zero, _ = hold(args, srv, 0, args.plain)
        time.sleep(1.0)
        mem, f = hold(args, srv, k, args.plain)
        r = {"server": srv.name, "k": k, "plain": args.plain, "before": before, "zero": zero,
             "idle": mem, "setup_s": float(f["seconds"]), "protocol": f["protocol"],
             "cipher": f["cipher"]}
        results.append(r)
        print(f"starttls: idle {k} {'plain' if args.plain else 'TLS'} sessions, "
              f"{srv.name:<7}: up in {r['setup_s']:.2f} s; VmRSS {zero['vmrss']} -> "
              f"{mem['vmrss']} KiB, PSS {zero['pss']} -> {mem['pss']} KiB",
              file=sys.stderr, flush=True)
        time.sleep(2.0)  # let the closed sessions end before the other server's turn
    with open(args.out, "w") as f:
        json.dump({"idle": results}, f)


def table(head, rows):
    widths = [max(len(h), *(len(r[c]) for r in rows)) for c, h in enumerate(head)]
    text = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
    text += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    md = ["| " + " | ".join(head) + " |",
          "|" + "|".join("---" if c == 0 else "--:" for c in range(len(head))) + "|"]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    return text, md


def load_rows(load):
    by = {}
    for r in load["points"]:
        key = (r["quickack"], r["sessions"], r["size"])
        by.setdefault(key, {}).setdefault(r["server"], []).append(r)
    rows = []
    for (quickack, sessions, size), pair in by.items():
        def rate(runs):
            return sum(r["count"] for r in runs) / sum(r["send_s"] for r in runs)

        def dlv(runs):
            if any(r["delivered"] < r["count"] for r in runs):
                return "timeout"
            return f"{sum(r['count'] for r in runs) / sum(r['deliver_s'] for r in runs):.0f}"

        def cpu(runs):
            return f"{sum(r['cpu_s'] for r in runs) * 1000 / sum(r['count'] for r in runs):.2f}"

        i, p = rate(pair["imsd"]), rate(pair["postfix"])
        rows.append([f"{sessions} x {size // 1024} KiB" + (", quickack" if quickack else ""),
                     str(pair["imsd"][0]["count"]),
                     f"{i:.0f}", f"{p:.0f}", f"{i / p:.2f}", dlv(pair["imsd"]),
                     dlv(pair["postfix"]), cpu(pair["imsd"]), cpu(pair["postfix"])])
    return rows


def hs_rows(hs):
    by = {}
    for r in hs["handshakes"]:
        by.setdefault(r["sessions"], {}).setdefault(r["server"], []).append(r)
    rows = []
    for sessions, pair in by.items():
        def rate(runs):
            return sum(r["count"] for r in runs) / sum(r["seconds"] for r in runs)

        def cpu(runs):
            return f"{sum(r['cpu_s'] for r in runs) * 1000 / sum(r['count'] for r in runs):.2f}"

        def lat(runs):
            return f"{sum(r['tls_ms'] for r in runs) / len(runs):.2f}"

        i, p = rate(pair["imsd"]), rate(pair["postfix"])
        rows.append([str(sessions), str(pair["imsd"][0]["count"]), f"{i:.0f}", f"{p:.0f}",
                     f"{i / p:.2f}", cpu(pair["imsd"]), cpu(pair["postfix"]),
                     lat(pair["imsd"]), lat(pair["postfix"])])
    return rows


def idle_rows(*idles):
    rows = []
    for idle in idles:
        for r in idle["idle"]:
            k, z, m = r["k"], r["zero"], r["idle"]
            kind = "plain (EHLO, no TLS)" if r["plain"] else f"TLS ({r['protocol']})"
            what = "imsd VmRSS" if r["server"] == "imsd" else f"smtpd VmRSS sum ({m['smtpd']})"
            rows.append([r["server"], kind, str(k), f"{r['setup_s']:.2f}",
                         f"{what}: {z['vmrss']} -> {m['vmrss']}",
                         f"{(m['vmrss'] - z['vmrss']) / k:.1f}",
                         f"{(m['pss'] - z['pss']) / k:.1f}", f"{z['procs']} -> {m['procs']}"])
    return rows


def cmd_report(args):
    with open(args.load) as f:
        load = json.load(f)
    with open(args.handshakes) as f:
        hs = json.load(f)
    with open(args.idle_tls) as f:
        idle_tls = json.load(f)
    with open(args.idle_plain) as f:
        idle_plain = json.load(f)
    seen = sorted({(r["server"], r["protocol"], r["cipher"], r["group"])
                   for r in load["points"] + hs["handshakes"]})
    differing = sum(r["differing"] for r in load["points"])
    out_text, out_md = [], []
    t, m = table(["sessions x size", "msgs", "imsd msg/s", "postfix msg/s", "imsd/postfix",
                  "imsd dlv/s", "postfix dlv/s", "imsd CPU ms/msg", "postfix CPU ms/msg"],
                 load_rows(load))
    out_text += [f"== inbound mail over STARTTLS ({', '.join(TLS)}), tlsload on loopback, one "
                 f"message per connection, one recipient; IMS_BENCH_SCALE={load['scale']:g}, "
                 f"{load['rounds']} run(s) per server and point, who goes first alternating",
                 *t, ""]
    out_md += m + [""]
    t, m = table(["sessions", "handshakes", "imsd hs/s", "postfix hs/s", "imsd/postfix",
                  "imsd CPU ms/hs", "postfix CPU ms/hs", "imsd hs ms", "postfix hs ms"],
                 hs_rows(hs))
    out_text += ["== handshakes: connect, EHLO, STARTTLS, handshake, QUIT (hs ms: STARTTLS sent "
                 "to handshake done, mean)", *t, ""]
    out_md += m + [""]
    t, m = table(["server", "sessions", "k", "set-up s", "KiB at idle 0 -> at idle k",
                  "KiB/session (VmRSS)", "KiB/session (PSS)", "processes"],
                 idle_rows(idle_tls, idle_plain))
    out_text += ["== idle sessions (each server started afresh before each kind)", *t, ""]
    out_md += m + [""]
    tls = "; ".join(f"{s}: {p} {c} {g}" for s, p, c, g in seen)
    out_text.append(f"TLS seen: {tls}; sessions with another protocol or cipher: {differing}")
    print("\n".join(out_text))
    print("\nmarkdown:\n")
    print("\n".join(out_md))
    print(f"TLS seen: {tls}")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("load", "handshakes", "idle"):
        s = sub.add_parser(name)
        s.add_argument("tlsload")
        s.add_argument("--imsd", nargs=3, required=True, metavar=("PORT", "MAILDIR", "PIDFILE"))
        s.add_argument("--postfix", nargs=3, required=True,
                       metavar=("PORT", "MAILDIR", "PIDFILE"))
        s.add_argument("--out", required=True)
        if name == "idle":
            s.add_argument("--plain", action="store_true")
    s = sub.add_parser("report")
    for a in ("load", "handshakes", "idle_tls", "idle_plain"):
        s.add_argument(a)
    args = ap.parse_args()
    if args.cmd == "report":
        cmd_report(args)
        return
    servers = [Server("imsd", *args.imsd), Server("postfix", *args.postfix)]
    {"load": cmd_load, "handshakes": cmd_handshakes, "idle": cmd_idle}[args.cmd](args, servers)


if __name__ == "__main__":
    main()
