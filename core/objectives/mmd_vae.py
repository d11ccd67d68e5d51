import torch

from ..stats import mmd2_unbiased
from .base import Knob, Objective, Output, kl_per_dim, register, sample_and_score, shared_terms


@register("mmd-vae")
class MMDVAE(Objective):
    """InfoVAE of Zhao, Song & Ermon (2019), eq. 6, with the MMD divergence (their MMD-VAE):

        L = E_q[log p(x|z)] - (1 - alpha) KL(q(z|x) || p(z)) - (alpha + lambda - 1) MMD^2(q(z), p(z)),

    q(z) the aggregate posterior, estimated by one z per image of the batch against as many draws
    from the prior. alpha = 1 drops the per-image KL entirely (the paper's choice for MMD-VAE).
    """
    paper = "Zhao, Song & Ermon, InfoVAE: Balancing Learning and Inference in VAEs, AAAI 2019, eq. 6"
    equation = (r"\mathcal{L} = \mathbb{E}_{q}[\log p(x|z)] - (1-\alpha)\,\mathrm{KL}(q(z|x)\,\|\,p(z))"
                r" - (\alpha+\lambda-1)\,\mathrm{MMD}^2(q(z), p(z))")
    knobs = {
        "alpha": Knob(1.0, "alpha: 1 removes the per-image KL term", min=0.0, max=1.0),
        "mmd_weight": Knob(1000.0, "lambda in the paper: weight of the aggregate-posterior MMD", min=0.0),
        "kernel": Knob("imq", "MMD kernel: inverse multiquadratic or Gaussian (RBF)", choices=("imq", "rbf")),
    }

    def forward(self, model, x, y=None, step=0):
        q, z, recon = sample_and_score(model, x, y)
        terms = shared_terms(recon, kl_per_dim(q, model.prior()))
        mmd = mmd2_unbiased(z, torch.randn_like(z), self.kernel)
        loss = terms["recon"] + self.beta * (1 - self.alpha) * terms["kl"] + (self.alpha + self.mmd_weight - 1) * mmd
        return Output(loss, terms | {"mmd": mmd})
