"""Cost of the live diagnostics: training with them every N steps against training without.

Model: MLP 784-512-256-20 (the CLI's default), Bernoulli likelihood, Adam 1e-3, batch 128, MNIST with
dynamic binarization. Trainers with live_every = 0 (off), 50 (the default) and 10 run the same
seed; they alternate blocks of steps, and the medians per block are compared. The live diagnostics
(KL, active units, mutual information, code usage) run on a fixed batch of 500 test images.

    python bench/live_diagnostics.py [--steps 500] [--repeats 5] [--device auto]
    python bench/live_diagnostics.py --rows vae,householder,iaf,sa-vae,vlae

--rows prints, for each objective, the cost of one live row (the diagnostics read that objective's own
posterior: a flow's Monte Carlo draws and inversions, the VLAE's Laplace Gaussian) beside one training step.
"""
import argparse
import os
import statistics
import time

import torch

from core import data as datasets
from core.config import RunConfig
from core.engine import Trainer, describe_device, pick_device


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=500, help="steps per timed block")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rows", help="comma-separated objectives: time one live row and one step of each")
    args = parser.parse_args()
    device = pick_device(args.device)
    spec = datasets.DataSpec("mnist", binarize="dynamic")
    data = datasets.load(spec)
    if args.rows:
        return rows(args.rows.split(","), spec, data, device)
    config = RunConfig(data=spec, device=str(device))
    everies = [0, 50, 10]
    trainers = {every: Trainer(config, data, live_every=every) for every in everies}
    print(f"device: {describe_device(device)}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{len(data.train_x):,} training images")
    for t in trainers.values():  # warm-up, not timed
        t.step(20)
    seconds = {every: [] for every in everies}
    for r in range(args.repeats):
        for every, t in trainers.items():
            seconds[every].append(timed(lambda: t.step(args.steps)))
        print(f"  block {r + 1}: " + ", ".join(f"every {e or 'off'}: {seconds[e][-1]:.2f} s" for e in everies),
              flush=True)
    one_row = statistics.median(timed(lambda: trainers[50].live_rows.row(trainers[50])) for _ in range(20))
    step = statistics.median(seconds[0]) / args.steps
    base = statistics.median(seconds[0])
    print(f"one live row: {one_row * 1e3:.1f} ms (a training step: {step * 1e3:.2f} ms)")
    for every in everies[1:]:
        m = statistics.median(seconds[every])
        print(f"live every {every:>2} steps: {m:.2f} s per {args.steps} steps against {base:.2f} s off: "
              f"measured overhead {100 * (m / base - 1):+.1f}% (median of {args.repeats}); "
              f"from the row's cost: {100 * one_row / (every * step):.1f}%")


def rows(objectives, spec, data, device):
    """One live row against one step, per objective, medians of 10 (after 20 warm-up steps)."""
    print(f"device: {describe_device(device)}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print("| objective | one live row (ms) | one step (ms) | overhead at every 50 steps |")
    print("| --- | ---: | ---: | ---: |")
    for name in objectives:
        t = Trainer(RunConfig(data=spec, objective=name, device=str(device)), data, live_every=0)
        t.step(20)
        row = statistics.median(timed(lambda: t.live_rows.row(t)) for _ in range(10))
        step = statistics.median(timed(lambda: t.step(1)) for _ in range(10))
        print(f"| {name} | {row * 1e3:.0f} | {step * 1e3:.1f} | {100 * row / (50 * step):.1f}% |", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("VAELAB_OFFLINE", "1")
    main()
