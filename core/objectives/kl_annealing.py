from .base import BETA, Knob, Objective, elbo_parts, register, weighted_kl_output


def linear_warmup(step: int, steps: int) -> float:
    """0 at step 0, rising linearly to 1 at `steps`, then 1 (Bowman et al. 2016)."""
    return min(1.0, step / steps)


def cyclical(step: int, period: int, ratio: float, cycles: int) -> float:
    """Fu et al. (2019), eq. 7 with the linear f: tau = (step mod period) / period,
    weight = tau / ratio while tau <= ratio, else 1. After `cycles` cycles it stays at 1."""
    if step >= period * cycles:
        return 1.0
    tau = (step % period) / period
    return min(1.0, tau / ratio)


@register("kl-annealing")
class KLAnnealing(Objective):
    """The ELBO with a KL weight that grows with the training step t:

        L_t(x) = E_q[log p(x|z)] - beta * w(t) * KL(q(z|x) || p(z)).

    'linear': w(t) = min(1, t / anneal_steps) (Bowman et al. 2016).
    'cyclical': Fu et al. (2019), eq. 7: each cycle of `anneal_steps` steps ramps w from 0 to 1 over its
    first `ratio` fraction and holds 1 for the rest; `cycles` cycles, then w = 1.
    """
    paper = "Fu et al., Cyclical Annealing Schedule, NAACL 2019, eq. 7"
    equation = r"\mathcal{L}_t(x) = \mathbb{E}_{q(z|x)}[\log p(x|z)] - \beta\, w(t)\,\mathrm{KL}(q(z|x)\,\|\,p(z))"
    knobs = {
        "schedule": Knob("cyclical", "linear warm-up, or cyclical (Fu et al. 2019)", choices=("linear", "cyclical")),
        "anneal_steps": Knob(5000, "steps of the linear warm-up, or of one cycle", min=1, limit="steps"),
        "ratio": Knob(0.5, "cyclical: fraction of each cycle spent increasing the weight", min=1e-6, max=1.0),
        "cycles": Knob(4, "cyclical: number of cycles before the weight stays at 1 (M)", min=1, limit="cycles"),
        "beta": BETA,
    }

    def weight(self, step: int) -> float:
        if self.schedule == "linear":
            return linear_warmup(step, self.anneal_steps)
        return cyclical(step, self.anneal_steps, self.ratio, self.cycles)

    def forward(self, model, x, y=None, step=0):
        recon, kl = elbo_parts(model, x, y)
        out = weighted_kl_output(recon, kl, self.beta * self.weight(step))
        out.terms["kl_weight"] = x.new_tensor(self.beta * self.weight(step))
        return out
