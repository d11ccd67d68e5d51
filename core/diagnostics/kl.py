from dataclasses import dataclass

import torch

from ..objectives import kl_per_dim
from . import held_out, register


@dataclass
class KLResult:
    total: float            # E_x KL(q(z|x) || p(z)), nats
    per_dim: list[float]    # the same, dimension by dimension


@register("kl")
@torch.no_grad()
def kl(model, data, n: int = 1000) -> KLResult:
    """KL(q(z|x) || p(z)) averaged over x, in closed form: per dimension for Gaussian and Bernoulli
    latents, per category for a categorical one (Kingma & Welling 2014, app. B)."""
    x, y = held_out(model, data, n)
    per_dim = kl_per_dim(model.encode(x, y), model.prior()).mean(0)
    return KLResult(per_dim.sum().item(), per_dim.tolist())
