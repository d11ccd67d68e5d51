import torch
import torch.nn as nn

from ..posterior import linear_gaussian
from .base import FlowObjective, Knob, register


def reflect(z, v):
    """(I - 2 v v^T / ||v||^2) z, row by row."""
    return z - 2 * v * (v * z).sum(-1, keepdim=True) / v.pow(2).sum(-1, keepdim=True).clamp(min=1e-12)


@register("householder")
class HouseholderFlow(FlowObjective):
    """VAE with a Householder flow, Tomczak & Welling (2016), eqs. 7-9:

        z_t = H_t z_{t-1},   H_t = I - 2 v_t v_t^T / ||v_t||^2,

    with v_1 computed from the encoder's last hidden layer h(x) and v_{t+1} = W_t v_t + b_t.
    Each H_t is a reflection: orthogonal, so |det| = 1 (log-det 0, volume-preserving) and H_t is
    its own inverse. The flow turns the diagonal Gaussian q_0 into a full-covariance one.
    """
    paper = "Tomczak & Welling, Improving Variational Auto-Encoders using Householder Flow, 2016, eqs. 7-9"
    equation = (r"z_t = \Big(I - 2\frac{v_t v_t^\top}{\|v_t\|^2}\Big) z_{t-1},\quad "
                r"\mathcal{L} = \mathbb{E}_{q_0}[\log p(x|z_T) + \log p(z_T) - \log q_0(z_0|x)]")
    knobs = {"flow_steps": Knob(4, "T: number of Householder reflections (the VLAE paper compares 1, 2, 4, 8)",
                                min=1, limit="flow_steps")}

    def attach(self, model):
        d = model.latent_dim
        self.first = nn.Linear(model.features, d)
        self.next = nn.ModuleList(nn.Linear(d, d) for _ in range(self.flow_steps - 1))

    def vectors(self, h):
        v = self.first(h)
        vs = [v]
        for layer in self.next:
            v = layer(v)
            vs.append(v)
        return vs

    def flow(self, z, h):
        for v in self.vectors(h):
            z = reflect(z, v)
        return z, z.new_zeros(z.shape[0])  # reflections preserve volume: log|det| = 0

    def inverse(self, z, h):
        """Each reflection is its own inverse, so undo them in reverse order."""
        for v in reversed(self.vectors(h)):
            z = reflect(z, v)
        return z, z.new_zeros(z.shape[0])

    def posterior(self, model, x, y=None):
        """z_T = M(x) z_0 with M(x) = H_T ... H_1 orthogonal, so q_T is exactly the Gaussian
        N(M mu, M diag(sigma^2) M^T): its KL and marginals have closed forms (and its KL equals q_0's,
        since the prior N(0, I) is unchanged by a rotation)."""
        flow = self.flow_posterior(model, x, y)
        h, q0 = flow.h, flow.q0
        batch, d = q0.loc.shape
        basis = torch.eye(d, device=h.device, dtype=h.dtype).repeat(batch, 1)
        columns = self.flow(basis, h.repeat_interleave(d, 0))[0].view(batch, d, d)  # row j: M e_j
        return linear_gaussian(self.flow(q0.loc, h)[0], columns.mT, q0.scale, model.prior())
