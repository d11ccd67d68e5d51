"""The records a run leaves, typed: what each key of a history row, a live row and a sidecar holds.

They stay plain dicts in memory (JSON in a sidecar, a pickle-free message on a training process's pipe),
so these types name their keys for the reader and the type checker; they become text only at those edges.
"""
from __future__ import annotations

from enum import Enum
from typing import TypedDict


class HistoryRow(TypedDict, total=False):
    """One training step (core.engine.Trainer.gather): the loss and the objective's scalar terms."""
    step: int                  # 1-based: the row of the step that brought the count to `step`
    loss: float                # what the optimizer minimized (the objective's loss, beta and all)
    recon: float               # -E_q log p(x|z), per image
    kl: float                  # KL(q(z|x) || p(z)) (or its estimate), per image
    kl_per_dim: list[float]    # the KL of each latent dimension, on the training batch
    grad_norm: float           # the gradient's total 2-norm before the update
    beta: float                # the KL weight in force at that step (changed mid-run by a slider)
    lr: float                  # the learning rate in force at that step
    seconds: float | None      # the run's training clock after the step (pauses excluded)
    # ... and any other scalar term the objective reports (elbo, iwae, mmd, mu_regularizer, ...)


class LiveRow(TypedDict, total=False):
    """The live diagnostics on a fixed held-out batch, every `live_every` steps (core.diagnostics.LIVE)."""
    step: int
    kl: float | None           # the held-out KL per image
    kl_per_dim: list[float | None]
    au: int | None             # active units
    mi: float | None           # mutual information I(x; z), the estimate clipped at 0 (MI is never below it)
    mi_raw: float | None       # the estimate as is: below 0 by chance when the MI is near 0
    mi_se: float | None        # the estimate's standard error (rows written before it existed lack it)
    mi_ceiling: float | None   # the ceiling its estimator cannot pass, log B
    code_perplexity: float | None  # how many codes the batch uses (discrete latents)


class Sidecar(TypedDict, total=False):
    """A checkpoint's JSON sidecar (core.checkpoint): everything but the tensors."""
    format: int
    config: dict               # RunConfig.to_dict()
    data: dict                 # the dataset's description (DataInfo) and n_train
    step: int
    run_id: str
    weights_sha256: str
    history: list[HistoryRow]  # thinned on a schedule that keeps the early steps (core.checkpoint)
    live: list[LiveRow]
    snapshots: dict            # the kept steps: {"steps": [...], "every": N, "budget_mb": MB}
    training: dict | None      # what an exact resume needs beyond the tensors (core.engine)
    evaluation: dict           # the ELBO of the first 1,000 test images, and the data it was measured on
    diagnostics: dict          # every diagnostic's result (core.report.record)
    command: str               # the command that trained it ("dashboard" for a page's run)
    target_steps: int          # the step the run was asked to reach
    threads: int               # torch threads of a CPU run (its numbers depend on them)
    parent: dict               # a branch's parent: run id, step, weights' SHA-256, path
    sweep: dict                # a sweep trial's name, grid values and digest


class TrialStatus(str, Enum):
    """Where a sweep trial stands (core.sweep.status; the results table's `status` column)."""
    NEW = "new"            # nothing in its folder yet
    PENDING = "pending"    # to be trained by the sweep under way
    PARTIAL = "partial"    # trained in part (it resumes), or trained and its diagnostics still to record
    DONE = "done"          # trained to its length and diagnosed
    FAILED = "failed"      # diverged, or refused: its message says why
    STALE = "stale"        # its folder holds another run: the spec changed since

    def __str__(self):
        return self.value
