"""One sweep, both backends, side by side: the wall time of `python -m core sweep SPEC` with the local worker
processes and with Ray Tune on a local instance of as many CPUs, each into a fresh folder, and whether the
two tables agree on every figure (timings aside). Then the pilot's per-trial costs of a large MNIST sweep
(`--plan`, nothing trained), from which docs/benchmarks.md works out what 1,000 trials cost on a cluster.

    python bench/sweeps.py [--spec experiments/sweeps/digits-collapse.toml] [--workers 2]
"""
import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core import sweep

ROOT = Path(__file__).resolve().parent.parent


def timed(args) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "core", "sweep", *args], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"sweep failed: {result.stderr[-2000:]}")
    return time.perf_counter() - start, result.stderr


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default="experiments/sweeps/digits-collapse.toml")
    parser.add_argument("--large", default="experiments/sweeps/mnist-collapse.toml")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        times, tables = {}, {}
        for backend, extra in (("local", []), ("ray", ["--ray", "local"])):
            out = tmp / backend
            times[backend], _ = timed([args.spec, "--out", str(out), "--workers", str(args.workers), "--no-pilot", *extra])
            tables[backend] = sweep.read_rows(next(out.iterdir()))
            n = len(tables[backend])
            print(f"{backend:>5}: {n} trials in {times[backend]:6.1f} s ({times[backend] / n:.2f} s a trial, "
                  f"{args.workers} at once)")
        figures = {backend: [{k: v for k, v in row.items() if k not in sweep.TIMING} for row in table]
                   for backend, table in tables.items()}  # every column but the timings
        print(f"ray / local: {times['ray'] / times['local']:.2f}x; tables agree: "
              f"{figures['local'] == figures['ray']}")
        seconds = [float(r["seconds"]) + float(r["diagnose_seconds"]) for r in tables["local"]]
        print(f"inside a trial (local): {sum(seconds) / len(seconds):.2f} s training + diagnostics on average")
    if Path(ROOT / args.large).exists():
        _, err = timed([args.large, "--plan", "--out", tempfile.mkdtemp(), "--workers", "1"])
        for line in err.splitlines():
            if re.match(r"(sweep|pilot|estimate)", line):
                print(line)


if __name__ == "__main__":
    main()
