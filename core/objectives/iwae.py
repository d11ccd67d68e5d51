import math

import torch

from ..posterior import Layered, as_event, draw, kl_per_dim
from .base import Knob, Objective, Output, log_weights, register, shared_terms


@register("iwae")
class IWAE(Objective):
    """Importance-weighted autoencoder, Burda et al. (2016), eq. 8:

        L_k(x) = E_{z_1..k ~ q(z|x)} [ log (1/k) sum_i p(x, z_i) / q(z_i|x) ].

    L_1 is the ELBO, L_k >= L_{k-1} in expectation, and L_k -> log p(x) as k grows. The mean is taken
    with logsumexp, so log-weights of -1e4 do not underflow. beta != 1 scales log p(z) - log q(z|x)
    inside each weight (beta = 1 is the paper's bound). Reported 'kl' is the closed-form KL of q.

    A model with two stochastic layers (latent_below; Burda et al.'s sec. 5) is trained on the same bound
    with joint samples (z1, z) ~ q(z1|x) q(z|z1) and log p(x, z1, z) = log p(x|z1) + log p(z1|z) + log p(z);
    its 'kl' is then the one-sample estimate E_q[log q - log p] of both layers, and 'kl_per_dim' the top
    layer's KL(q(z|z1) || N(0, I)) per dimension at the drawn z1.
    """
    paper = "Burda, Grosse & Salakhutdinov, Importance Weighted Autoencoders, ICLR 2016, eq. 8"
    equation = (r"\mathcal{L}_k(x) = \mathbb{E}_{z_{1..k}\sim q(z|x)}\Big[\log \frac{1}{k}\sum_{i=1}^{k}"
                r"\frac{p(x, z_i)}{q(z_i|x)}\Big]")
    knobs = {"k": Knob(5, "importance samples per image; 1 is the ELBO (the seed uses 5 and 50)", min=1, limit="k")}

    def forward(self, model, x, y=None, step=0):
        layered = getattr(model, "layered", False)
        if layered:
            z, log_q, q = Layered.of(model, x).sample_with_above(self.k)  # q: q(z|z1) of each draw
        else:
            q = model.encode(x, y)
            z, log_q = draw(as_event(q), self.k)
        log_w, log_px = log_weights(model, x, y, z, log_q)
        if self.beta != 1:
            log_w = log_px + self.beta * (log_w - log_px)
        bound = (torch.logsumexp(log_w, dim=0) - math.log(self.k)).mean()
        kl = kl_per_dim(q, model.prior())
        terms = shared_terms(-log_px, kl.mean(0) if layered else kl)
        if layered:  # both layers' KL has no closed form: the estimate from these draws
            terms["kl"] = (log_px - log_w).mean()
        return Output(-bound, terms | {"iwae_bound": bound})
