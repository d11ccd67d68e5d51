from dataclasses import replace

from .base import Knob, Objective, Output, kl_per_dim, register, sample_and_score


@register("mu-vae")
class MuVAE(Objective):
    """mu-VAE of Ucar (2019), "Bridging the ELBO and MMD", eqs. 4-6: the KL term is replaced by a
    batch-level term on the encoder's means and log-variances,

        L = E_q[-log p(x|z)] + beta * ( |sum_b sum_d mu_bd| / B - sum_b sum_d log sigma^2_bd / B ),

    and the means are latent-clipped (sec. 4.1) so that ||mu_b|| <= c sqrt(d): without the KL's
    per-image pull toward 0, the clip is what keeps codes in a bounded ball. The paper's mu-VAE#1
    uses c = 3 and #2 uses c = 6. 'kl' is reported (closed form) but not optimized.

    Sign of the log-variance term: it enters as the KL's own -log sigma^2 (an entropy bonus). With
    +log sigma^2 the loss has no lower bound (sigma -> 0 lowers both terms) and training reaches
    sigma = 0 and an infinite KL within a few dozen steps; the recon term is what bounds sigma here.
    """
    paper = "Ucar, Bridging the ELBO and MMD, arXiv:1910.13181, 2019, eqs. 4-6 and sec. 4.1"
    equation = (r"\mathcal{L} = \mathbb{E}_{q}[-\log p(x|z)] + \beta\Big(\tfrac{1}{B}\big|\textstyle\sum_{b}\sum_{d}"
                r"\mu_{bd}\big| - \tfrac{1}{B}\sum_{b}\sum_{d}\log\sigma^2_{bd}\Big),\quad \|\mu_b\|\le c\sqrt{d}")
    knobs = {"clip": Knob(3.0, "latent clipping c: every mean is kept within c*sqrt(d) (#1: 3, #2: 6)", min=1e-6)}

    def configure_model(self, cfg, info):
        return replace(cfg, latent_clip=self.clip)

    def forward(self, model, x, y=None, step=0):
        q, _, recon = sample_and_score(model, x, y)
        recon = recon.mean()
        batch = x.shape[0]
        reg = q.loc.sum().abs() / batch - (2 * q.scale.log()).sum() / batch
        kl = kl_per_dim(q, model.prior())
        return Output(recon + self.beta * reg, {"recon": recon, "kl": kl.sum(-1).mean(), "kl_per_dim": kl.mean(0),
                                                "mu_regularizer": reg})
