"""Crash safety of periodic checkpoints: `python -m core train --save-every` killed with SIGKILL at random
moments, then resumed, over and over.

Each round starts the CLI (a new run the first time, `--resume` after), waits until it has written a
checkpoint (so it is training), sleeps a random 0-1.5 s and kills the process with SIGKILL. A checkpoint is written every 3 steps and
a save takes a good part of each step's time, so many kills land inside a save. After each kill the
checkpoint must load and resume (one more step). The script reports how many did, and where the kills
landed: inside a write (a temporary file left behind) or between the renames that replace the pair (the
old weights still waiting beside it).

    python bench/crash_safety.py [--kills 20] [--seed 0]
"""
import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core import checkpoint
from core.engine import Trainer

ROOT = Path(__file__).resolve().parent.parent


def kill_and_resume(folder: Path, kills: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    name = folder / "crash"
    counts = {"kills": 0, "resumed": 0, "inside_a_write": 0, "between_renames": 0, "failures": []}
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1", VAELAB_OFFLINE="1")
    for i in range(kills):
        args = (["--resume", str(name)] if checkpoint.paths(name)[1].exists() else
                ["--dataset", "digits", "--hidden", "256,256", "--latent", "8", "--name", "crash", "--live-every", "0"])
        proc = subprocess.Popen([sys.executable, "-m", "core", "train", *args, "--out", str(folder),
                                 "--steps", "1000000", "--save-every", "3"],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sidecar = checkpoint.paths(name)[1]
        before = sidecar.stat().st_mtime_ns if sidecar.exists() else None
        deadline = time.time() + 120  # until this process has saved once: it is training
        while (not sidecar.exists() or sidecar.stat().st_mtime_ns == before) and time.time() < deadline \
                and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 1.5))
        if proc.poll() is not None:
            counts["failures"].append(f"round {i + 1}: the training process ended by itself (exit code {proc.returncode})")
            continue
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        counts["kills"] += 1
        left = [p.name for p in folder.iterdir() if p.name.startswith(".")]
        counts["inside_a_write"] += any(n.endswith(".tmp") for n in left)
        counts["between_renames"] += any(".previous." in n for n in left)
        try:
            Trainer.load(name).step(1)
            counts["resumed"] += 1
        except Exception as e:
            counts["failures"].append(f"kill {i + 1}: {type(e).__name__}: {e}")
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        t0 = time.time()
        counts = kill_and_resume(Path(folder), args.kills, args.seed)
        step = checkpoint.load(Path(folder) / "crash").step
    print(f"kills {counts['kills']}, resumed after {counts['resumed']}/{counts['kills']}; "
          f"the kill landed inside a write {counts['inside_a_write']} times and between the renames "
          f"{counts['between_renames']} times; the run reached step {step:,} in {time.time() - t0:.0f} s")
    for failure in counts["failures"]:
        print(failure)
    return 0 if counts["resumed"] == counts["kills"] else 1


if __name__ == "__main__":
    sys.exit(main())
