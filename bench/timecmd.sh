# timecmd.sh - time_cmd, sourced by bench/registry.sh and bench/registry_large.sh: times whole
# processes with hyperfine -N or a Python loop. The caller sets WORK (a scratch directory).
# shellcheck shell=sh

# time_cmd LABEL RUNS WARMUP CMD... - run CMD (output discarded) RUNS times after WARMUP
# untimed runs; print one table row: runs, mean, p50, p95 in ms. hyperfine when present
# (unless IMS_BENCH_TIMER=python), otherwise a loop of subprocess.run timed with
# perf_counter, which adds a little of Python's own process-spawning cost.
time_cmd() {
    label=$1 runs=$2 warmup=$3
    shift 3
    if [ "${IMS_BENCH_TIMER:-}" != python ] && command -v hyperfine >/dev/null 2>&1; then
        # hyperfine -N splits its command like a shell: quote every word.
        quoted=
        for w in "$@"; do
            quoted="$quoted '$w'"
        done
        if ! hyperfine -N --style none --warmup "$warmup" --runs "$runs" \
            --export-json "$WORK/hf.json" "$quoted" >/dev/null 2>"$WORK/hf.err"; then
            cat "$WORK/hf.err" >&2
            return 1
        fi
        python3 - "$label" "$WORK/hf.json" <<'EOF'
import json, statistics, sys
times = sorted(t * 1e3 for t in json.load(open(sys.argv[2]))["results"][0]["times"])
rank = lambda q: times[max(0, min(len(times) - 1, -(-len(times) * q // 100) - 1))]
print(f"{sys.argv[1]:<44} {len(times):5} {statistics.mean(times):9.2f} {rank(50):9.2f} "
      f"{rank(95):9.2f}   hyperfine")
EOF
    else
        python3 - "$label" "$runs" "$warmup" "$@" <<'EOF'
import statistics, subprocess, sys, time
label, runs, warmup, cmd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
def once():
    t0 = time.perf_counter()
    subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    return (time.perf_counter() - t0) * 1e3
for _ in range(warmup):
    once()
times = sorted(once() for _ in range(runs))
rank = lambda q: times[max(0, min(len(times) - 1, -(-len(times) * q // 100) - 1))]
print(f"{label:<44} {len(times):5} {statistics.mean(times):9.2f} {rank(50):9.2f} "
      f"{rank(95):9.2f}   python perf_counter")
EOF
    fi
}
