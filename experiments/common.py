"""Shared by the reproduction scripts: train a run to a step budget and score it."""
import json
import os
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("VAELAB_OFFLINE", "1")

from core.config import RunConfig  # noqa: E402

from core.engine import Diverged, Trainer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def train(config: RunConfig, data, steps: int, label: str) -> Trainer:
    """Train to `steps` steps with a progress bar; a diverged run keeps its last good weights."""
    trainer = Trainer(config, data)
    with tqdm(total=steps, desc=label, unit="step", leave=False, file=sys.stderr) as bar:
        while trainer.step_count < steps:
            try:
                row = trainer.step(min(50, steps - trainer.step_count))[-1]
            except Diverged as e:
                print(f"{label}: {e}", file=sys.stderr)
                break
            bar.update(50)
            bar.set_postfix(loss=f"{row['loss']:.2f}")
    return trainer


def save(name: str, payload: dict):
    RESULTS.mkdir(exist_ok=True)
    payload = {"torch": torch.__version__, "threads": torch.get_num_threads(),
               "date": time.strftime("%Y-%m-%d"), **payload}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=1))
    print(f"wrote {RESULTS / f'{name}.json'}")
