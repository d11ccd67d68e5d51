from .base import BETA, Knob, Objective, Output, elbo_parts, register


@register("free-bits")
class FreeBits(Objective):
    """Free bits of Kingma et al. (2016), appendix C.8, with each latent dimension its own group:

        L~(x) = E_x[E_q[log p(x|z)]] - sum_j max(lambda, E_x[KL(q(z_j|x) || p(z_j))]),

    where E_x is the minibatch mean. A dimension whose batch KL is under lambda nats costs a flat
    lambda and gets no gradient pushing it toward the prior, so it is free to carry information.
    The reported 'kl' is the true KL; 'kl_clamped' is what the loss charged.
    """
    paper = "Kingma et al., Improved Variational Inference with Inverse Autoregressive Flow, NeurIPS 2016, app. C.8"
    equation = (r"\tilde{\mathcal{L}} = \mathbb{E}_{x}\mathbb{E}_{q}[\log p(x|z)] - \beta\sum_j "
                r"\max\big(\lambda,\ \mathbb{E}_{x}[\mathrm{KL}(q(z_j|x)\,\|\,p(z_j))]\big)")
    knobs = {
        "free_bits": Knob(0.5, "lambda: nats per latent dimension that cost nothing extra", min=0.0),
        "beta": BETA,
    }

    def forward(self, model, x, y=None, step=0):
        recon, kl = elbo_parts(model, x, y)
        kl_per_dim = kl.mean(0)
        clamped = kl_per_dim.clamp(min=self.free_bits).sum()
        recon = recon.mean()
        return Output(recon + self.beta * clamped,
                      {"recon": recon, "kl": kl_per_dim.sum(), "kl_per_dim": kl_per_dim, "kl_clamped": clamped})
