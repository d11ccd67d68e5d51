"""What a Trainer does after a step besides stepping: the live rows, the kept steps and the periodic
checkpoint. Each is a small object whose after_step(trainer) the trainer calls after every step, in this
order (a checkpoint written at a step holds that step's kept weights and live row).
"""
from __future__ import annotations

import time

import torch

from . import snapshots
from . import weights as weights_io
from .config import finite_or_none, save_every
from .diagnostics import LIVE
from .evaluate import eval_split
from .records import LiveRow
from .rng import seeded


class KeptSteps:
    """The run's weights at the steps core.snapshots picks (dense early, sparse later), stored compactly
    (float16, core.snapshots.compact) and thinned to `budget_mb` counted in those bytes, so any view can
    go back to step 600 of the run. The latest step's weights are the trainer's own."""

    def __init__(self, budget_mb: float = snapshots.BUDGET_MB):
        self.budget_mb, self.every = float(budget_mb), snapshots.EVERY
        self.weights: dict[int, dict] = {}  # step -> CPU tensors of the network and objective then

    def after_step(self, trainer):
        if self.budget_mb and snapshots.due(trainer.step_count, self.every):
            self.keep(trainer)

    def keep(self, trainer):
        """Keep the weights as they are now, and thin the kept steps to the budget."""
        if not self.budget_mb:
            return
        tensors = snapshots.compact(weights_io.state_tensors(trainer.model, trainer.objective))
        self.weights[trainer.step_count] = tensors
        kept, self.every = snapshots.thin(list(self.weights), self.every,
                                          snapshots.limit(self.budget_mb, snapshots.nbytes(tensors)))
        self.weights = {s: self.weights[s] for s in kept}

    def drop_after(self, step: int):
        """Forget the steps after `step` (a run that diverged goes back to its last good step)."""
        self.weights = {s: t for s, t in self.weights.items() if s <= step}

    def state(self, step: int) -> tuple[dict, dict]:
        """For a checkpoint at `step`: ({step: tensors} of the earlier kept steps, whose weights the file's
        own are not) and the sidecar's fields (the steps, the grid, the budget)."""
        earlier = {s: t for s, t in self.weights.items() if s != step}
        return earlier, {"steps": sorted(self.weights), "every": self.every, "budget_mb": self.budget_mb}

    def restore(self, trainer, meta: dict, tensors: dict):
        """A saved run's kept steps (its own step's weights are the file's), its grid and budget. They are held
        compact, whether the file stored them so or, written before, as float32."""
        fields = meta.get("snapshots") or {}
        kept = {s: snapshots.compact(t) for s, t in snapshots.unpack(tensors).items()}
        if trainer.step_count in fields.get("steps", []):
            kept[trainer.step_count] = snapshots.compact(weights_io.state_tensors(trainer.model, trainer.objective))
        self.weights = {s: kept[s] for s in sorted(kept) if s <= trainer.step_count}
        every, budget = fields.get("every", snapshots.EVERY), fields.get("budget_mb", self.budget_mb)
        if isinstance(every, int) and every > 0 and isinstance(budget, (int, float)) and budget >= 0:
            self.every, self.budget_mb = every, float(budget)


class LiveRows:
    """The live diagnostics (core.diagnostics.LIVE: KL, active units, mutual information, code usage) on a
    fixed batch of held-out images every `every` steps, appended to trainer.live. They draw from a stream
    seeded by the step, inside the trainer's own, so watching a run does not change it."""

    def __init__(self, trainer, every: int, batch: int):
        self.every = every
        with seeded(trainer.device, trainer.config.seed):
            x, y = eval_split(trainer.data, batch)
        self.x, self.y = x.to(trainer.device), y.to(trainer.device)

    def after_step(self, trainer):
        if self.every and trainer.step_count % self.every == 0:
            trainer.gather()
            trainer.live.append(self.row(trainer))

    @torch.no_grad()
    def row(self, trainer) -> LiveRow:
        row = {"step": trainer.step_count}
        trainer.model.eval()  # batch norm reads its running statistics and leaves them as they are
        with trainer.own_random_stream(), seeded(trainer.device, trainer.step_count):
            q = trainer.objective.posterior(trainer.model, self.x, self.y).for_live()
            for _, live in LIVE.items():
                row.update(live(q))
        return {k: finite_or_none(v) for k, v in row.items()}


class Autosave:
    """A resumable checkpoint to `path` every N steps or every so many seconds of the run
    (core.config.save_every: '500', '5m'), written from inside step()."""

    def __init__(self, path, every, extra: dict):
        self.path, self.schedule, self.extra = path, save_every(every), extra
        self.last = time.monotonic()

    def after_step(self, trainer):
        kind, every = self.schedule
        due = trainer.step_count % every == 0 if kind == "steps" else time.monotonic() - self.last >= every
        if due:
            trainer.save(self.path, resumable=True, **self.extra)
            self.last = time.monotonic()
