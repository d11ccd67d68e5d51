"""What every objective shares: knobs, the registry, and the pieces of ELBOs and importance weights."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn as nn

from .. import limits
from ..errors import ConfigError
from ..posterior import Factorized, Flow, Layered, Posterior, kl_per_dim
from ..registry import Registry

OBJECTIVES = Registry("objective")


@dataclass(frozen=True)
class Knob:
    """One setting of an objective, with the paper's default; the CLI and the UI are built from these."""
    default: float | int | str
    help: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    limit: str = ""  # a size from core.limits' table (samples, flow steps, ...): its maximum is this knob's max

    @property
    def upper(self) -> float | None:
        """The largest value allowed: max, or the limit's maximum."""
        return limits.maximum(self.limit) if self.limit else self.max

    def check(self, name: str, value):
        if self.choices:
            if value not in self.choices:
                raise ConfigError(f"{name} must be one of {', '.join(self.choices)}, not {value!r}")
            return value
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number, not {value!r}") from None
        if isinstance(self.default, int):
            if not value.is_integer():
                raise ConfigError(f"{name} must be a whole number, not {value}")
            value = int(value)
        if not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, not {value}")
        if self.min is not None and value < self.min:
            raise ConfigError(f"{name} must be at least {self.min}, not {value}")
        if self.upper is not None and value > self.upper:
            what = f" ({limits.LIMITS[self.limit].what})" if self.limit else ""
            raise ConfigError(f"{name} must be at most {self.upper:,}{what}, not {value:,}")
        return value


BETA = Knob(1.0, "weight on the KL term; 1 is the true ELBO", min=0.0)


@dataclass
class Output:
    """loss is what the optimizer minimizes (a batch mean); terms are named per-sample means
    reported every step. Every objective reports at least recon, kl and kl_per_dim."""
    loss: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)


class Objective(nn.Module):
    """An objective is a module so that later ones (flows) can own parameters the engine trains."""
    paper: ClassVar[str] = ""
    equation: ClassVar[str] = ""  # LaTeX, shown by the dashboard
    knobs: ClassVar[dict[str, Knob]] = {}
    # False where the training term 'kl_per_dim' does not sum to 'kl': a flow reports its base q_0's
    # closed-form KL per dimension beside a one-sample estimate of the whole; the VLAE its marginals'.
    exact_kl_per_dim: ClassVar[bool] = True

    def __init__(self, **values):
        super().__init__()
        unknown = set(values) - set(self.knobs)
        if unknown:
            have = ", ".join(self.knobs) or "none"
            raise ConfigError(f"objective {self.name!r} has no setting {', '.join(sorted(unknown))} (it has: {have})")
        self.beta = 1.0  # every objective has a KL weight the engine can change mid-run
        for name, knob in self.knobs.items():
            setattr(self, name, knob.check(name, values.get(name, knob.default)))

    @property
    def name(self) -> str:
        return self.registered_name

    def settings(self) -> dict:
        """The knob values, including a beta changed mid-run: what a checkpoint stores."""
        return {name: getattr(self, name) for name in self.knobs} | {"beta": self.beta}

    def posterior(self, model, x, y=None) -> Posterior:
        """This objective's posterior q(z|x) for a batch (core.posterior): what every diagnostic, the
        evaluation and the pages read. Default: the encoder's factorized q. Objectives that refine or
        transform q (flows, SA-VAE, VLAE) override it, so a diagnostic never needs to know which did. A
        model with two stochastic layers has its own (core.posterior.Layered)."""
        if getattr(model, "layered", False):
            return Layered.of(model, x)
        return Factorized(model.encode(x, y), model.prior())

    def configure_model(self, cfg, info):
        """Adjust the model config (a ModelConfig) this objective needs for the dataset described
        by info (a DataInfo): labels for a CVAE, latent clipping for the mu-VAE. Default: as is."""
        return cfg

    def attach(self, model):
        """Create any parameters this objective owns that depend on the model (flows sized from the
        encoder's features). Called once, after the model is built; the engine trains them too."""

    def before_step(self, model, x, y, next_batch, step: int):
        """Work before the training step on (x, y): aggressive training's encoder-only inner loop, which draws
        fresh batches with next_batch(). Default: none."""

    def set_beta(self, beta: float):
        self.beta = BETA.check("beta", beta)


def register(name: str):
    """Class decorator: put an objective in OBJECTIVES under `name`."""
    def add(cls):
        cls.registered_name = name
        return OBJECTIVES.register(name)(cls)
    return add


def build(name: str, settings: dict | None = None, model=None) -> Objective:
    """The named objective with its settings (beta may be among them), attached to `model` if given."""
    settings = dict(settings or {})
    beta = settings.pop("beta", None)
    cls = OBJECTIVES.get(name)
    if "beta" in cls.knobs and beta is not None:
        settings["beta"] = beta
    obj = cls(**settings)
    if beta is not None:
        obj.set_beta(beta)
    if model is not None:
        obj.attach(model)
    return obj


def sample_and_score(model, x, y=None, target=None, q=None):
    """q(z|x), one reparameterized z ~ q and -log p(target|z) per image (B,); target defaults to x, q to the
    encoder's (an objective that shapes its posterior passes its own). y reaches conditional models."""
    q = model.encode(x, y) if q is None else q
    z = q.rsample() if q.has_rsample else q.sample()  # discrete latents: no reparameterization
    recon = -model.decode(z, y).log_prob(x if target is None else target)
    return q, z, recon


def elbo_parts(model, x, y=None, target=None, q=None):
    """-log p(target|z) per image (B,) for one z ~ q(z|x), and the closed-form KL(q(z|x) || p(z))
    per image and dimension (B, d); q defaults to the encoder's."""
    q, _, recon = sample_and_score(model, x, y, target, q)
    return recon, kl_per_dim(q, model.prior())


def log_weights(model, x, y, z, log_q):
    """Importance weights of latent samples z (k, B, d) drawn with log-density log_q (k, B):
    log w = log p(x|z) + log p(z) - log q(z|x). Returns log w and log p(x|z), both (k, B).
    All k*B images go through the decoder as one batch."""
    log_px = decode_log_prob(model, x, y, z)
    return log_px + model.log_prior(z) - log_q, log_px


def decode_log_prob(model, x, y, z):
    """log p(x|z) of k latent samples per image, z (k, B, d) -> (k, B), as one decoder batch."""
    k, batch = z.shape[:2]
    xk = x.expand(k, *x.shape).reshape(k * batch, *x.shape[1:])
    yk = None if y is None else y.expand(k, batch).reshape(-1)
    return model.decode(z.reshape(k * batch, -1), yk).log_prob(xk).view(k, batch)


class FlowObjective(Objective):
    """The ELBO with a normalizing flow on the posterior (Rezende & Mohamed 2015, eq. 15):

        L = E_q0[ log p(x|z_T) + log p(z_T) - log q_0(z_0|x) + sum_t log|det df_t/dz_{t-1}| ].

    Subclasses define flow(z, h) -> (z_T, log|det| per image). 'kl' is the one-sample estimate of
    KL(q_T || p); 'kl_per_dim' is the closed-form KL of the base q_0, dimension by dimension."""
    exact_kl_per_dim = False

    def flow(self, z, h):
        """z_0 (N, d) and features h (N, F) -> z_T and log|det dz_T/dz_0| per row."""
        raise NotImplementedError

    def inverse(self, z, h):
        """z_T -> z_0, and log|det dz_T/dz_0| at that z_0: what log q_T(z_T | x) of any code needs."""
        raise NotImplementedError

    def flow_posterior(self, model, x, y=None) -> Flow:
        h = model.encode_features(x, y)
        return Flow(model.posterior(model.encoder_head(h)), h, self.flow, self.inverse, model.prior())

    def posterior(self, model, x, y=None) -> Posterior:
        return self.flow_posterior(model, x, y)

    def forward(self, model, x, y=None, step=0):
        q = self.flow_posterior(model, x, y)  # trained through its draws, whatever form posterior() takes
        zT, log_q, logdet = q.sample_with_logdet(1)
        log_w, log_px = log_weights(model, x, y, zT, log_q)
        recon, kl = -log_px[0], (log_px - log_w)[0]
        return Output((recon + self.beta * kl).mean(),
                      {"recon": recon.mean(), "kl": kl.mean(), "kl_per_dim": kl_per_dim(q.q0, model.prior()).mean(0),
                       "log_det": logdet.mean()})


def score_output(model, q, log_px, log_q, signal, beta) -> Output:
    """The ELBO of a discrete latent with a score-function gradient for the encoder:
    mean_m signal_m * grad log q(z_m|x), plus grad of mean_m log p(x|z_m) for the decoder and the
    closed-form KL. The score term is written as signal * (log q - stop_grad(log q)), which is 0 in
    value, so the reported loss stays -ELBO."""
    kl = kl_per_dim(q, model.prior())
    score = (signal.detach() * (log_q - log_q.detach())).mean(0)
    recon = -log_px.mean(0)
    loss = (recon + beta * kl.sum(-1) - score).mean()
    return Output(loss, shared_terms(recon, kl))


def shared_terms(recon, kl) -> dict:
    """The terms every objective reports, from per-image -log p(x|z) (any shape ending in B) and the
    per-image, per-dimension KL (B, d): batch means of recon, total KL and KL per dimension."""
    return {"recon": recon.mean(), "kl": kl.sum(-1).mean(), "kl_per_dim": kl.mean(0)}


def weighted_kl_output(recon, kl, weight) -> Output:
    """loss = E[-log p(x|z)] + weight * E[KL]; reports the terms every objective shares."""
    terms = shared_terms(recon, kl)
    return Output(terms["recon"] + weight * terms["kl"], terms)
