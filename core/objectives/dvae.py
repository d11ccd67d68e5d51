import torch

from .base import Knob, Objective, elbo_parts, register, weighted_kl_output


def salt_and_pepper(x, level: float):
    """Each pixel, with probability `level`, is replaced by 0 or 1 (a fair coin); the rest stay."""
    hit = torch.rand_like(x) < level
    return torch.where(hit, torch.bernoulli(torch.full_like(x, 0.5)), x)


@register("dvae")
class DenoisingVAE(Objective):
    """Denoising VAE, Im et al. (2017), eq. 9, with the salt-and-pepper corruption of the seed
    "Improving VAEs" (sec. 4.2.5, level 0.05 worked best there):

        L_dvae(x) = E_{p(x~|x)} E_{q(z|x~)} [ log p(x|z) ] - KL(q(z|x~) || p(z)),

    one corruption x~ per image per step. Only the encoder sees the corrupted x~; the decoder is
    scored on the clean x.
    """
    paper = "Im, Ahn, Memisevic & Bengio, Denoising Criterion for Variational Auto-Encoding Framework, AAAI 2017, eq. 9"
    equation = (r"\mathcal{L}(x) = \mathbb{E}_{p(\tilde x|x)}\mathbb{E}_{q(z|\tilde x)}[\log p(x|z)]"
                r" - \mathrm{KL}(q(z|\tilde x)\,\|\,p(z))")
    knobs = {"noise": Knob(0.05, "salt-and-pepper level: chance each input pixel is set to 0 or 1", min=0.0, max=1.0)}

    def forward(self, model, x, y=None, step=0):
        recon, kl = elbo_parts(model, salt_and_pepper(x, self.noise), y, target=x)
        return weighted_kl_output(recon, kl, self.beta)
