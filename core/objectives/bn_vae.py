import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Normal

from ..posterior import Factorized
from .base import BETA, Knob, Objective, elbo_parts, register, weighted_kl_output


@register("bn-vae")
class BNVAE(Objective):
    """BN-VAE, Zhu et al. (2020): the posterior means pass through batch normalization with a fixed scale
    gamma and a learned shift b per dimension, mu~_i = gamma (mu_i - mean_B mu_i) / std_B mu_i + b_i. Since
    KL(q(z_i|x) || N(0, 1)) = (mu_i^2 + sigma_i^2 - log sigma_i^2 - 1) / 2 >= mu_i^2 / 2, and over a batch
    mu~_i has mean b_i and variance gamma^2, the batch's expected KL is at least

        E_B[KL] >= sum_i (gamma^2 + b_i^2) / 2 >= d gamma^2 / 2,

    a floor the decoder cannot push to zero however strong it is. gamma is fixed (a learned one would
    shrink to 0); the variances are left alone, as in the authors' code (valdersoul/bn-vae, enc_lstm.py).
    Batch statistics while the model trains, running ones when it is evaluated (model.eval()).
    """
    paper = "Zhu, Bi, Liu, Ma, Li & Wu, A Batch Normalized Inference Network Keeps the KL Vanishing Away, ACL 2020"
    equation = (r"\tilde\mu_i = \gamma\,\frac{\mu_i - \mathbb{E}_B[\mu_i]}{\sqrt{\mathrm{Var}_B[\mu_i]}} + b_i,\quad "
                r"\mathbb{E}_B[\mathrm{KL}] \ge \sum_i \frac{\gamma^2 + b_i^2}{2} \ge \frac{d\,\gamma^2}{2}")
    knobs = {
        "gamma": Knob(0.5, "gamma: the fixed scale of the normalized means; the KL floor is latent * gamma^2 / 2 nats "
                           "(the authors' example: 0.5)", min=0.0, max=100.0),
        "beta": BETA,
    }

    def attach(self, model):
        d = model.latent_dim
        self.shift = nn.Parameter(torch.zeros(d))
        self.register_buffer("running_mean", torch.zeros(d))
        self.register_buffer("running_var", torch.ones(d))

    def posterior(self, model, x, y=None):
        q = model.encode(x, y)
        batch_stats = model.training and len(x) > 1  # one image has no batch variance: the running one
        scale = torch.full_like(self.shift, self.gamma)
        mu = F.batch_norm(q.loc, self.running_mean, self.running_var, scale, self.shift, training=batch_stats)
        return Factorized(Normal(mu, q.scale, validate_args=False), model.prior())

    def forward(self, model, x, y=None, step=0):
        recon, kl = elbo_parts(model, x, y, q=self.posterior(model, x, y).dist)
        return weighted_kl_output(recon, kl, self.beta)
