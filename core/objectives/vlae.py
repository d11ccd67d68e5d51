import torch
from torch.distributions import MultivariateNormal

from ..errors import ConfigError
from ..posterior import Gaussian
from .base import Knob, Objective, Output, log_weights, register


def linearize(model, z, x):
    """The decoder linearized at z (exact inside a ReLU net's linear region), as the Gauss-Newton
    quantities of -log p(x, z):

        P = W^T Lambda W + I        (precision of the Laplace posterior),
        g = W^T r - z               (gradient of log p(x, z) at z),

    W the Jacobian of the decoder's mean (Gaussian) or logits (Bernoulli) at z. Gaussian: r =
    Lambda (x - mean), Lambda = 1 / std^2 (a learned std is read at z and held fixed). Bernoulli:
    r = x - p, Lambda = p (1 - p), the Hessian of the Bernoulli log-likelihood in its logits."""
    out = model.decoder(z).flatten(1)
    jac = torch.func.vmap(torch.func.jacfwd(lambda v: model.decoder(v[None])[0].flatten()))(z)
    xf = x.flatten(1)
    n = xf.shape[1]
    if model.cfg.likelihood == "bernoulli":
        p = torch.sigmoid(out)
        r, lam, w = xf - p, p * (1 - p), jac
    else:
        std = model.decode(z).base_dist.scale.flatten(1)
        lam = std.pow(-2)
        r, w = lam * (xf - out[:, :n]), jac[:, :n]
    eye = torch.eye(z.shape[-1], device=z.device, dtype=z.dtype)
    precision = torch.einsum("bnd,bn,bne->bde", w, lam, w)
    # Symmetric to the last bit: rounding in the product leaves it off by ~1e-6, which
    # MultivariateNormal's positive-definiteness check refuses.
    precision = 0.5 * (precision + precision.mT) + eye
    grad = torch.einsum("bnd,bn->bd", w, r) - z
    return precision, grad


@register("vlae")
class VariationalLaplaceAutoencoder(Objective):
    """Variational Laplace autoencoder, Park, Kim & Kim (2019), sec. 3-4 (Algorithm 1):

    starting from the encoder's mean mu_0, T updates move toward the posterior mode of the decoder
    linearized at mu_t,
        mu*_t = mu_t + P_t^{-1} g_t,      mu_{t+1} = mu_t + alpha_t (mu*_t - mu_t),  alpha_t = 0.5 / (t + 1),
    (for a linear-Gaussian decoder one undamped step lands exactly on the mode: the pPCA posterior
    mean), then q(z|x) = N(mu_T, P_T^{-1}) is the full-covariance Laplace approximation at mu_T. The
    loss is the one-sample ELBO under that q; gradients flow through every update into the encoder.
    'polak-ribiere' replaces the Newton steps by nonlinear conjugate gradient with the Polak-Ribiere
    beta and an exact line search on the local quadratic; it reaches the mode of a quadratic in d steps.
    'kl' is the closed-form KL of the full-covariance q; 'kl_per_dim' the KL of each marginal.
    """
    paper = "Park, Kim & Kim, Variational Laplace Autoencoders, ICML 2019, sec. 3-4 and supplement"
    equation = (r"\mu_{t+1} = \mu_t + \alpha_t\,(W_t^\top\Lambda W_t + I)^{-1}\,\nabla_z \log p(x, z)\big|_{\mu_t},"
                r"\quad q(z|x) = \mathcal{N}\big(\mu_T,\ (W_T^\top\Lambda W_T + I)^{-1}\big)")
    knobs = {
        "mode_steps": Knob(4, "T: updates toward the posterior mode", min=0, limit="inner_steps"),
        "damping": Knob("harmonic", "harmonic: alpha_t = 0.5 / (t + 1) as in the paper; none: alpha_t = 1",
                        choices=("harmonic", "none")),
        "update": Knob("newton", "newton (the paper's), or Polak-Ribiere conjugate gradient",
                       choices=("newton", "polak-ribiere")),
    }
    exact_kl_per_dim = False

    def configure_model(self, cfg, info):
        # The Gauss-Newton step linearizes the decoder's output as the Gaussian mean itself.
        if cfg.likelihood == "mse" or (cfg.likelihood == "gaussian" and cfg.gaussian_mean != "identity"):
            raise ConfigError("vlae linearizes an unsquashed Gaussian mean; use --gaussian-mean identity")
        return cfg

    def laplace(self, model, x, y=None) -> MultivariateNormal:
        """q(z|x) = N(mu_T, P_T^{-1}) after the T mode updates."""
        mu = model.encode(x, y).loc
        direction = previous = None
        for t in range(self.mode_steps):
            precision, grad = linearize(model, mu, x)
            if self.update == "newton":
                step = torch.linalg.solve(precision, grad)
                mu = mu + (0.5 / (t + 1) if self.damping == "harmonic" else 1.0) * step
                continue
            beta = 0.0 if previous is None else (
                (grad * (grad - previous)).sum(-1, keepdim=True) / previous.pow(2).sum(-1, keepdim=True).clamp(min=1e-12)
            ).clamp(min=0)
            direction = grad if direction is None else grad + beta * direction
            curvature = torch.einsum("bd,bde,be->b", direction, precision, direction)[:, None]
            mu = mu + (grad * direction).sum(-1, keepdim=True) / curvature.clamp(min=1e-12) * direction
            previous = grad
        precision, _ = linearize(model, mu, x)
        return MultivariateNormal(mu, precision_matrix=precision)

    def posterior(self, model, x, y=None):
        """The Laplace Gaussian, full covariance: the posterior this model is trained and evaluated with
        (the encoder's log-variance head is never used)."""
        return Gaussian(self.laplace(model, x, y), model.prior())

    def forward(self, model, x, y=None, step=0):
        q = self.posterior(model, x, y)
        log_w, log_px = log_weights(model, x, y, *q.sample(1))
        recon = -log_px[0]
        # The loss is the one-sample ELBO, log p(x|z) + log p(z) - log q(z|x), as in the paper.
        return Output((recon + self.beta * (log_px - log_w)[0]).mean(),
                      {"recon": recon.mean(), "kl": q.kl().mean(), "kl_per_dim": q.kl_per_dim().mean(0)})
