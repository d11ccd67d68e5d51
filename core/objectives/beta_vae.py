from .base import Knob, Objective, elbo_parts, register, weighted_kl_output


@register("beta-vae")
class BetaVAE(Objective):
    """beta-VAE of Higgins et al. (2017), eq. 4:

        L(x) = E_q(z|x)[log p(x|z)] - beta * KL(q(z|x) || p(z)).

    beta > 1 trades reconstruction for a posterior closer to the prior (and more collapsed units).
    """
    paper = "Higgins et al., beta-VAE, ICLR 2017, eq. 4"
    equation = r"\mathcal{L}(x) = \mathbb{E}_{q(z|x)}[\log p(x|z)] - \beta\,\mathrm{KL}(q(z|x)\,\|\,p(z))"
    knobs = {"beta": Knob(4.0, "weight on the KL term; the paper's examples use 4", min=0.0)}

    def forward(self, model, x, y=None, step=0):
        recon, kl = elbo_parts(model, x, y)
        return weighted_kl_output(recon, kl, self.beta)
