"""Statistics shared by objectives and diagnostics: kernels and MMD between samples."""
from __future__ import annotations

import torch


def kernel(a, b, kind: str = "imq"):
    """k(a_i, b_j) for all pairs, with the scale 2 d (prior variance 1) of Tolstikhin et al. (2018):
    inverse multiquadratic C / (C + |a - b|^2), or Gaussian exp(-|a - b|^2 / C)."""
    scale = 2.0 * a.shape[-1]
    sq = torch.cdist(a, b).pow(2)
    return scale / (scale + sq) if kind == "imq" else torch.exp(-sq / scale)


def mmd2_unbiased(a, b, kind: str = "imq"):
    """The unbiased estimate of MMD^2 (Gretton et al. 2012, eq. 3): the diagonal terms k(a_i, a_i)
    are left out of the within-sample means, so its expectation is exactly 0 when a and b are
    drawn from one distribution (it can dip below 0)."""
    n, m = len(a), len(b)
    kaa, kbb = kernel(a, a, kind), kernel(b, b, kind)
    within_a = (kaa.sum() - kaa.diagonal().sum()) / (n * (n - 1))
    within_b = (kbb.sum() - kbb.diagonal().sum()) / (m * (m - 1))
    return within_a + within_b - 2 * kernel(a, b, kind).mean()
