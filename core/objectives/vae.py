from .base import Objective, elbo_parts, register, weighted_kl_output


@register("vae")
class ELBO(Objective):
    """The evidence lower bound of Kingma & Welling (2014), eq. 3 (and eq. 10 for the Gaussian KL):

        L(x) = E_q(z|x)[log p(x|z)] - KL(q(z|x) || p(z)),

    with one reparameterized sample and the KL in closed form. The loss is -L averaged over the batch.
    """
    paper = "Kingma & Welling, Auto-Encoding Variational Bayes, ICLR 2014, eq. 3"
    equation = r"\mathcal{L}(x) = \mathbb{E}_{q(z|x)}[\log p(x|z)] - \mathrm{KL}(q(z|x)\,\|\,p(z))"

    def forward(self, model, x, y=None, step=0):
        recon, kl = elbo_parts(model, x, y)
        return weighted_kl_output(recon, kl, self.beta)
