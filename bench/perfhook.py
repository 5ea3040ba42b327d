"""perfhook.py - what the load benchmarks (inbound.py, outbound.py, idle.py, queuecost.py)
share for looking inside a run: perf attached to imsd through it, and the choice of load
points.

  IMS_BENCH_PERF=DIR        perf on imsd through each measured run, into DIR/perf-LABEL-N.data
  IMS_BENCH_PERF_ARGS=...   perf's arguments before -p PID -o FILE (default "record -q -g"):
                            "stat -e syscalls:sys_enter_syncfs" counts, "trace -s" times calls
  IMS_BENCH_POINTS="20x4 100x64"   only these points (sessions x KiB); default all"""
import os
import re
import signal
import subprocess
import sys
import time

ATTACH = 0.5  # seconds for perf to attach to every thread before the load starts
STOP_WAIT = 60  # seconds perf may take to write its file after SIGINT


def start(pid, label):
    """With IMS_BENCH_PERF=DIR: perf on pid into DIR/perf-<label>-<n>.data (the first free n),
    running until stop(); else None. A run under perf carries perf's own cost."""
    d = os.environ.get("IMS_BENCH_PERF")
    if not d:
        return None
    os.makedirs(d, exist_ok=True)
    n = 0
    while os.path.exists(os.path.join(d, f"perf-{label}-{n}.data")):
        n += 1
    args = os.environ.get("IMS_BENCH_PERF_ARGS", "record -q -g").split()
    p = subprocess.Popen(["perf"] + args + ["-p", str(pid), "-o",
                                            os.path.join(d, f"perf-{label}-{n}.data")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(ATTACH)
    return p


def stop(p):
    """Ends what start() began (SIGINT: perf writes its file and exits)."""
    if p:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout=STOP_WAIT)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def around(srv, label, run):
    """run()'s result, with perf on srv through it when srv is imsd (srv.name, srv.main_pid())
    and IMS_BENCH_PERF is set: perf-<label>-<n>.data."""
    p = start(srv.main_pid(), label) if srv.name == "imsd" else None
    try:
        return run()
    finally:
        stop(p)


def points(all_points, me):
    """all_points ((sessions, bytes, count) tuples), or those IMS_BENCH_POINTS names; exits
    with a message naming me when a word is not one of them."""
    words = os.environ.get("IMS_BENCH_POINTS", "").replace(",", " ").split()
    if not words:
        return all_points
    want = set()
    for w in words:
        m = re.fullmatch(r"(\d+)x(\d+)", w)
        if not m:
            sys.exit(f"{me}: IMS_BENCH_POINTS: {w!r} is not SESSIONSxKIB")
        want.add((int(m.group(1)), int(m.group(2)) * 1024))
    chosen = [p for p in all_points if (p[0], p[1]) in want]
    if len(chosen) != len(want):
        have = " ".join(f"{s}x{b // 1024}" for s, b, _ in all_points)
        sys.exit(f"{me}: IMS_BENCH_POINTS: not all of {words} are points ({have})")
    return chosen
