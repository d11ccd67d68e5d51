from dataclasses import dataclass

import torch

from ..objectives import kl_per_dim
from . import held_out, register


@dataclass
class KLResult:
    total: float            # E_x KL(q(z|x) || p(z)), nats
    per_dim: list[float]    # the same, dimension by dimension


def kl_of(q, prior) -> KLResult:
    per_dim = kl_per_dim(q, prior).mean(0)
    return KLResult(per_dim.sum().item(), per_dim.tolist())


def live_kl(q, prior) -> dict:
    result = kl_of(q, prior)
    return {"kl": result.total, "kl_per_dim": result.per_dim}


@register("kl", live=live_kl)
@torch.no_grad()
def kl(model, data, n: int = 1000) -> KLResult:
    """KL(q(z|x) || p(z)) averaged over x, in closed form: per dimension for Gaussian and Bernoulli
    latents, per category for a categorical one (Kingma & Welling 2014, app. B)."""
    x, y = held_out(model, data, n)
    return kl_of(model.encode(x, y), model.prior())
