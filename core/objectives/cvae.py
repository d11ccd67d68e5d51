from dataclasses import replace

from ..errors import ConfigError
from .base import Objective, elbo_parts, register, weighted_kl_output


@register("cvae")
class ConditionalVAE(Objective):
    """Conditional VAE, Sohn, Lee & Yan (2015), eq. 4, with the label y as the condition:

        L(x; y) = E_q(z|x,y)[log p(x|z,y)] - KL(q(z|x,y) || p(z)).

    Encoder and decoder both take a one-hot y, concatenated to their inputs (as constant planes
    for a conv encoder). The prior is N(0, I), not conditioned on y: our choice, so that z carries style
    and y carries class and decoding one z under each label draws each class. The seed "Improving VAEs"
    (sec. 4.2.3, eq. 3) writes Sohn et al.'s conditional prior p(z|x) instead, and says only that its
    CVAE concatenates the one-hot label to the 784 inputs (794 features).
    """
    paper = "Sohn, Lee & Yan, Learning Structured Output Representation using Deep Conditional Generative Models, NeurIPS 2015, eq. 4"
    equation = r"\mathcal{L}(x;y) = \mathbb{E}_{q(z|x,y)}[\log p(x|z,y)] - \mathrm{KL}(q(z|x,y)\,\|\,p(z))"

    def configure_model(self, cfg, info):
        if info.n_classes < 2:
            raise ConfigError(f"cvae needs class labels; dataset {info.name!r} has none")
        return replace(cfg, n_classes=info.n_classes)

    def forward(self, model, x, y=None, step=0):
        recon, kl = elbo_parts(model, x, y)
        return weighted_kl_output(recon, kl, self.beta)
