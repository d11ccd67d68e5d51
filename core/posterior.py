"""The posterior q(z|x) of a batch of images, as the model's objective defines it: one object that every
diagnostic, the evaluation, the live rows and the pages read, so none of them needs to know which
objective trained the model.

    q = bundle.posterior(x, y)   # Objective.posterior(network, x, y)
    z, log_q = q.sample(k)       # (k, B, d) draws and their log-densities
    q.mean                       # (B, d)  E_q[z]
    q.kl()                       # (B,)    KL(q(z|x) || p(z))
    q.kl_per_dim()               # (B, d)  what a per-dimension KL means for this family (see per_dim)
    q.expected_log_q()           # (B,)    E_q[log q(z|x)] = -H(q(z|x))
    q.marginals()                # per-dimension distributions q(z_d|x), batch shape (B, d)
    q.log_prob_matrix(z)         # (n, B)  log q(z_i | x_j) for n codes and every image j

Four families:
  Factorized   the encoder's diagonal Gaussian, Bernoulli bits or one categorical (and SA-VAE's refined
               diagonal Gaussian): everything in closed form, the per-dimension KLs sum to the KL.
  Gaussian     a full-covariance Gaussian (the VLAE's Laplace posterior, a Householder flow, which maps a
               diagonal Gaussian linearly): the KL and the marginals in closed form; the per-dimension KL
               is each marginal's, and those sum to at most the KL (the rest is the correlation inside q).
  Flow         a non-linear flow q_T (IAF): the KL and the mean are Monte Carlo estimates over z_T; the
               marginals are Gaussians fitted to draws of z_T, so their KLs are estimates too (and lower
               bounds on each true marginal's KL: a Gaussian has the most entropy for its variance).
  Layered      two stochastic layers, q(z1|x) q(z|z1) (Burda et al. 2016): a code is the joint (z1, z), and
               the KL, the entropy and the pairwise densities are of both layers; the mean, the marginals and
               the per-dimension KL are of the top layer z, the one with the N(0, I) prior that Explore's
               sliders move, as Monte Carlo estimates over draws.
"""
from __future__ import annotations

import math

import torch
from torch.distributions import Independent, MultivariateNormal, Normal, OneHotCategorical, kl_divergence

MC_SAMPLES = 64     # draws of z_T per image behind a flow's mean, KL and marginals
LIVE_MC_SAMPLES = 16  # the same in the live rows, which run every few training steps
PAIR_ROWS = 2**16   # (code, image) pairs per chunk of a flow's log_prob_matrix


def as_event(dist):
    """A per-dimension latent distribution as one over whole latent vectors: log_prob sums over d."""
    return dist if isinstance(dist, OneHotCategorical) else Independent(dist, 1)


def draw(q, k: int):
    """k samples from an event-level posterior q, reparameterized when q allows, with log q of each:
    (k, B, d) and (k, B)."""
    z = q.rsample((k,)) if q.has_rsample else q.sample((k,))
    return z, q.log_prob(z)


def kl_per_dim(q, prior):
    """KL(q || p) per image, split by latent dimension (B, d), for a factorized q. For one categorical
    latent the split is by category: the terms q_k log(q_k / p_k), which sum to the KL."""
    if isinstance(q, OneHotCategorical):
        # q.logits are normalized log-probabilities: finite even where a probability underflows
        # to 0, so the gradient stays finite too (xlogy(p, p) would give 0 * -inf there).
        return q.probs * (q.logits - prior.probs.log())
    return kl_divergence(q, prior.expand(q.batch_shape))


def pairwise_log_density(q, z):
    """(n, B): log q(z_i | x_j) for n codes and every image j's factorized posterior."""
    if isinstance(q, Normal):
        # sum_d (z_id - mu_jd)^2 / s_jd^2 with the square expanded: two matrix products instead of a
        # (n, B, d) tensor, ten times faster; in float64 so the expansion loses nothing to cancellation.
        z, mu, prec = z.double(), q.loc.double(), q.scale.double().pow(-2)
        sq = z.pow(2) @ prec.T - 2 * z @ (mu * prec).T + (mu.pow(2) * prec).sum(-1)
        log_norm = -q.scale.double().log().sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
        return (log_norm - 0.5 * sq).to(q.loc.dtype)
    return as_event(q).log_prob(z[:, None])  # discrete latents: by broadcasting over the batch


class Posterior:
    """q(z|x) for a batch of B images; subclasses fill in the family's forms."""
    exact = True            # False: kl, mean and marginals are Monte Carlo estimates
    per_dim = ""            # what kl_per_dim means, in words for the pages
    per_dim_sums_to_kl = True

    def __init__(self, prior):
        self.prior = prior  # p(z), per dimension (the model's prior())

    @property
    def batch(self) -> int:
        return self.mean.shape[0]

    def for_pairs(self, n: int) -> "Posterior":
        """The posterior to use where every (code, image) pair is scored, as the live MI does on each
        held-out batch: itself, unless that costs far more than the rest (a flow's inversions)."""
        return self

    def for_live(self) -> "Posterior":
        """The posterior the live rows read every few training steps: itself, or a cheaper estimate of it."""
        return self


def mi_terms(q) -> torch.Tensor:
    """The estimator's per-image terms (B,), whose mean is the MI estimate: from a posterior (core.posterior)
    of a batch of B images, one code z_i ~ q(z|x_i) per image, and log q(z_i|x_i)'s expectation minus
    log q(z_i) ~ logsumexp_j log q(z_i|x_j) - log B, the batch's mixture as the aggregate posterior."""
    z = q.sample(1)[0][0]
    log_qz = torch.logsumexp(q.log_prob_matrix(z), dim=1) - math.log(len(z))
    return q.expected_log_q() - log_qz


class Factorized(Posterior):
    """A posterior that factorizes over dimensions: Normal, Bernoulli or one OneHotCategorical."""
    per_dim = "KL of each dimension, closed form; they sum to the KL"

    def __init__(self, dist, prior):
        super().__init__(prior)
        self.dist = dist

    def sample(self, k: int = 1):
        return draw(as_event(self.dist), k)

    @property
    def mean(self):
        return self.dist.mean

    def marginals(self):
        return self.dist

    def kl_per_dim(self):
        return kl_per_dim(self.dist, self.prior)

    def kl(self):
        return self.kl_per_dim().sum(-1)

    def expected_log_q(self):
        return -as_event(self.dist).entropy()

    def log_prob_matrix(self, z):
        return pairwise_log_density(self.dist, z)


class Gaussian(Posterior):
    """A full-covariance Gaussian posterior N(mu, Sigma) (a MultivariateNormal) against N(0, I)."""
    per_dim = ("KL of each marginal of the full-covariance Gaussian, closed form; they sum to at most the KL, "
               "the rest being the correlation inside q(z|x)")
    per_dim_sums_to_kl = False

    def __init__(self, mvn: MultivariateNormal, prior):
        super().__init__(prior)
        self.mvn = mvn

    def sample(self, k: int = 1):
        return draw(self.mvn, k)

    @property
    def mean(self):
        return self.mvn.loc

    def marginals(self):
        return Normal(self.mvn.loc, self.mvn.covariance_matrix.diagonal(dim1=-2, dim2=-1).sqrt(),
                      validate_args=False)

    def kl_per_dim(self):
        return kl_divergence(self.marginals(), self.prior.expand(self.mvn.loc.shape))

    def kl(self):
        standard = MultivariateNormal(self.prior.loc, scale_tril=torch.diag(self.prior.scale), validate_args=False)
        return kl_divergence(self.mvn, standard)

    def expected_log_q(self):
        return -self.mvn.entropy()

    def log_prob_matrix(self, z):
        return torch.cat([self.mvn.log_prob(chunk[:, None]) for chunk in z.split(max(1, PAIR_ROWS // self.batch))])


def linear_gaussian(loc, matrix, scale, prior) -> Gaussian:
    """The law of M z_0 + c for z_0 ~ N(mu, diag s^2): N(loc, M diag(s^2) M^T), loc = M mu + c. The Cholesky
    factor comes from a QR of (M diag s)^T, in float64, so that tiny variances do not break it."""
    a = (matrix.double() * scale.double()[:, None, :]).mT        # (M diag s)^T
    r = torch.linalg.qr(a, mode="r")[1]
    tril = r.mT * torch.sign(r.diagonal(dim1=-2, dim2=-1))[:, None, :]  # positive diagonal
    return Gaussian(MultivariateNormal(loc, scale_tril=tril.to(loc.dtype), validate_args=False), prior)


class Flow(Posterior):
    """q_T(z_T|x) of a normalizing flow z_T = f(z_0; h(x)), z_0 ~ q_0(z|x) diagonal Gaussian, with
    log q_T(z_T) = log q_0(z_0) - log|det df/dz_0|. `flow(z0, h)` gives (z_T, log|det|) and `inverse(z_T, h)`
    gives (z_0, log|det df/dz_0| at z_0). Draws come from torch's global stream: callers seed it."""
    exact = False
    per_dim = (f"KL of a Gaussian fitted to each marginal of q_T, a Monte Carlo estimate over draws of z_T ({MC_SAMPLES} "
               f"per image, {LIVE_MC_SAMPLES} in the live rows; at most each marginal's true KL)")
    per_dim_sums_to_kl = False

    def __init__(self, q0: Normal, h, flow, inverse, prior, samples: int = MC_SAMPLES):
        super().__init__(prior)
        self.q0, self.h, self.flow, self.inverse, self.samples = q0, h, flow, inverse, samples
        self._draws = None

    @property
    def batch(self) -> int:
        return self.h.shape[0]

    def sample(self, k: int = 1):
        return self.sample_with_logdet(k)[:2]

    def sample_with_logdet(self, k: int):
        """(z_T, log q_T(z_T), log|det df/dz_0|): (k, B, d), (k, B), (k, B)."""
        z0, log_q0 = draw(as_event(self.q0), k)
        batch = self.h.shape[0]
        zT, logdet = self.flow(z0.reshape(k * batch, -1), self.h.expand(k, *self.h.shape).reshape(k * batch, -1))
        logdet = logdet.view(k, batch)
        return zT.view(k, batch, -1), log_q0 - logdet, logdet

    def draws(self):
        """`samples` draws of z_T per image with their log-densities, made once."""
        if self._draws is None:
            self._draws = self.sample(self.samples)
        return self._draws

    @property
    def mean(self):
        return self.draws()[0].mean(0)

    def marginals(self):
        z = self.draws()[0]
        return Normal(z.mean(0), z.std(0).clamp(min=1e-6), validate_args=False)

    def kl_per_dim(self):
        return kl_divergence(self.marginals(), self.prior.expand(self.mean.shape))

    def kl(self):
        z, log_q = self.draws()
        return (log_q - as_event(self.prior).log_prob(z)).mean(0)

    def expected_log_q(self):
        """-H(q_T(z|x)) = -H(q_0) + E log|det|, a Monte Carlo mean over the draws."""
        return self.draws()[1].mean(0)

    def log_prob_matrix(self, z):
        batch, d = self.h.shape[0], z.shape[-1]
        rows = []
        for chunk in z.split(max(1, PAIR_ROWS // batch)):
            n = len(chunk)
            z0, logdet = self.inverse(chunk[:, None].expand(n, batch, d).reshape(n * batch, d),
                                      self.h.expand(n, *self.h.shape).reshape(n * batch, -1))
            log_q = as_event(self.q0).log_prob(z0.view(n, batch, d)) - logdet.view(n, batch)
            # Inverting a code under a far-away image's flow can overflow; such a pair has no density.
            rows.append(torch.nan_to_num(log_q, nan=-torch.inf, posinf=-torch.inf))
        return torch.cat(rows)

    def for_pairs(self, n: int) -> "Flow":
        """The first n images only: each of the B^2 pairs costs d passes of the flow's inverse."""
        if self.batch <= n:
            return self
        return Flow(Normal(self.q0.loc[:n], self.q0.scale[:n], validate_args=False), self.h[:n], self.flow,
                    self.inverse, self.prior, self.samples)

    def for_live(self) -> "Flow":
        """Fewer draws per image: the live rows' estimates are noisier than the diagnostics', and cheap."""
        return Flow(self.q0, self.h, self.flow, self.inverse, self.prior, LIVE_MC_SAMPLES)



class Layered(Posterior):
    """q(z1, z|x) = q(z1|x) q(z|z1) of a model with two stochastic layers (core.models, latent_below). sample()
    gives joint codes (z1, z), (k, B, d1 + d), scored against the model's joint prior p(z) p(z1|z). Draws come
    from torch's global stream: callers seed it."""
    exact = False
    per_dim = (f"the top layer's KL(q(z|z1) || N(0, I)) per dimension, averaged over draws of z1 ~ q(z1|x) ({MC_SAMPLES} "
               f"per image); the lower layer's share of the KL is not split by dimension, so they sum to less than the KL")
    per_dim_sums_to_kl = False

    def __init__(self, network, below: Normal, samples: int = MC_SAMPLES):
        super().__init__(network.prior())
        self.network, self.below, self.samples = network, below, samples
        self._draws = None

    @classmethod
    def of(cls, network, x) -> "Layered":
        return cls(network, network.encode_below(x))

    @property
    def batch(self) -> int:
        return self.below.loc.shape[0]

    def sample(self, k: int = 1):
        return self.sample_with_above(k)[:2]

    def sample_with_above(self, k: int):
        """(joint codes, log q(z1, z|x), q(z|z1) of each draw): (k, B, d1 + d), (k, B), batch (k, B, d)."""
        z1 = self.below.rsample((k,))
        above = self.network.encode_above(z1)
        z = above.rsample()
        log_q = Independent(self.below, 1).log_prob(z1) + Independent(above, 1).log_prob(z)
        return torch.cat([z1, z], -1), log_q, above

    def draws(self):
        if self._draws is None:
            self._draws = self.sample_with_above(self.samples)
        return self._draws

    @property
    def mean(self):
        return self.network.layer_codes(self.draws()[0])[1].mean(0)

    def marginals(self):
        z = self.network.layer_codes(self.draws()[0])[1]
        return Normal(z.mean(0), z.std(0).clamp(min=1e-6), validate_args=False)

    def kl_per_dim(self):
        above = self.draws()[2]
        return kl_divergence(above, self.prior.expand(above.batch_shape)).mean(0)

    def kl(self):
        z, log_q, _ = self.draws()
        return (log_q - self.network.log_prior(z)).mean(0)

    def expected_log_q(self):
        return self.draws()[1].mean(0)

    def log_prob_matrix(self, z):
        z1, top = self.network.layer_codes(z)
        return pairwise_log_density(self.below, z1) + Independent(self.network.encode_above(z1), 1).log_prob(top)[:, None]

    def for_pairs(self, n: int) -> "Layered":
        if self.batch <= n:
            return self
        return Layered(self.network, Normal(self.below.loc[:n], self.below.scale[:n], validate_args=False), self.samples)

    def for_live(self) -> "Layered":
        return Layered(self.network, self.below, LIVE_MC_SAMPLES)
