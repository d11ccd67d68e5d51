import math
from dataclasses import dataclass

import torch

from . import as_bundle, held_out, register, sampling


@dataclass
class MutualInformationResult:
    mi: float                 # I_q(x; z), nats
    ceiling: float            # log(batch size): the estimator's expectation cannot exceed it (the mixture is at
                              # least q(z|x_i) / B); one estimate on a small batch can, its log q(z) being one draw
    kl: float                 # E_x KL(q(z|x) || p(z))
    aggregate_kl: float       # KL(q(z) || p(z)) = kl - mi, by the decomposition below
    at_ceiling: bool          # within 5% of the ceiling: read it as "at least this", not a measure


def mutual_information_of(q) -> MutualInformationResult:
    """From a posterior (core.posterior) of a batch of B images: one code z_i ~ q(z|x_i) per image, and
    log q(z_i) ~ logsumexp_j log q(z_i|x_j) - log B, the batch's mixture as the aggregate posterior."""
    z = q.sample(1)[0][0]
    log_qz = torch.logsumexp(q.log_prob_matrix(z), dim=1) - math.log(len(z))
    mi = (q.expected_log_q() - log_qz).mean().item()
    kl = q.kl().mean().item()
    ceiling = math.log(len(z))
    return MutualInformationResult(mi, ceiling, kl, kl - mi, mi > 0.95 * ceiling)


LIVE_PAIR_IMAGES = 100  # a flow's live MI scores the pairs of this many held-out images (its ceiling says so)


def live_mi(q) -> dict:
    result = mutual_information_of(q.for_pairs(LIVE_PAIR_IMAGES))
    return {"mi": result.mi, "mi_ceiling": result.ceiling}


@register("mutual-information", live=live_mi)
@torch.no_grad()
def mutual_information(model, data, n: int = 1000, seed: int = 0) -> MutualInformationResult:
    """I_q(x; z) with the minibatch estimator of He et al. (2019, `calc_mi`):
    I = E_x E_q(z|x)[log q(z|x) - log q(z)], with log q(z) ~ logsumexp_j log q(z|x_j) - log B over the
    batch, for the model's own posterior q (a flow's q_T(z|x_j) by inverting the flow for every pair).
    E_q log q(z|x) = -H(q(z|x)) is in closed form as in He et al., except for a flow, whose entropy is a
    Monte Carlo mean over its draws (core.posterior.Flow). Also the decomposition E_x KL(q(z|x) || p(z)) = I_q(x; z) + KL(q(z) || p(z)) (Hoffman & Johnson 2016)."""
    bundle = as_bundle(model)
    x, y = held_out(bundle, data, n, seed)
    with sampling(x.device, seed):
        return mutual_information_of(bundle.posterior(x, y))
