"""Shared by the reproduction scripts: train a run to a step budget, and keep a table's finished cells."""
import contextlib
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from core import engine
from core.config import RunConfig
from core.engine import Diverged, Trainer

os.environ.setdefault("VAELAB_OFFLINE", "1")  # the reproductions read the shared files, never download

RESULTS = Path(__file__).resolve().parent / "results"
FIGURES = Path(__file__).resolve().parent.parent / "docs" / "figures"
MODELS = Path(__file__).resolve().parent / "models"  # each cell's trained model, for the figure scripts (not committed)
RESUME_SECONDS = 120  # how often a long cell saves the point it would resume from
RESUME_EVERY = f"{RESUME_SECONDS}s"  # the same, as the engine's autosave reads it


def model_path(table: str, key: str) -> Path:
    return MODELS / table / key.replace(" ", "_").replace("=", "").replace("#", "")


def keep(trainer: Trainer, table: str, key: str):
    """Save a cell's model (a checkpoint: safetensors + JSON) where the figure scripts find it."""
    from core.errors import LabError
    path = model_path(table, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        trainer.save(path)
    except LabError as e:
        print(f"{key}: not saved: {e}", file=sys.stderr)


def train(config: RunConfig, data, steps: int, label: str, after_step=None, resume: Path | None = None,
          every: str = RESUME_EVERY) -> Trainer:
    """Train to `steps` steps with a progress bar; a diverged run keeps its last good weights (and
    `trainer.diverged` says where). after_step(trainer), if given, runs after every step.

    With `resume`, the run keeps a resumable checkpoint there (every `every`: '2m', '500') and a stopped
    script continues it from that point: the papers' budgets take hours, and a stop loses minutes. A
    checkpoint of other settings is not resumed; `done(resume)` removes it once the cell is kept."""
    trainer = resumed(resume, config, data) if resume else None
    if trainer is None:
        trainer = Trainer(config, data, live_every=0)
    if resume:
        trainer.autosave(resume, every, asked=asked(config))
    return advance(trainer, steps - trainer.step_count, label, after_step)


def train_cell(config: RunConfig, data, steps: int, table: str, key: str) -> Trainer:
    """One cell of a table trained to `steps` steps, resumable after a stop (train's `resume`), its model kept
    (keep) and its resume point removed once it is."""
    resume = resume_path(table, key)
    trainer = train(config, data, steps, key, resume=resume)
    keep(trainer, table, key)
    done(resume)
    return trainer


def asked(config: RunConfig) -> dict:
    return json.loads(json.dumps(config.to_dict()))


def resumed(path: Path, config: RunConfig, data) -> Trainer | None:
    """The run saved at `path` if it was started with these settings, else None."""
    from core import checkpoint
    from core.errors import LabError
    try:
        meta = checkpoint.read_sidecar(checkpoint.paths(path)[1])
        if not same_settings(meta.get("asked"), asked(config)):
            print(f"{path.name}: saved with other settings, so the run starts again", file=sys.stderr)
            return None
        trainer = Trainer.load(path, data)
    except LabError as e:
        if checkpoint.paths(path)[1].exists():
            print(f"{path.name}: not resumed: {e}", file=sys.stderr)
        return None
    print(f"{path.name}: resumed at step {trainer.step_count:,}", file=sys.stderr)
    return trainer


def kept(table: str, key: str, config: RunConfig, steps: int, data):
    """The model keep() saved for this cell, if it is this config trained for `steps` steps: (its bundle, its
    training seconds), else None. A cell whose result was lost but whose model is kept is measured again from
    the model, not trained again."""
    from core import checkpoint
    from core.errors import LabError
    path = model_path(table, key)
    try:
        meta = checkpoint.read_sidecar(checkpoint.paths(path)[1])
        shaped = engine.shaped(config, data.info, engine.build_objective(config.objective, config.settings))
        if meta.get("step") != steps or not same_settings(with_knobs(meta["config"]), with_knobs(asked(shaped))):
            return None
        return checkpoint.load(path), meta["history"][-1]["seconds"]
    except (LabError, KeyError, IndexError):
        return None


def with_knobs(config: dict) -> dict:
    """A config dict with every knob of its objective spelled out (a checkpoint stores them all)."""
    from core.objectives import build
    return {**config, "settings": build(config["objective"], config["settings"]).settings()}


def resume_path(table: str, key: str) -> Path:
    return model_path(table, key).with_name(model_path(table, key).name + ".partial")


def done(resume: Path):
    """Remove a finished cell's resumable checkpoint (its model is kept by keep())."""
    from core import checkpoint
    for path in checkpoint.paths(resume):
        path.unlink(missing_ok=True)


def advance(trainer: Trainer, steps: int, label: str, after_step=None) -> Trainer:
    """Train an existing run `steps` steps further, as train() does."""
    chunk = 1 if after_step else 50
    end = trainer.step_count + max(steps, 0)
    with tqdm(total=steps, desc=label, unit="step", leave=False, file=sys.stderr) as bar:
        while trainer.step_count < end:
            try:
                row = trainer.step(min(chunk, end - trainer.step_count))[-1]
            except Diverged as e:
                print(f"{label}: {e}", file=sys.stderr)
                break
            if after_step:
                after_step(trainer)
            bar.update(min(chunk, bar.total - bar.n))
            bar.set_postfix(loss=f"{row['loss']:.2f}", refresh=False)
    return trainer


def seconds_per_step(trainer: Trainer) -> float:
    """The median time of one training step (the engine logs each step's cumulative seconds; a resumed
    run's history is thinned past step 1,000, so each gap is divided by the steps it spans)."""
    times = [(b["seconds"] - a["seconds"]) / (b["step"] - a["step"])
             for a, b in zip(trainer.history, trainer.history[1:]) if b["step"] > a["step"]]
    return statistics.median(times) if times else float("nan")


def per_epoch(trainer: Trainer, key: str = "loss") -> list[float]:
    """The mean of a logged term over each epoch's steps: the training curve at one point per epoch. (A
    resumed run's history before its last save is thinned: there it is the mean of the rows kept.)"""
    n = trainer.steps_per_epoch
    epochs: dict[int, list[float]] = {}
    for row in trainer.history:
        epochs.setdefault((row["step"] - 1) // n, []).append(row[key])
    return [round(sum(v) / len(v), 3) for _, v in sorted(epochs.items())]


class Cells:
    """A table's finished cells in experiments/results/NAME.json. A cell already there is not run again,
    so a stopped script picks up where it stopped; each cell is written as soon as it is done."""

    def __init__(self, name: str, **settings):
        settings = json.loads(json.dumps(settings))  # as the file holds them: tuples are lists there
        self.path = RESULTS / f"{name}.json"
        old = json.loads(self.path.read_text()) if self.path.exists() else {}
        if not same_settings(old.get("settings", settings), settings):
            print(f"{self.path.name}: the settings changed, so its cells are measured again", file=sys.stderr)
            old = {}
        # The file's settings are kept when they differ only by model fields added since: same cells, same table.
        self.payload = {"settings": old.get("settings", settings), "cells": old.get("cells", {})}

    def __contains__(self, key: str) -> bool:
        return key in self.payload["cells"]

    def __getitem__(self, key: str) -> dict:
        return self.payload["cells"][key]

    def put(self, key: str, value: dict):
        # Cells another process of the same table wrote meanwhile are kept: two can fill one table.
        if self.path.exists():
            with contextlib.suppress(ValueError, OSError):
                now = json.loads(self.path.read_text())
                if same_settings(now.get("settings"), self.payload["settings"]):
                    self.payload["cells"] = {**now.get("cells", {}), **self.payload["cells"]}
        self.payload["cells"][key] = json_safe(value)
        self.payload.update(torch=torch.__version__, threads=torch.get_num_threads(), date=time.strftime("%Y-%m-%d"))
        RESULTS.mkdir(exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.payload, indent=1))
        tmp.replace(self.path)


def same_settings(old, new) -> bool:
    """A table's settings as its file holds them against the script's: equal, or equal but for model fields
    added to ModelConfig since the file was written, at their defaults (a new model option must not void
    every table whose settings name the network)."""
    if isinstance(old, dict) and isinstance(new, dict):
        from core.models import ModelConfig
        defaults = json.loads(json.dumps(ModelConfig().to_dict()))
        return all(same_settings(old[k], new[k]) if k in old and k in new else
                   (k in defaults and (old.get(k, new.get(k)) == defaults[k]))
                   for k in set(old) | set(new))
    return old == new


def save_figure(fig, name: str, dpi: int = 80):
    """Write a matplotlib figure to docs/figures/NAME and close it."""
    import matplotlib.pyplot as plt
    FIGURES.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURES / name, dpi=dpi)
    plt.close(fig)
    print(f"wrote {FIGURES / name}")


def json_safe(value):
    """JSON has no inf or NaN: write them as the strings "inf", "-inf" and "nan"."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return str(value) if isinstance(value, float) and not math.isfinite(value) else value


def save(name: str, payload: dict):
    RESULTS.mkdir(exist_ok=True)
    payload = {"torch": torch.__version__, "threads": torch.get_num_threads(),
               "date": time.strftime("%Y-%m-%d"), **payload}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=1))
    print(f"wrote {RESULTS / f'{name}.json'}")
