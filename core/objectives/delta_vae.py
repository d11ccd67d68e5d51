import functools
import math

import torch
from torch.distributions import Normal

from ..posterior import Factorized
from .base import BETA, Knob, Objective, elbo_parts, register, weighted_kl_output


@functools.cache  # read every step, with delta fixed for the run
def committed_std(delta: float) -> float:
    """The largest std sigma_u < 1 whose N(0, sigma_u^2) is delta nats from N(0, 1): the root below 1 of
    (sigma^2 - log sigma^2 - 1) / 2 = delta, by bisection (the left side falls from +inf to 0 on (0, 1])."""
    low, high = 1e-12, 1.0
    for _ in range(200):
        mid = (low + high) / 2
        if (mid - math.log(mid) - 1) / 2 > delta:
            low = mid
        else:
            high = mid
    return math.sqrt(low)


@register("delta-vae")
class DeltaVAE(Objective):
    """delta-VAE, Razavi et al. (2019): a posterior family that never contains the prior, so the KL of every
    image is at least a committed rate delta whatever the decoder does. Here the family of independent
    Gaussians with every std below sigma_u < 1: KL(N(mu, s^2) || N(0, 1)) = (mu^2 + s^2 - log s^2 - 1) / 2 is
    at least (s^2 - log s^2 - 1) / 2, which falls as s rises to 1, so s <= sigma_u with

        (sigma_u^2 - log sigma_u^2 - 1) / 2 = delta

    keeps every dimension of every image at least delta nats from the prior. The encoder's log-variance
    output becomes s = sigma_u * sigmoid(output), our parameterization. The paper's sequential version (an
    AR(1) prior against a factorized posterior) is for latent sequences, which the lab's models do not have.
    """
    paper = "Razavi, van den Oord, Poole & Vinyals, Preventing Posterior Collapse with delta-VAEs, ICLR 2019"
    equation = (r"\sigma_q \le \sigma_u < 1,\ \tfrac12(\sigma_u^2 - \log\sigma_u^2 - 1) = \delta \ \Rightarrow\ "
                r"\mathrm{KL}(q(z_i|x)\,\|\,\mathcal{N}(0,1)) \ge \delta")
    knobs = {
        "delta": Knob(0.1, "delta: nats every dimension of every posterior keeps from the prior", min=1e-6, max=50.0),
        "beta": BETA,
    }

    def posterior(self, model, x, y=None):
        mu, raw = model.encoder_head(model.encode_features(x, y)).chunk(2, dim=-1)  # raw: the log-variance output
        scale = committed_std(self.delta) * torch.sigmoid(raw)
        return Factorized(Normal(mu, scale, validate_args=False), model.prior())

    def forward(self, model, x, y=None, step=0):
        recon, kl = elbo_parts(model, x, y, q=self.posterior(model, x, y).dist)
        return weighted_kl_output(recon, kl, self.beta)
