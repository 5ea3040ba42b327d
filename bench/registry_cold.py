#!/usr/bin/env python3
"""registry_cold.py LABEL RUNS HIVE_FILE CMD... - time CMD with HIVE_FILE out of the page cache.

Before each run the hive's data.mdb (and only that file) is dropped from the page cache with
posix_fadvise(POSIX_FADV_DONTNEED), as after a reboot; the run then reads from the disk what it
touches. Prints one row: runs, mean, p50, p95 ms, the child's major page faults and the KiB it
read from the disk (getrusage ru_majflt, ru_inblock), per run. Asserts nothing."""
import os
import resource
import statistics
import subprocess
import sys
import time


def evict(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def main():
    label, runs, hive, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
    os.sync()  # dirty pages are not dropped: write them out first
    times, faults, kib = [], [], []
    for _ in range(runs):
        evict(hive)
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True)
        times.append((time.perf_counter() - t0) * 1e3)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        faults.append(r1.ru_majflt - r0.ru_majflt)
        kib.append((r1.ru_inblock - r0.ru_inblock) / 2)  # 512-byte blocks
    times.sort()
    rank = lambda q: times[max(0, min(len(times) - 1, -(-len(times) * q // 100) - 1))]
    print(f"{label:<44} {len(times):5} {statistics.mean(times):9.2f} {rank(50):9.2f} "
          f"{rank(95):9.2f}   {statistics.mean(faults):6.1f} maj. faults, "
          f"{statistics.mean(kib):8.0f} KiB read")


if __name__ == "__main__":
    main()
