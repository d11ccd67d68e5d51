from dataclasses import replace

from torch.distributions import Bernoulli, OneHotCategorical

from ..posterior import as_event, draw
from .base import Knob, Objective, Output, kl_per_dim, log_weights, register, shared_terms

LATENT = Knob("bernoulli", "discrete latent: c independent bits, or one of c categories",
              choices=("bernoulli", "categorical"))


class DiscreteObjective(Objective):
    """Shared by the discrete-latent objectives: the latent kind is a knob that sets the model's."""

    def configure_model(self, cfg, info):
        return replace(cfg, latent=self.latent_type, latent_clip=0.0)

    def score_samples(self, model, x, y):
        """q(z|x), and ln p(x|z_m) and ln q(z_m|x) of M draws z_m ~ q, both (M, B)."""
        q = model.encode(x, y)
        z, log_q = draw(as_event(q), self.samples)
        _, log_px = log_weights(model, x, y, z, log_q)
        return q, log_px, log_q


def proposal(q, temperature: float):
    """q_I: the same family as q, with q's logits detached and divided by the temperature. It does not
    depend on the encoder's parameters, as eq. 14 requires; temperature 1 is the paper's q_I = q
    (eq. 20), a larger one is flatter, toward the uniform distribution."""
    logits = q.logits.detach() / temperature
    family = Bernoulli if isinstance(q, Bernoulli) else OneHotCategorical
    return family(logits=logits, validate_args=False)


@register("discrete-is")
class DiscreteImportanceSampling(DiscreteObjective):
    """Discrete latents trained with the importance-sampling estimator of the seed paper "Training
    VAEs with discrete latent representations using importance sampling" (eqs. 11-17; Bernoulli
    latents in sec. 4, categorical in sec. 5). With M draws z_m from a proposal q_I that does not
    depend on the encoder's parameters,

        E_q[ln p(x|z)] ~ (1/M) sum_m ln p(x|z_m) q(z_m|x) / q_I(z_m)                    (eq. 14)

    whose gradient splits: the encoder gets ln p(x|z_m) grad_E [q / q_I] (eq. 16), the decoder
    [q / q_I] grad_D ln p(x|z_m) (eq. 17). Both follow from differentiating eq. 14 by the product
    rule, which is how it is computed. With q_I = q (the paper's choice, proposal temperature 1) the
    weight is 1 and the encoder term is ln p(x|z_m) (z_m - q) d eta / dE (eqs. 20, 26). The KL to
    the uniform prior is taken in closed form. Unbiased for any proposal (tested against
    enumeration); the variance depends on it (sec. 4).
    """
    paper = ("Bartler, Wiewel, Mauch & Yang, Training VAEs with discrete latent representations using importance "
             "sampling (ICLR 2019 submission; EUSIPCO 2019), eqs. 14-17, 20, 26")
    equation = (r"\nabla \approx \frac{1}{M}\sum_{m=1}^{M} \nabla\Big[\ln p(x|z_m)\,"
                r"\frac{q(z_m|x)}{q_I(z_m)}\Big],\quad z_m \sim q_I")
    knobs = {"latent_type": LATENT, "samples": Knob(10, "M: samples of z per image per step", min=1, limit="samples"),
             "proposal_temperature": Knob(1.0, "q_I's logits are q's (detached) over this; 1 is the paper's q_I = q, "
                                          "larger is flatter, toward uniform", min=0.01)}

    def forward(self, model, x, y=None, step=0):
        q = model.encode(x, y)
        q_i = proposal(q, self.proposal_temperature)
        z, log_qi = draw(as_event(q_i), self.samples)
        log_q = as_event(q).log_prob(z)
        _, log_px = log_weights(model, x, y, z, log_q)
        weight = (log_q - log_qi).exp()  # q / q_I: 1 in value when q_I = q, with the gradient of log q
        recon = -(weight * log_px).mean(0)
        kl = kl_per_dim(q, model.prior())
        return Output((recon + self.beta * kl.sum(-1)).mean(), shared_terms(recon, kl))
