"""Test-set ELBO, reconstruction and KL (total and per dimension) of a model, under its own posterior."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch

from .bundle import as_bundle
from .data import Dataset
from .objectives import log_weights
from .rng import seeded


@dataclass
class EvalResult:
    elbo: float          # nats per image, E_q[log p(x|z)] - KL, one z sample per image, q the model's posterior
    recon: float         # -E_q[log p(x|z)]; recon + kl = -elbo
    kl: float            # E_x KL(q(z|x) || p(z)): closed form, or a Monte Carlo estimate where kl_exact is False
    kl_per_dim: list[float]  # what per_dim says; for a full-covariance or flow posterior they need not sum to kl
    n: int
    kl_exact: bool = True
    per_dim: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def as_seen(data: Dataset, x: torch.Tensor) -> torch.Tensor:
    """Images as the model sees them: with dynamic binarization, one Bernoulli draw of each (seed first)."""
    return torch.bernoulli(x) if data.spec.binarize == "dynamic" else x


def eval_split(data: Dataset, n: int | None = None):
    """The first n test images and labels; with dynamic binarization, binarized once (seed first)."""
    return as_seen(data, data.test_x[:n]), data.test_y[:n]


@torch.no_grad()
def evaluate(model, data: Dataset, batch_size: int = 1000, seed: int = 0, n: int | None = None) -> EvalResult:
    """The ELBO of the test split (its first n images if n is given) under the model's own posterior
    (a bundle's objective: flows, refinements and Laplace posteriors included; a bare network: its encoder).
    With dynamic binarization the test images are binarized once with a fixed seed, so two evaluations
    of one model agree exactly."""
    bundle = as_bundle(model)
    bundle.network.eval()
    device = bundle.device
    recon_sum, kl_sum = 0.0, 0.0
    per_dim_sum = torch.zeros(bundle.latent_dim, dtype=torch.float64)
    with seeded(device, seed):
        x_all, y_all = eval_split(data, n)
        for x, y in zip(x_all.split(batch_size), y_all.split(batch_size)):
            x, y = x.to(device), y.to(device)
            q = bundle.posterior(x, y)
            z = q.sample(1)[0]
            recon_sum -= bundle.network.decode(z[0], y).log_prob(x).double().sum().item()
            kl_sum += q.kl().double().sum().item()
            per_dim_sum += q.kl_per_dim().double().sum(0).cpu()
    n = len(x_all)
    return EvalResult(elbo=-(recon_sum + kl_sum) / n, recon=recon_sum / n, kl=kl_sum / n,
                      kl_per_dim=(per_dim_sum / n).tolist(), n=n, kl_exact=q.exact, per_dim=q.per_dim)


@dataclass
class BoundResult:
    elbo: float          # E_q[log w], nats per image: the ELBO of the objective's own posterior
    iwae: float          # E[log (1/k) sum_i w_i] >= elbo: the importance-weighted bound
    k: int
    n: int
    gap: float = field(init=False)  # iwae - elbo >= 0: how much of KL(q(z|x) || p(z|x)) k samples recover

    def __post_init__(self):
        self.gap = self.iwae - self.elbo


@torch.no_grad()
def importance_weighted_bound(model, data: Dataset, k: int = 100, n: int | None = None, batch_size: int = 100,
                              chunk: int = 100, seed: int = 0, progress: bool = False) -> BoundResult:
    """The importance-weighted bound log p(x) >= E[log (1/k) sum_i p(x, z_i) / q(z_i|x)] (Burda et al.
    2016, eq. 8), averaged over the first n test images, with the model's own posterior as the proposal
    (flows, refinements and Laplace posteriors included). The k samples are drawn in chunks, but their
    log-weights are gathered in float64 and reduced by one logsumexp over all k. The mean of the same
    log-weights is the ELBO (eq. 3), so both come from one pass."""
    from tqdm import tqdm

    bundle = as_bundle(model)
    bundle.network.eval()
    device = bundle.device
    bound = elbo = 0.0
    with seeded(device, seed):
        x_all, y_all = eval_split(data, n)
        batches = list(zip(x_all.split(batch_size), y_all.split(batch_size)))
        for x, y in tqdm(batches, desc=f"IWAE k={k}", unit="batch", disable=not progress, leave=False):
            x, y = x.to(device), y.to(device)
            q = bundle.posterior(x, y)
            log_w = torch.cat([log_weights(bundle.network, x, y, *q.sample(min(chunk, k - i)))[0].double()
                               for i in range(0, k, chunk)])
            bound += (torch.logsumexp(log_w, 0) - math.log(k)).sum().item()
            elbo += log_w.mean(0).sum().item()
    return BoundResult(elbo / len(x_all), bound / len(x_all), k, len(x_all))
