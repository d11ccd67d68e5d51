from dataclasses import dataclass

import torch

from . import as_bundle, held_out, register, sampling

THRESHOLD = 0.01  # Burda et al.'s cut-off on Var_x(E_q[z_d])


@dataclass
class ActiveUnitsResult:
    count: int
    variances: list[float]  # Var_x(E_q(z|x)[z_d]) per dimension
    threshold: float


def active_units_of(q, threshold: float = THRESHOLD) -> ActiveUnitsResult:
    """From a posterior (core.posterior) of a batch: its mean E_q[z|x], a Monte Carlo mean for a flow."""
    variances = q.mean.var(0, unbiased=False)
    return ActiveUnitsResult(int((variances > threshold).sum()), variances.tolist(), threshold)


@register("active-units", live=lambda q: {"au": active_units_of(q).count})
@torch.no_grad()
def active_units(model, data, n: int = 1000, threshold: float = THRESHOLD) -> ActiveUnitsResult:
    """Active units of Burda et al. (2016), sec. 5.2: dimension d is active when
    A_d = Var_x(E_q(z|x)[z_d]) exceeds the threshold (0.01 in the paper). E_q is the model's own posterior
    mean (after a flow, refinement or mode updates)."""
    bundle = as_bundle(model)
    x, y = held_out(bundle, data, n)
    with sampling(bundle.device):
        return active_units_of(bundle.posterior(x, y), threshold)
