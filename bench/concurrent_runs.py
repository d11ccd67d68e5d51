"""Runs that share the cores: how fast two training processes train side by side, by torch threads each.

    python bench/concurrent_runs.py [--steps 300]

First the mechanism: one or two processes at once, each training the CLI's default model (the offline
default data) for the same steps with a fixed number of torch threads. Then the dashboard's pool
(core.pool), which splits the cores between its live runs: one run alone, then two submitted together.
Each figure is the training seconds of one run (its own clock, pauses excluded).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(threads: int, steps: int):
    import torch
    torch.set_num_threads(threads)
    from core.config import RunConfig
    from core.engine import Trainer
    trainer = Trainer(RunConfig())
    trainer.step(20)  # warm-up
    t0 = time.perf_counter()
    trainer.step(steps)
    print(f"{time.perf_counter() - t0:.2f}")


def side_by_side(processes: int, threads: int, steps: int) -> list[float]:
    runs = [subprocess.Popen([sys.executable, __file__, "--child", str(threads), "--steps", str(steps)],
                             stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    return [float(r.communicate()[0].split()[-1]) for r in runs]


def pooled(runs: int, steps: int) -> list[float]:
    from core.config import RunConfig
    from core.pool import Pool
    with tempfile.TemporaryDirectory() as folder:
        pool = Pool(Path(folder), limit=runs)
        try:
            started = [pool.submit("a1b2c3d4", f"run{i}", RunConfig(seed=i), steps=steps) for i in range(runs)]
            for run in started:
                run.join(timeout=600)
            return [run.history[-1]["seconds"] for run in started]
        finally:
            pool.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.steps)
    import torch
    cores = torch.get_num_threads()
    print(f"{args.steps} steps of the default model, torch's {cores} threads per process by default\n")
    print("| processes at once | torch threads each | seconds per run |\n| ---: | ---: | --- |")
    for threads in sorted({cores, 1}, reverse=True):
        for processes in (1, 2):
            times = side_by_side(processes, threads, args.steps)
            print(f"| {processes} | {threads} | {', '.join(f'{t:.2f}' for t in times)} |", flush=True)
    print("\n| the pool (cores split between live runs) | seconds per run |\n| --- | --- |")
    for runs in (1, 2):
        times = pooled(runs, args.steps)
        print(f"| {runs} run{'s' * (runs > 1)} at once | {', '.join(f'{t:.2f}' for t in times)} |", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("VAELAB_OFFLINE", "1")
    main()
