import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import FlowObjective, Knob, register


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask (MADE, Germain et al. 2015)."""

    def __init__(self, n_in, n_out, mask):
        super().__init__(n_in, n_out)
        self.register_buffer("mask", mask)

    def forward(self, x):
        return F.linear(x, self.weight * self.mask, self.bias)


class IAFStep(nn.Module):
    """One IAF step: [m, s] = AutoregressiveNN(z, h); sigma = sigmoid(s); z' = sigma z + (1 - sigma) m.
    Output i sees only inputs before i, so dz'/dz is triangular with diagonal sigma."""

    def __init__(self, d, hidden, context, activation=nn.ELU):
        super().__init__()
        degree_in = torch.arange(1, d + 1)
        degree_hidden = torch.arange(hidden) % max(1, d - 1) + 1
        self.inp = MaskedLinear(d, hidden, (degree_hidden[:, None] >= degree_in[None, :]).float())
        self.ctx = nn.Linear(context, hidden)
        out_mask = (degree_in[:, None] > degree_hidden[None, :]).float()
        self.out = MaskedLinear(hidden, 2 * d, torch.cat([out_mask, out_mask]))
        self.act = activation()

    def shift_and_gate(self, z, context):
        m, s = self.out(self.act(self.inp(z) + context)).chunk(2, dim=-1)
        return m, s + 1.5  # a forget-gate bias: sigma starts near 1, so each step starts near identity (sec. 4)

    def forward(self, z, h):
        m, s = self.shift_and_gate(z, self.ctx(h))
        sigma = torch.sigmoid(s)
        return sigma * z + (1 - sigma) * m, F.logsigmoid(s).sum(-1)

    def inverse(self, y, h):
        """z with forward(z) = y, and log|det| at it. Output i depends on z_<i only, so d passes, each
        solving one more coordinate, give z exactly: an IAF samples in one pass but inverts in d."""
        context, z = self.ctx(h), y
        for _ in range(y.shape[-1]):
            m, s = self.shift_and_gate(z, context)
            sigma = torch.sigmoid(s)
            z = (y - (1 - sigma) * m) / sigma
        return z, F.logsigmoid(s).sum(-1)


@register("iaf")
class InverseAutoregressiveFlow(FlowObjective):
    """VAE with inverse autoregressive flow, Kingma et al. (2016), eqs. 10-11 (the numerically stable
    LSTM-style update of sec. 4 / Algorithm 1):

        [m_t, s_t] = AutoregressiveNN_t(z_{t-1}, h),  sigma_t = sigmoid(s_t),
        z_t = sigma_t * z_{t-1} + (1 - sigma_t) * m_t,   log|det dz_t/dz_{t-1}| = sum_i log sigma_t,i,

    h the encoder's last hidden layer. The order of z is reversed between steps so every dimension
    gets to depend on every other.
    """
    paper = "Kingma et al., Improved Variational Inference with Inverse Autoregressive Flow, NeurIPS 2016, eqs. 10-11"
    equation = (r"z_t = \sigma_t \odot z_{t-1} + (1-\sigma_t)\odot m_t,\quad "
                r"\log\Big|\det\frac{dz_T}{dz_0}\Big| = \sum_t\sum_i \log\sigma_{t,i}")
    knobs = {
        "flow_steps": Knob(2, "T: number of IAF steps", min=1, limit="flow_steps"),
        "flow_hidden": Knob(0, "hidden units of each autoregressive net; 0 means 4 x latent size", min=0,
                            limit="width"),
    }

    def attach(self, model):
        d = model.latent_dim
        hidden = self.flow_hidden or 4 * d
        self.steps = nn.ModuleList(IAFStep(d, hidden, model.features) for _ in range(self.flow_steps))

    def flow(self, z, h):
        logdet = z.new_zeros(z.shape[0])
        for i, step in enumerate(self.steps):
            if i:
                z = z.flip(-1)  # a permutation: |det| = 1
            z, ld = step(z, h)
            logdet = logdet + ld
        return z, logdet

    def inverse(self, z, h):
        logdet = z.new_zeros(z.shape[0])
        for i in reversed(range(len(self.steps))):
            z, ld = self.steps[i].inverse(z, h)
            logdet = logdet + ld
            if i:
                z = z.flip(-1)
        return z, logdet
