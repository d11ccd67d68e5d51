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
    """
    paper = "Kim, Wiseman, Miller, Sontag & Rush, Semi-Amortized Variational Autoencoders, ICML 2018, Alg. 1"
    equation = (r"\lambda_t = \lambda_{t-1} + \alpha\,\nabla_{\lambda}\,\mathrm{ELBO}(x;\lambda_{t-1}),"
                r"\quad \lambda_0 = \mathrm{enc}(x),\quad \max\ \mathrm{ELBO}(x;\lambda_T)")
    knobs = {
        "refine_steps": Knob(4, "T: SGD refinements of each image's (mu, log sigma^2)", min=1, limit="inner_steps"),
        "refine_lr": Knob(0.0005, "alpha: step size of each refinement (the seed's 0.0005)", min=0.0),
        "refine_clip": Knob(5.0, "per-image gradient norm above which a refinement step is scaled down", min=1e-6),
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
            recon, kl = self.elbo(model, lam, x, y)
            elbo = -(recon + kl.sum(-1))
            start = elbo.detach() if start is None else start
            (grad,) = torch.autograd.grad(elbo.sum(), lam, create_graph=create_graph)
            norm = grad.norm(dim=-1, keepdim=True)
            grad = grad * (self.refine_clip / norm.clamp(min=self.refine_clip))
            lam = lam + self.refine_lr * grad
        return lam, start

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
