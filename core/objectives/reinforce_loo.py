from .base import Knob, register, score_output
from .discrete_is import LATENT, DiscreteObjective


@register("reinforce-loo")
class ReinforceLeaveOneOut(DiscreteObjective):
    """REINFORCE with a leave-one-out baseline (Mnih & Rezende 2016, VIMCO's per-sample baseline
    applied to the ELBO; Kool et al. 2019): with M samples, sample m's learning signal is ln p(x|z_m)
    minus the mean of the other M - 1, which is independent of z_m, so the gradient stays unbiased
    while its variance falls:

        grad_E = (1/M) sum_m [ln p(x|z_m) - (1/(M-1)) sum_{j != m} ln p(x|z_j)] grad_E ln q(z_m|x).
    """
    paper = "Mnih & Rezende, Variational Inference for Monte Carlo Objectives, ICML 2016, eq. 9 (leave-one-out baseline)"
    equation = (r"\nabla_E \approx \frac{1}{M}\sum_m \Big(\ln p(x|z_m) - \frac{1}{M-1}\sum_{j\ne m}\ln p(x|z_j)\Big)"
                r"\nabla_E \ln q(z_m|x)")
    knobs = {"latent_type": LATENT, "samples": Knob(10, "M: samples of z per image per step (at least 2)", min=2, limit="samples")}

    def forward(self, model, x, y=None, step=0):
        q, log_px, log_q = self.score_samples(model, x, y)
        m = self.samples
        others = (log_px.sum(0, keepdim=True) - log_px) / (m - 1)
        return score_output(model, q, log_px, log_q, log_px - others, self.beta)
