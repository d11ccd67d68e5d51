"""What keeping a run's earlier steps costs, and what going back to them costs.

    VAELAB_DATA=../shared/data python bench/snapshots.py [--steps 2345] [--repeats 3]

1. Training: the shipped MNIST model (an MLP with 128 hidden units, 16 latent dimensions, batch 128) for
   --steps steps with the default 16 MB snapshot budget and with none (--snapshot-budget 0), alternating,
   each saved once at the end. The ratio is the kept run's seconds over the other's, from the same repeat.
2. The checkpoint: its size with and without the kept steps, the time to save it, to load its last step,
   one earlier step, and every kept step at once (checkpoint.load_steps).
3. A map over the run: core.timeline.maps_over_time with PCA on 2,000 test images, every kept step.
Medians over the repeats.
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(data, steps: int, budget: float, folder: Path) -> tuple[float, float, Path]:
    """(seconds training, seconds saving, the sidecar) of one run."""
    from core.config import RunConfig
    from core.engine import Trainer
    from core.models import ModelConfig

    config = RunConfig(data=data.spec, model=ModelConfig(hidden=(128,), latent_dim=16))
    trainer = Trainer(config, data, snapshot_mb=budget)
    t0 = time.perf_counter()
    trainer.step(steps)
    t1 = time.perf_counter()
    path = trainer.save(folder / f"run-{budget:g}")
    return t1 - t0, time.perf_counter() - t1, path


def timed(fn, repeats: int = 3) -> float:
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2345)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import torch
    from core import checkpoint, timeline, data as datasets

    print(f"torch threads: {torch.get_num_threads()}; {args.steps} steps per run; {args.repeats} repeats")
    data = datasets.load(datasets.DataSpec("mnist", binarize="dynamic"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        train, save, paths = {16.0: [], 0.0: []}, {16.0: [], 0.0: []}, {}
        for r in range(args.repeats):
            for budget in train:
                a, b, paths[budget] = run(data, args.steps, budget, folder)
                train[budget].append(a)
                save[budget].append(b)
            print(f"repeat {r + 1}: " + ", ".join(f"budget {k:g} MB {v[-1]:.2f} s" for k, v in train.items()), flush=True)
        ratios = [a / b for a, b in zip(train[16.0], train[0.0])]
        print("\ntraining (median seconds; ratio kept / none, per repeat then median)")
        for budget in train:
            print(f"  budget {budget:>4g} MB  {statistics.median(train[budget]):6.2f} s")
        print(f"  ratio             x{statistics.median(ratios):.3f}")

        print("\nthe checkpoint")
        kept = paths[16.0]
        steps = checkpoint.load_steps(kept)
        for budget, path in paths.items():
            size = sum(p.stat().st_size for p in checkpoint.paths(path)) / 2**20
            print(f"  budget {budget:>4g} MB  {size:6.2f} MB on disk, saved in {statistics.median(save[budget]):.3f} s")
        print(f"  kept steps: {', '.join(str(b.step) for b in steps)}")
        print(f"  load the last step     {timed(lambda: checkpoint.load(kept)):.3f} s")
        print(f"  load step {steps[len(steps) // 2].step:<12} {timed(lambda: checkpoint.load(kept, step=steps[len(steps) // 2].step)):.3f} s")
        print(f"  load all {len(steps)} steps      {timed(lambda: checkpoint.load_steps(kept)):.3f} s")
        t0 = time.perf_counter()
        timeline.maps_over_time(steps, data, "pca", 2000)
        print(f"\nPCA maps of 2,000 test images at all {len(steps)} kept steps, aligned: {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
