import math
from dataclasses import dataclass

import torch

from ..posterior import mi_terms
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
    terms = mi_terms(q)
    mi, kl, ceiling = terms.mean().item(), q.kl().mean().item(), math.log(len(terms))
    return MutualInformationResult(mi, ceiling, kl, kl - mi, mi > 0.95 * ceiling)


LIVE_PAIR_IMAGES = 100  # a flow's live MI scores the pairs of this many held-out images (its ceiling says so)


def live_mi(q) -> dict:
    """MI on the held-out batch, with its standard error: the per-image terms' standard deviation over
    sqrt(B). For a fixed batch, term i depends on its own draw z_i alone (the mixture is over the batch's
    images, not their codes), so the terms are independent and this is the usual error of a mean; it counts
    the spread between images too, so it errs on the large side for the draws alone. Near MI = 0 the draws
    are all there is, which is how one estimate dips below 0. MI itself never does, so the row's `mi` is the
    estimate clipped at 0 (a chart of it never shows a negative information), and `mi_raw` the estimate as is."""
    terms = mi_terms(q.for_pairs(LIVE_PAIR_IMAGES))
    se, raw = terms.std().item() / math.sqrt(len(terms)), terms.mean().item()
    return {"mi": max(raw, 0.0), "mi_raw": raw, "mi_se": se, "mi_ceiling": math.log(len(terms))}


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
