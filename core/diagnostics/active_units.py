from dataclasses import dataclass

import torch

from . import held_out, register


@dataclass
class ActiveUnitsResult:
    count: int
    variances: list[float]  # Var_x(E_q[z_d]) per dimension
    threshold: float


@register("active-units")
@torch.no_grad()
def active_units(model, data, n: int = 1000, threshold: float = 0.01) -> ActiveUnitsResult:
    """Active units of Burda et al. (2016), sec. 5.2: dimension d is active when
    A_d = Var_x(E_q(z|x)[z_d]) exceeds the threshold (0.01 in the paper)."""
    x, y = held_out(model, data, n)
    means = model.encode(x, y).mean
    variances = means.var(0, unbiased=False)
    return ActiveUnitsResult(int((variances > threshold).sum()), variances.tolist(), threshold)
