from dataclasses import replace

from ..posterior import as_event, draw
from .base import Knob, Objective, log_weights, register, score_output

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


@register("discrete-is")
class DiscreteImportanceSampling(DiscreteObjective):
    """Discrete latents trained with the importance-sampling estimator of Bartler et al. (2019),
    "Training VAEs with discrete latent representations using importance sampling" (categorical
    latents in sec. 5). With the proposal q_I = q, the encoder gradient of E_q[ln p(x|z)] is

        grad_E = (1/M) sum_m ln p(x|z_m) (z_m - q) d eta / dE,     z_m ~ q(z|x),

    for Bernoulli bits with q = sigmoid(eta), and the same with q = softmax(eta) and one-hot z for
    a categorical latent. The decoder gets (1/M) sum_m grad ln p(x|z_m), and the KL to the uniform
    prior is taken in closed form. The estimator is unbiased (tested against enumeration).
    """
    paper = "Bartler, Wiewel, Mauch & Yang, Training VAEs with Discrete Latent Variables Using Importance Sampling, EUSIPCO 2019"
    equation = (r"\nabla_E \approx \frac{1}{M}\sum_{m=1}^{M} \ln p(x|z_m)\,(z_m - q)\,"
                r"\frac{\partial \eta}{\partial E},\quad z_m \sim q(z|x)")
    knobs = {"latent_type": LATENT, "samples": Knob(10, "M: samples of z per image per step", min=1)}

    def forward(self, model, x, y=None, step=0):
        q, log_px, log_q = self.score_samples(model, x, y)
        return score_output(model, q, log_px, log_q, log_px, self.beta)
