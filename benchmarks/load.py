"""Decoding when the cores are shared: one decode alone, N decodes at once, one decode beside a
CPU-bound process; each decode a separate ``compressnet decompress`` with its default threads.

Targets (issue #26, 2 cores): beside one CPU-bound process a decode takes at most 1.5 times
what it takes alone; 4 decodes at once take at most 4.5 times one alone.

    python benchmarks/load.py [--image kodim20.png] [--quality 3] [--concurrent 4]

Run it on a quiet machine: the "alone" time is the yardstick.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"
CLI = [sys.executable, "-m", "compressnet.cli"]


def _burn(stop: multiprocessing.Event) -> None:
    """A CPU-bound process: Python arithmetic until told to stop."""
    x = 0
    while not stop.is_set():
        for i in range(100_000):
            x = (x + i * i) % 1_000_003


def _decode(src: Path, out: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([*CLI, "decompress", str(src), "-o", str(out), "--force", "--realism", "0"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _timed(srcs: list[Path], tmp: Path, env: dict) -> float:
    """Seconds until every one of these decodes (run at once) has finished."""
    start = time.perf_counter()
    procs = [_decode(s, tmp / f"{i}.png", env) for i, s in enumerate(srcs)]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(p.stderr.read().decode())
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=str(KODAK / "kodim20.png"))
    parser.add_argument("--quality", type=int, default=3)
    parser.add_argument("--concurrent", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each case; the median counts")
    parser.add_argument("--omp-wait-policy", choices=["active", "passive"],
                        help="force OpenMP's wait policy (default: compressnet's, passive); "
                             "active shows the behaviour before 0.9.0")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    if args.omp_wait_policy:
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "photo.cnet"
        subprocess.run([*CLI, "compress", args.image, "-o", str(src), "-q", str(args.quality)],
                       check=True, env=env, stdout=subprocess.DEVNULL)
        _timed([src], tmp, env)  # warm the file cache

        def median(case) -> float:
            times = sorted(case() for _ in range(args.repeats))
            return times[len(times) // 2]

        alone = median(lambda: _timed([src], tmp, env))
        many = median(lambda: _timed([src] * args.concurrent, tmp, env))
        stop = multiprocessing.Event()
        burner = multiprocessing.Process(target=_burn, args=(stop,))
        burner.start()
        try:
            time.sleep(1)
            beside = median(lambda: _timed([src], tmp, env))
        finally:
            stop.set()
            burner.join()
    policy = args.omp_wait_policy or "passive, as compressnet sets it"
    print(f"{Path(args.image).name} q{args.quality}, {os.cpu_count()} cores, default threads "
          f"(OMP_WAIT_POLICY {policy}), median of {args.repeats}; each run includes the process start")
    print(f"one decode alone:                 {alone:6.2f} s")
    print(f"{args.concurrent} decodes at once:               {many:6.2f} s  "
          f"({many / alone:.2f}x one; target <= 4.5x)")
    print(f"one beside a CPU-bound process:   {beside:6.2f} s  ({beside / alone:.2f}x alone; target <= 1.5x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
