"""What taking a run to TensorBoard or MLflow costs.

    VAELAB_DATA=../shared/data python bench/trackers.py [--steps 2000] [--repeats 3]

1. While training: the CLI's loop (50 steps, then the tracker writes the new rows), timed for the same run
   with no tracker, with TensorBoard, and with MLflow, alternating, on MNIST with the CLI's default model.
   The ratio is the tracked run's seconds over the untracked one's, from the same repeat.
2. After the fact: `python -m core export` of a shipped checkpoint's whole record (its history, live rows
   and pictures), to each tracker.
Medians over the repeats.
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def train_seconds(data, steps: int, tracker_kind: str | None, folder: Path) -> float:
    from core.config import RunConfig
    from core.engine import Trainer
    from core.track import Tracker

    trainer = Trainer(RunConfig(data=data.spec), data)
    trainer.step(20)  # warm-up, untimed
    tracker = Tracker("run", trainer.config.to_dict(), **({tracker_kind: str(folder)} if tracker_kind else {}))
    t0 = time.perf_counter()
    while trainer.step_count < steps + 20:
        trainer.step(50)
        tracker.log(trainer.history, trainer.live)
    tracker.finish()
    return time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "mnist-vae"))
    args = parser.parse_args()
    import torch
    from core import checkpoint, data as datasets, track

    print(f"torch threads: {torch.get_num_threads()}; {args.steps} steps per run; {args.repeats} repeats")
    data = datasets.load(datasets.DataSpec("mnist", binarize="dynamic"))
    times = {None: [], "tensorboard": [], "mlflow": []}
    for r in range(args.repeats):
        for kind in times:
            with tempfile.TemporaryDirectory() as folder:
                times[kind].append(train_seconds(data, args.steps, kind, Path(folder)))
        print(f"repeat {r + 1}: " + ", ".join(f"{k or 'none'} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
    base = times[None]
    print("\nwhile training (median seconds; ratio to no tracker, per repeat then median)")
    for kind, t in times.items():
        ratios = [a / b for a, b in zip(t, base)]
        print(f"  {kind or 'none':<12} {statistics.median(t):7.2f} s   x{statistics.median(ratios):.3f}")

    bundle = checkpoint.load(args.checkpoint)
    shipped = datasets.load(bundle.config.data)
    print(f"\nafter the fact: {Path(args.checkpoint).name}, {len(bundle.history):,} history rows, {len(bundle.live)} live rows")
    for kind in ("tensorboard", "mlflow"):
        seconds = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as folder:
                t0 = time.perf_counter()
                track.export(bundle, shipped, "run", **{kind: folder})
                seconds.append(time.perf_counter() - t0)
        print(f"  {kind:<12} {statistics.median(seconds):7.2f} s")


if __name__ == "__main__":
    main()
