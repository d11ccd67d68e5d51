import torch
from torch.distributions import RelaxedBernoulli, RelaxedOneHotCategorical

from .base import Knob, Output, decode_log_prob, kl_per_dim, register, shared_terms
from .discrete_is import LATENT, DiscreteObjective


@register("gumbel-softmax")
class GumbelSoftmax(DiscreteObjective):
    """Gumbel-softmax / concrete relaxation, Jang et al. (2017), eq. 1, and Maddison et al. (2017):
    z = softmax((eta + g) / tau) with Gumbel noise g (the binary concrete for Bernoulli bits), a
    reparameterized sample the decoder gets gradients through. 'straight-through' decodes the
    discrete argmax (or z > 1/2) on the forward pass and uses the relaxed gradient backward (Jang
    et al. sec. 2.2). Biased for tau > 0, but of low variance. The KL is the discrete q's, to the
    uniform prior, in closed form.
    """
    paper = "Jang, Gu & Poole, Categorical Reparameterization with Gumbel-Softmax, ICLR 2017, eq. 1"
    equation = r"z = \mathrm{softmax}\big((\eta + g)/\tau\big),\quad g_i \sim \mathrm{Gumbel}(0, 1)"
    knobs = {
        "latent_type": LATENT,
        "temperature": Knob(1.0, "tau: lower is closer to discrete but noisier (Jang et al. anneal 1 to 0.5)", min=1e-3),
        "estimator": Knob("relaxed", "decode the relaxed sample, or the hard one with straight-through gradients",
                          choices=("relaxed", "straight-through")),
        "samples": Knob(1, "M: relaxed samples of z per image per step, averaged", min=1, limit="samples"),
    }

    def forward(self, model, x, y=None, step=0):
        q = model.encode(x, y)
        tau = torch.tensor(self.temperature, device=x.device)
        relaxed = (RelaxedBernoulli(tau, logits=q.logits) if self.latent_type == "bernoulli"
                   else RelaxedOneHotCategorical(tau, logits=q.logits))
        z = relaxed.rsample((self.samples,))
        if self.estimator == "straight-through":
            hard = (z > 0.5).float() if self.latent_type == "bernoulli" else \
                torch.nn.functional.one_hot(z.argmax(-1), z.shape[-1]).float()
            z = hard + z - z.detach()
        recon = -decode_log_prob(model, x, y, z).mean(0)
        kl = kl_per_dim(q, model.prior())
        return Output((recon + self.beta * kl.sum(-1)).mean(),
                      shared_terms(recon, kl))
