"""The model value: everything that makes "this model", in one place.

    bundle.network      the VAE (encoder, decoder, prior)
    bundle.objective    the objective with its trained parameters (a flow's layers) and knob values
    bundle.config       the run config it was trained with
    bundle.ref          its identity: a stable id (a run's id, or the SHA-256 of a file's weights) and a
                        version (the training step); caches and page state key on ref, never on a label
    bundle.posterior(x) q(z|x) as its objective defines it (core.posterior)

A trainer's snapshot, a run in a child process, a checkpoint file and a recorded run all give one, and
evaluation, every diagnostic, exploration, reports, the CLI and the pages take one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from . import snapshots, weights
from .config import RunConfig, epochs
from .data import DataInfo
from .models import VAE
from .objectives import Objective, build
from .posterior import Posterior


@dataclass(frozen=True)
class Ref:
    id: str        # a run id, made when the run starts, or the weights' SHA-256 for a file
    version: int   # the training step

    @property
    def key(self) -> tuple[str, int]:
        return self.id, self.version


@dataclass
class Bundle:
    network: VAE
    objective: Objective
    config: RunConfig
    ref: Ref
    data_info: DataInfo | None = None    # the data it was trained on, as loaded then
    n_train: int | None = None           # how many training images that data had (the epoch counts those)
    history: list[dict] = field(default_factory=list)
    live: list[dict] = field(default_factory=list)
    meta: dict = field(default_factory=dict)   # a checkpoint's sidecar, as read

    @property
    def step(self) -> int:
        return self.ref.version

    @property
    def steps(self) -> list[int]:
        """The steps of its run whose weights a checkpoint kept (core.snapshots), the latest included;
        [its own step] for a model with no file behind it."""
        return sorted({*snapshots.steps(self.meta), self.step}) if self.meta else [self.step]

    @property
    def epoch(self) -> float | None:
        """Epochs of the data it was trained on (its training set's size as recorded), whatever data is here."""
        return epochs(self.step, self.config.batch_size, self.n_train) if self.n_train else None

    @property
    def device(self) -> torch.device:
        return self.network.prior_loc.device

    @property
    def latent_dim(self) -> int:
        return self.network.latent_dim

    def posterior(self, x, y=None) -> Posterior:
        return self.objective.posterior(self.network, x, y)

    @torch.no_grad()
    def reconstruct(self, x, y=None) -> torch.Tensor:
        """The decoder's mean at the posterior mean of each image (after the flow, refinement or mode
        updates this model's posterior makes)."""
        x = x.to(self.device)
        y = None if y is None else y.to(self.device)
        return self.network.mean_image(self.posterior(x, y).mean, y).cpu()


def as_bundle(model, objective: Objective | None = None) -> Bundle:
    """A bundle as it is, or a bare network with its objective (default: the plain ELBO, whose posterior is
    the encoder's q) made into one, identified by the SHA-256 of its weights."""
    if isinstance(model, Bundle):
        return model
    objective = objective if objective is not None else build("vae", model=model)
    config = RunConfig(model=model.cfg, objective=objective.name, settings=objective.settings())
    ref = Ref(weights.sha256(weights.to_bytes(weights.state_tensors(model, objective))), 0)
    return Bundle(model, objective, config, ref)
