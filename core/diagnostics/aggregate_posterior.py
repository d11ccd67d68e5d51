import math
from dataclasses import dataclass

import torch
from torch.distributions import Normal

from ..errors import ConfigError
from ..stats import mmd2_unbiased
from . import as_bundle, held_out, register, sampling


@dataclass
class AggregatePosteriorResult:
    edges: list[float]           # histogram bin edges, shared by every dimension
    q_mass: list[list[float]]    # per dimension: the fraction of aggregate-posterior samples per bin
    prior_mass: list[float]      # p(z_d) mass per bin (the same for every dimension)
    mean: list[float]            # per dimension: mean and std of the aggregate posterior q(z_d)
    std: list[float]
    mmd: list[float]             # per dimension: unbiased MMD^2 between q(z_d) and p(z_d)
    mmd_joint: float             # the same for the whole latent vector
    total_correlation: float     # KL(q(z) || prod_d q(z_d)), nats
    exact_marginals: bool = True  # False: q(z_d|x) are Gaussian fits to a flow's draws, so TC is an estimate


def total_correlation(q, z) -> float:
    """TC = E_q(z)[log q(z) - sum_d log q(z_d)], with the minibatch-weighted estimator of Chen et al.
    (2018, sec. 4.1): log q(z_i) ~ logsumexp_j log q(z_i|x_j) - log M. The batch of M images is the
    whole evaluation set, so every image has the same weight 1/M, and the same holds per dimension.
    With narrow posteriors the image's own term dominates log q(z_i), which biases the estimate
    upwards for small M: compare models at the same n. q is a posterior (core.posterior): the joint
    density is its own, the per-dimension ones its marginals."""
    per_dim = q.marginals().log_prob(z[:, None])    # (M, M, d): log q(z_id | x_j)
    log_m = math.log(len(z))
    log_qz = torch.logsumexp(q.log_prob_matrix(z).double(), 1) - log_m
    log_marginals = (torch.logsumexp(per_dim, 1) - log_m).sum(-1)
    return (log_qz - log_marginals).mean().item()


@register("aggregate-posterior")
@torch.no_grad()
def aggregate_posterior(model, data, n: int = 1000, bins: int = 40, seed: int = 0) -> AggregatePosteriorResult:
    """The aggregate posterior q(z) = mean_x q(z|x) against the prior p(z), dimension by dimension:
    histograms of one z ~ q(z|x) per image next to the prior's mass per bin, the unbiased MMD^2
    between q(z_d) and p(z_d) (Gretton et al. 2012; the IMQ kernel of the MMD-VAE), and the total
    correlation of q(z). A good fit of q(z) to the prior is what makes prior samples look like data."""
    bundle = as_bundle(model)
    if bundle.network.cfg.latent == "categorical":
        raise ConfigError("the aggregate posterior per dimension is for Gaussian or bit latents; "
                          "for a categorical latent use code-usage")
    if getattr(bundle.network, "layered", False):
        raise ConfigError("the aggregate posterior per dimension needs q(z|x) of the top layer, which a model with "
                          "two stochastic layers has only as an integral over z1; not computed for it")
    x, y = held_out(bundle, data, n, seed)
    with sampling(x.device, seed):
        q = bundle.posterior(x, y)
        z, prior_z = q.sample(1)[0][0], bundle.network.prior().sample((len(x),))
        tc = total_correlation(q, z)  # inside the seeded stream: a flow's marginals are fitted to draws
    if isinstance(q.marginals(), Normal):
        reach = max(4.0, z.abs().max().item())
        edges = torch.linspace(-reach, reach, bins + 1, dtype=torch.float64)
        cdf = Normal(0.0, 1.0).cdf(edges)
        prior_mass = (cdf[1:] - cdf[:-1]).tolist()
    else:  # bits: two bins, each of prior mass 1/2
        edges = torch.tensor([-0.5, 0.5, 1.5], dtype=torch.float64)
        prior_mass = [0.5, 0.5]
    zc = z.double().cpu()
    q_mass = [(torch.histogram(zc[:, d], edges).hist / len(zc)).tolist() for d in range(z.shape[1])]
    mmd = [mmd2_unbiased(z[:, d:d + 1], prior_z[:, d:d + 1]).item() for d in range(z.shape[1])]
    return AggregatePosteriorResult(edges.tolist(), q_mass, prior_mass, z.mean(0).tolist(), z.std(0).tolist(),
                                    mmd, mmd2_unbiased(z, prior_z).item(), tc, q.exact)
