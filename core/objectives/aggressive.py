import math

import torch
from torch.distributions import Normal

from ..posterior import Factorized, mi_terms
from .base import BETA, Knob, Objective, elbo_parts, register, weighted_kl_output
from .kl_annealing import linear_warmup


@register("aggressive")
class Aggressive(Objective):
    """Aggressive inference-network training, He et al. (2019), Algorithm 1. Collapse sets in while the encoder
    lags behind the true posterior, so before each decoder update the encoder alone is trained on fresh
    minibatches until the ELBO stops improving (the inner loop); the decoder then takes one step on its batch
    with the encoder held still. Once the posterior has caught up, the mutual information I_q stops rising and
    training goes back to plain joint ELBO steps:

        aggressive:  repeat phi <- phi + grad_phi ELBO(X') until converged;  theta <- theta + grad_theta ELBO(X)
        then:        (theta, phi) <- (theta, phi) + grad ELBO(X)

    As the authors' code for images (jxhe/vae-lagging-encoder, image.py): at most `inner_steps` encoder steps
    with its own Adam; every `check_every` of them, the mean loss of the last `check_every` batches is
    compared with the previous window's, and the loop stops when it rises. Aggressive training ends at the
    `patience`-th check whose I_q is below the best so far. The paper checks I_q on the validation set each
    epoch; here it is He et al.'s minibatch estimator on the training batches of the last `mi_every` steps
    (the objective sees no validation set). `warm_up` > 0 anneals the KL weight linearly from `kl_start` to 1
    ("Ours + anneal"). The inner optimizer's moments start afresh after a resume.
    """
    paper = "He, Spokoyny, Neubig & Berg-Kirkpatrick, Lagging Inference Networks and Posterior Collapse in VAEs, ICLR 2019, Alg. 1"
    equation = (r"\text{repeat } \phi \leftarrow \phi + \nabla_\phi \mathcal{L}(X'; \theta, \phi) \text{ until converged};\ "
                r"\theta \leftarrow \theta + \nabla_\theta \mathcal{L}(X; \theta, \phi)")
    knobs = {
        "inner_steps": Knob(100, "at most this many encoder updates before each decoder update (the authors': 100)",
                            min=1, limit="inner_steps"),
        "check_every": Knob(10, "the inner loop compares its mean loss over windows of this many batches and stops "
                                "when it rises (the authors': 10 for images, 15 for text)", min=1, limit="inner_steps"),
        "inner_lr": Knob(1e-3, "the encoder's learning rate in the inner loop (Adam; the authors': 1e-3)", min=1e-12),
        "mi_every": Knob(500, "steps between checks of I_q (the paper: one epoch)", min=1, limit="steps"),
        "patience": Knob(5, "aggressive training stops at this many checks with I_q below its best (the authors': 5)",
                         min=1, limit="steps"),
        "warm_up": Knob(0, "steps over which the KL weight rises linearly from kl_start to 1 (0: no annealing)",
                        min=0, limit="steps"),
        "kl_start": Knob(0.1, "the KL weight at step 0 when warm_up > 0", min=0.0, max=1.0),
        "beta": BETA,
    }

    def attach(self, model):
        # what decides the phase, kept with the weights so a resumed run goes on in the same one
        self.register_buffer("aggressive", torch.tensor(True))
        self.register_buffer("best_mi", torch.tensor(0.0))   # the best I_q so far, once mi_checks > 0
        self.register_buffer("mi_checks", torch.tensor(0))
        self.register_buffer("worse_checks", torch.tensor(0))
        self.register_buffer("mi_window", torch.zeros(2))  # the window's summed I_q and its count of steps
        self._inner, self.inner_losses = None, []  # the last inner loop's losses: its length is its step count

    def __getstate__(self):  # a snapshot's copy keeps no optimizer holding the live model's parameters
        return self.__dict__ | {"_inner": None}

    def kl_weight(self, step: int) -> float:
        if not self.warm_up:
            return self.beta
        return self.beta * (self.kl_start + (1 - self.kl_start) * linear_warmup(step, self.warm_up))

    def parts(self, model, x, y, encoder_still=False):
        q = model.encode(x, y)
        if encoder_still:  # the decoder's step: no gradient reaches the encoder
            q = Normal(q.loc.detach(), q.scale.detach(), validate_args=False)
        return (q, *elbo_parts(model, x, y, q=q))

    def before_step(self, model, x, y, next_batch, step: int):
        """The inner loop: encoder updates on x, then on fresh batches, until the loss stops falling."""
        self.inner_losses = []
        if not bool(self.aggressive):
            return
        params = model.encoder_parameters()
        if self._inner is None:
            self._inner = torch.optim.Adam(params, lr=self.inner_lr)
        losses, previous = self.inner_losses, math.inf
        for i in range(self.inner_steps):
            bx, by = (x, y) if i == 0 else next_batch()
            _, recon, kl = self.parts(model, bx, by)
            loss = (recon + self.kl_weight(step) * kl.sum(-1)).mean()
            for p, g in zip(params, torch.autograd.grad(loss, params)):
                p.grad = g
            self._inner.step()
            losses.append(loss.item())
            if (i + 1) % self.check_every == 0:
                window = sum(losses[-self.check_every:]) / self.check_every
                if window > previous:
                    break
                previous = window

    def forward(self, model, x, y=None, step=0):
        """The training step's loss; on a model being evaluated (eval mode), the ELBO with the gradient reaching
        both networks, which is also what the inner loop's encoder steps follow."""
        aggressive = bool(self.aggressive)
        q, recon, kl = self.parts(model, x, y, encoder_still=aggressive and model.training)
        out = weighted_kl_output(recon, kl, self.kl_weight(step))
        if self.warm_up:
            out.terms["kl_weight"] = x.new_tensor(self.kl_weight(step))
        if model.training:
            self.watch_mi(Factorized(q, model.prior()), step)
        out.terms["aggressive"] = x.new_tensor(float(aggressive))
        out.terms["inner_steps"] = x.new_tensor(float(len(self.inner_losses)))
        return out

    @torch.no_grad()
    def watch_mi(self, q, step: int):
        if not bool(self.aggressive) or len(q.mean) < 2:
            return
        self.mi_window += torch.stack([mi_terms(q).mean(), torch.ones(())])
        if (step + 1) % self.mi_every == 0:
            mi = self.mi_window[0] / self.mi_window[1]
            self.mi_window.zero_()
            self.mi_checks += 1
            if self.mi_checks > 1 and mi < self.best_mi:
                self.worse_checks += 1
                if self.worse_checks >= self.patience:
                    self.aggressive.fill_(False)
            else:
                self.best_mi.copy_(mi)
