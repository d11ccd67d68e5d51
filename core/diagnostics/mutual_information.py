import math
from dataclasses import dataclass

import torch
from torch.distributions import Normal

from ..objectives import as_event, kl_per_dim
from . import held_out, register, sampling


@dataclass
class MutualInformationResult:
    mi: float                 # I_q(x; z), nats
    ceiling: float            # log(batch size): the estimator cannot exceed it
    kl: float                 # E_x KL(q(z|x) || p(z))
    aggregate_kl: float       # KL(q(z) || p(z)) = kl - mi, by the decomposition below
    at_ceiling: bool          # within 5% of the ceiling: read it as "at least this", not a measure


def pairwise_log_density(q, z):
    """(B, B): log q(z_i | x_j) for every image i's code and every image j's posterior."""
    if isinstance(q, Normal):
        # sum_d (z_id - mu_jd)^2 / s_jd^2 with the square expanded: two matrix products instead of a
        # (B, B, d) tensor, ten times faster; in float64 so the expansion loses nothing to cancellation.
        z, mu, prec = z.double(), q.loc.double(), q.scale.double().pow(-2)
        sq = z.pow(2) @ prec.T - 2 * z @ (mu * prec).T + (mu.pow(2) * prec).sum(-1)
        log_norm = -q.scale.double().log().sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
        return (log_norm - 0.5 * sq).to(q.loc.dtype)
    return as_event(q).log_prob(z[:, None])  # discrete latents: by broadcasting over the batch


def mutual_information_of(q, prior) -> MutualInformationResult:
    joint = as_event(q)  # densities of whole latent vectors
    batch = joint.batch_shape[0]
    neg_entropy = -joint.entropy().mean()
    z = joint.sample()
    log_qz = torch.logsumexp(pairwise_log_density(q, z), dim=1) - math.log(batch)
    mi = (neg_entropy - log_qz.mean()).item()
    kl = kl_per_dim(q, prior).sum(-1).mean().item()
    ceiling = math.log(batch)
    return MutualInformationResult(mi, ceiling, kl, kl - mi, mi > 0.95 * ceiling)


def live_mi(q, prior) -> dict:
    result = mutual_information_of(q, prior)
    return {"mi": result.mi, "mi_ceiling": result.ceiling}


@register("mutual-information", live=live_mi)
@torch.no_grad()
def mutual_information(model, data, n: int = 1000, seed: int = 0) -> MutualInformationResult:
    """I_q(x; z) with the minibatch estimator of He et al. (2019, `calc_mi`):
    I = E_x[-H(q(z|x))] - E_z[log q(z)], with log q(z) ~ logsumexp_j log q(z|x_j) - log B over the
    batch. Also the decomposition E_x KL(q(z|x) || p(z)) = I_q(x; z) + KL(q(z) || p(z))
    (Hoffman & Johnson 2016). The estimate is capped near log B, the batch's own information."""
    x, y = held_out(model, data, n, seed)
    with sampling(x.device, seed):
        return mutual_information_of(model.encode(x, y), model.prior())
