"""One run trained the way the dashboard's Train page trains it, timed as its user sees it.

The page submits a RunConfig to the server's pool (core.pool.Pool: the same PooledRun and ProcessRun, a
child training process from the fork server) and draws what the run mirrors. Two figures:
  seconds from Train to the first live row   submit -> the run's first `live` row in this process: the
                                             child's start, the trainer built, the first LIVE_EVERY
                                             steps and their diagnostics (the first press after a
                                             server start: the fork server starts too)
  samples/s                                  images trained per second of wall clock, from that first
                                             live row to the last step, as mirrored here

The page's default run (MLP 784-256-128-8, objective vae, batch 128, Adam 1e-3, dynamic binarization), on
MNIST by default (the page's own default, digits, needs scikit-learn).

    python bench/gpu_live.py [--device cuda] [--steps 2000] [--data mnist]
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from core import data as datasets
from core.config import PRESETS, RunConfig
from core.control import RunState
from core.engine import describe_device, pick_device
from core.errors import LabError
from core.pool import Pool

OWNER = "0123abcd"  # a session token, as a page's URL carries one


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=2000, help="the page's default: 2000")
    parser.add_argument("--data", default="mnist")
    parser.add_argument("--timeout", type=float, default=240, help="seconds before giving up on the run")
    args = parser.parse_args()

    try:
        device = pick_device(args.device)
    except LabError as e:  # no GPU here: one line, not a traceback
        raise SystemExit(str(e)) from None
    start = time.perf_counter()
    data = datasets.load(datasets.DataSpec(args.data, binarize="dynamic"))  # the page's load_data, before Train
    print(f"device: {describe_device(device)}, torch {torch.__version__}; {args.data}: {len(data.train_x):,} "
          f"training images, read in {time.perf_counter() - start:.2f} s")
    config = RunConfig(data=data.spec, model=PRESETS["dashboard"], objective="vae", device=args.device)

    with tempfile.TemporaryDirectory() as tmp:
        pool = Pool(Path(tmp) / "runs", limit=1)
        try:
            t0 = time.perf_counter()
            run = pool.submit(OWNER, "vae", config, steps=args.steps, data=data)
            first = end = None
            while end is None and time.perf_counter() - t0 < args.timeout:
                pool.touch(OWNER)  # the page pings while it is open
                now, step = time.perf_counter(), run.step_count
                if first is None and run.live:
                    first = (now, step)
                    print(f"seconds from Train to the first live row: {now - t0:.2f} (step {step}, on "
                          f"{describe_device(run.device, run.threads)})", flush=True)
                if run.state.finished or step >= args.steps:
                    end = (now, step)
                time.sleep(0.005)
            if run.state in (RunState.FAILED, RunState.DIVERGED, RunState.STOPPED):
                raise SystemExit(f"the run ended {run.state}: {run.error}")
            if first is None or end is None:
                raise SystemExit(f"{'no live row' if first is None else 'not finished'} within {args.timeout:.0f} s "
                                 f"(state {run.state}, step {run.step_count})")
            steps, seconds = end[1] - first[1], end[0] - first[0]
            if steps > 0 and seconds > 0:
                print(f"samples/s: {steps * config.batch_size / seconds:,.0f} "
                      f"(steps {first[1]}-{end[1]} in {seconds:.2f} s, batch {config.batch_size})")
            else:
                print(f"samples/s: - (the run ended at step {end[1]} with its first live row; ask for more --steps)")
            run.join(timeout=60)
        finally:
            pool.close()


if __name__ == "__main__":
    os.environ.setdefault("VAELAB_OFFLINE", "1")
    main()
