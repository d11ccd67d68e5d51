import torch

from ..posterior import Factorized
from .base import Knob, Objective, kl_per_dim, register, weighted_kl_output


@register("sa-vae")
class SemiAmortizedVAE(Objective):
    """Semi-amortized VAE, Kim et al. (2018), Algorithm 1: the encoder's output lambda_0 = (mu, log sigma^2)
    is refined by T steps of stochastic gradient ascent on the ELBO of each image,

        lambda_t = lambda_{t-1} + alpha * clip(grad_lambda ELBO(x; lambda_{t-1})),

    and the model is trained on ELBO(x; lambda_T), backpropagating through the refinement into the
    encoder (second-order terms by autograd). Step alpha = 0.0005 and per-image gradient-norm clipping,
    as in the VLAE supplement's SA-VAE baseline. 'elbo_gain' reports ELBO(lambda_T) - ELBO(lambda_0).

    What one step alpha means depends on the gradient it multiplies (`refine_grad`):
    - per-image (Kim et al.'s Algorithm 1): each image's own ELBO gradient (closed-form KL), its L2 norm
      over (mu, log sigma^2) clipped at refine_clip;
    - batch-mean (the VLAE authors' code, yookoon/VLAE models.py SAVAE): the gradient of the batch's
      mean loss, one-sample KL, so each image moves alpha/B times its own gradient; mu's and log sigma^2's
      gradients each divided by max(1, |g|^2 / clip) (utils.clip_grad_norm: the squared norm);
    - batch-mean-as-written: the same, but stepping along +grad of the *loss* (-ELBO), as that code's
      `mu_svi + svi_lr * grad(loss, mu_svi)` does: each refinement lowers the ELBO.
    """
    paper = "Kim, Wiseman, Miller, Sontag & Rush, Semi-Amortized Variational Autoencoders, ICML 2018, Alg. 1"
    equation = (r"\lambda_t = \lambda_{t-1} + \alpha\,\nabla_{\lambda}\,\mathrm{ELBO}(x;\lambda_{t-1}),"
                r"\quad \lambda_0 = \mathrm{enc}(x),\quad \max\ \mathrm{ELBO}(x;\lambda_T)")
    knobs = {
        "refine_steps": Knob(4, "T: SGD refinements of each image's (mu, log sigma^2)", min=1, limit="inner_steps"),
        "refine_lr": Knob(0.0005, "alpha: step size of each refinement (the seed's 0.0005)", min=0.0),
        "refine_clip": Knob(5.0, "per-image gradient norm above which a refinement step is scaled down", min=1e-6),
        "refine_grad": Knob("per-image", "the gradient alpha multiplies: each image's (Kim et al.), the batch "
                            "mean's (the VLAE authors' code), or that code's as written (along -ELBO)",
                            choices=("per-image", "batch-mean", "batch-mean-as-written")),
    }

    def elbo(self, model, lam, x, y):
        q = model.posterior(lam)
        recon = -model.decode(q.rsample(), y).log_prob(x)
        return recon, kl_per_dim(q, model.prior())

    def refine(self, model, lam, x, y, create_graph=True):
        """T clipped gradient-ascent steps on each image's ELBO. Returns lambda_T and the one-sample
        ELBO per image at lambda_0, which the first step computes anyway."""
        start = None
        for _ in range(self.refine_steps):
            if not lam.requires_grad:
                lam = lam.detach().requires_grad_()
            if self.refine_grad == "per-image":
                recon, kl = self.elbo(model, lam, x, y)
                elbo = -(recon + kl.sum(-1))
                (grad,) = torch.autograd.grad(elbo.sum(), lam, create_graph=create_graph)
                grad = grad * (self.refine_clip / grad.norm(dim=-1, keepdim=True).clamp(min=self.refine_clip))
            else:
                elbo, grad = self.authors_gradient(model, lam, x, y, create_graph)
            start = elbo.detach() if start is None else start
            lam = lam + self.refine_lr * grad
        return lam, start

    def authors_gradient(self, model, lam, x, y, create_graph):
        """The per-image one-sample ELBO and the step direction of the authors' code: the gradient of the
        batch-mean ELBO (or, as written, of the batch-mean loss), mu's and log sigma^2's parts each divided
        by max(1, squared norm / clip)."""
        q, prior = model.posterior(lam), model.prior()
        z = q.rsample()
        elbo = model.decode(z, y).log_prob(x) + prior.log_prob(z).sum(-1) - q.log_prob(z).sum(-1)
        objective = -elbo.mean() if self.refine_grad == "batch-mean-as-written" else elbo.mean()
        (grad,) = torch.autograd.grad(objective, lam, create_graph=create_graph)
        parts = grad.chunk(2, dim=-1)  # (mu, log sigma^2), as model.posterior reads lam
        grad = torch.cat([g / torch.clamp(g.pow(2).sum(-1, keepdim=True) / self.refine_clip, min=1.0) for g in parts], -1)
        return elbo, grad

    def posterior(self, model, x, y=None):
        """The refined q(z|x; lambda_T), a diagonal Gaussian. Its refinement draws z, so callers seed the
        stream for a repeatable answer."""
        with torch.enable_grad():
            lam, _ = self.refine(model, model.encoder_head(model.encode_features(x, y)), x, y, create_graph=False)
        return Factorized(model.posterior(lam.detach()), model.prior())

    def forward(self, model, x, y=None, step=0):
        lam0 = model.encoder_head(model.encode_features(x, y))
        with torch.enable_grad():
            lam, start = self.refine(model, lam0, x, y, create_graph=torch.is_grad_enabled())
        recon, kl = self.elbo(model, lam, x, y)
        out = weighted_kl_output(recon, kl, self.beta)
        out.terms["elbo_gain"] = (-(recon + kl.sum(-1)).detach() - start).mean()
        return out
