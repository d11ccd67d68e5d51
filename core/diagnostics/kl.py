from dataclasses import dataclass

import torch

from . import as_bundle, held_out, register, sampling


@dataclass
class KLResult:
    total: float            # E_x KL(q(z|x) || p(z)), nats
    per_dim: list[float]    # per dimension, as `per_dim_meaning` says (they sum to total only when factorized)
    exact: bool = True      # total in closed form; False: a Monte Carlo estimate (flows)
    per_dim_meaning: str = ""


def kl_of(q) -> KLResult:
    """From a posterior (core.posterior) of a batch."""
    return KLResult(q.kl().mean().item(), q.kl_per_dim().mean(0).tolist(), q.exact, q.per_dim)


def live_kl(q) -> dict:
    result = kl_of(q)
    return {"kl": result.total, "kl_per_dim": result.per_dim}


@register("kl", live=live_kl)
@torch.no_grad()
def kl(model, data, n: int = 1000) -> KLResult:
    """KL(q(z|x) || p(z)) averaged over x, for the model's own posterior q. In closed form for factorized
    posteriors (per dimension for Gaussian and Bernoulli latents, per category for a categorical one;
    Kingma & Welling 2014, app. B) and full-covariance Gaussians (VLAE, Householder flows, whose per-dimension
    values are the marginals' KLs); a Monte Carlo estimate over z_T for a non-linear flow (IAF)."""
    bundle = as_bundle(model)
    x, y = held_out(bundle, data, n)
    with sampling(bundle.device):
        return kl_of(bundle.posterior(x, y))
