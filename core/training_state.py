"""A run's training state, saved beside its weights (core.weights) so that it continues exactly.

Tensors: the optimizer's per-parameter state ("train.optimizer.*", core.weights), the random stream
("train.rng.cpu", "train.rng.cuda") and the batch order ("train.order"); JSON: the optimizer's
hyperparameters and the counters. `load` gives a Trainer ready to take its next step as if the run had
never stopped; `branch` starts a new run from a saved step with knobs or the learning rate changed.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from . import checkpoint
from . import weights as weights_io
from .config import LIVE_EVERY, RunConfig, check_lr
from .errors import CheckpointError, LabError
from .rng import cuda_devices


def capture(trainer) -> tuple[dict, dict]:
    """What a resumed run needs beyond the weights: (tensors, JSON fields)."""
    tensors, groups = weights_io.optimizer_tensors(trainer.optimizer)
    tensors["train.rng.cpu"] = trainer._cpu_rng.clone()
    if cuda_devices(trainer.device):
        tensors["train.rng.cuda"] = trainer._cuda_rng.clone()
    if trainer._order is not None:
        tensors["train.order"] = trainer._order.cpu()
    fields = {"step": trainer.step_count, "optimizer": groups, "batch_position": trainer._pos,
              "seconds": trainer.seconds, "live_every": trainer.live_every, "device": trainer.device.type,
              "diverged": trainer.diverged}
    return tensors, fields


def config_of(meta: dict, path) -> RunConfig:
    try:
        return RunConfig.from_dict(meta["config"])
    except (LabError, KeyError, TypeError, ValueError, ArithmeticError) as e:
        raise CheckpointError(f"{checkpoint.paths(path)[1]}: its run config cannot be read ({e})") from None


def load(trainer_class, path, data=None):
    """The run saved at `path` (by save(resumable=True) or an autosave), ready to take its next step.
    Refuses a checkpoint without training state, a diverged run, and a sidecar and weights that disagree,
    each by name."""
    meta, tensors = checkpoint.read(path)
    where = checkpoint.paths(path)[1]
    training = meta.get("training")
    if training is None:
        raise CheckpointError(f"{where}: saved without its training state, so it cannot resume; start a branch "
                              f"from it instead")
    if training.get("diverged"):
        raise CheckpointError(f"{where}: this run diverged ({training['diverged']}); branch from it with a lower "
                              f"learning rate instead")
    live_every = training.get("live_every", LIVE_EVERY)
    run_id = meta.get("run_id")
    if not isinstance(live_every, int) or live_every < 0 or not isinstance(run_id, str):
        raise CheckpointError(f"{where}: its training state is malformed (live_every {live_every!r}, "
                              f"run_id {run_id!r})")
    trainer = trainer_class(config_of(meta, path), data, live_every=live_every)
    restore(trainer, meta, tensors, path)
    trainer.run_id, trainer.parent = run_id, meta.get("parent")
    return trainer


def branch(trainer_class, path, data=None, settings: dict | None = None, lr: float | None = None,
           live_every: int = LIVE_EVERY):
    """A new run from the step saved at `path`: its weights, history and (if saved) optimizer state and
    random stream, with the objective's knobs (beta among them) and the learning rate changed as given.
    Its `parent` (saved in its sidecar) names the run, the step and the weights it came from."""
    meta, tensors = checkpoint.read(path)
    config = config_of(meta, path)
    config = replace(config, settings={**config.settings, **(settings or {})}, lr=check_lr(lr or config.lr))
    trainer = trainer_class(config, data, live_every=live_every)
    restore(trainer, meta, tensors, path, optimizer=meta.get("training") is not None)
    if lr is not None:
        trainer.set_lr(lr)
    trainer.parent = {"run_id": meta.get("run_id"), "step": trainer.step_count,
                      "weights_sha256": meta["weights_sha256"], "path": str(checkpoint.paths(path)[1])}
    return trainer


def restore(trainer, meta: dict, tensors: dict, path, optimizer: bool = True):
    """Give a new trainer the saved run's weights, counters, history, live rows, kept steps and (with
    optimizer) its optimizer state, random stream and batch order."""
    where = checkpoint.paths(path)[1]
    training, step, history = meta.get("training") or {}, meta.get("step", 0), meta.get("history", [])
    # A saved history is thinned (core.checkpoint.thin_history), so its rows are not counted: its last row
    # is the saved step's.
    last = history[-1]["step"] if history else 0
    if last != step or (training and training.get("step") != step):
        raise CheckpointError(f"{where}: the sidecar and the weights disagree (step {step}, history up to "
                              f"step {last}, training state at step {training.get('step')})")
    n_train = (meta.get("data") or {}).get("n_train")
    if optimizer and n_train is not None and n_train != len(trainer.train_x):
        raise CheckpointError(f"{where}: the run trained on {n_train:,} images and {len(trainer.train_x):,} are "
                              f"here ({trainer.data.info.name}); it cannot resume exactly on other data")
    try:
        network_state, objective_state = weights_io.states(tensors)
        trainer.model.load_state_dict(network_state)
        trainer.objective.load_state_dict(objective_state)
        if optimizer:
            weights_io.load_optimizer(trainer.optimizer, tensors, training["optimizer"])
            steps = {int(v) for k, v in tensors.items() if k.startswith("train.optimizer.") and k.endswith(".step")}
            if steps - {step}:
                raise ValueError(f"the optimizer's state is at step {sorted(steps)}")
            trainer._cpu_rng = tensors["train.rng.cpu"].clone()
            if cuda_devices(trainer.device) and training.get("device") == "cuda" and "train.rng.cuda" in tensors:
                trainer._cuda_rng = tensors["train.rng.cuda"].clone()
            order = tensors.get("train.order")
            if order is not None and (order.dim() != 1 or len(order) != len(trainer.train_x)
                                      or order.dtype != torch.int64
                                      or not torch.equal(order.sort().values, torch.arange(len(order)))):
                raise ValueError(f"the saved batch order is not a permutation of {len(trainer.train_x):,} images")
            trainer._order = None if order is None else order.to(trainer.device)
            trainer._pos = int(training["batch_position"])
            trainer.seconds = float(training.get("seconds", 0.0))
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{where}: the sidecar and the weights disagree ({e})") from None
    trainer.step_count = step
    trainer.history = list(history)
    trainer.live = [row for row in meta.get("live", []) if row.get("step", 0) <= step]
    trainer.kept.restore(trainer, meta, tensors)
