"""Test-set ELBO, reconstruction and KL (total and per dimension) of a trained model."""
from __future__ import annotations

import contextlib
import math
import threading
from dataclasses import asdict, dataclass, field

import torch

from .data import Dataset
from .objectives import elbo_parts, log_weights


@dataclass
class EvalResult:
    elbo: float          # nats per image, E_q[log p(x|z)] - KL, one z sample per image
    recon: float         # -E_q[log p(x|z)]
    kl: float
    kl_per_dim: list[float]
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


# Held by whoever swaps torch's global random state: a trainer for each step (each owns a stream it
# swaps in), and every seeded draw below. Without it, seeding in one thread rewinds the stream of a
# trainer running in another. Re-entrant, so a trainer's step may take a seeded draw inside its own.
RNG_LOCK = threading.RLock()


@contextlib.contextmanager
def seeded(device: torch.device, seed: int):
    """Draw from a fixed seed without disturbing the global random stream, or any trainer's."""
    with RNG_LOCK, torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def eval_split(data: Dataset, n: int | None = None):
    """The first n test images and labels; with dynamic binarization, binarized once (seed first)."""
    x = data.test_x[:n]
    return (torch.bernoulli(x) if data.spec.binarize == "dynamic" else x), data.test_y[:n]


@torch.no_grad()
def evaluate(model, data: Dataset, batch_size: int = 1000, seed: int = 0, n: int | None = None) -> EvalResult:
    """The ELBO of the test split (its first n images if n is given). With dynamic binarization the test
    images are binarized once with a fixed seed, so two evaluations of one model agree exactly."""
    model.eval()
    device = model.prior_loc.device
    recon_sum, kl_sum = 0.0, torch.zeros(model.latent_dim, dtype=torch.float64)
    with seeded(device, seed):
        x_all, y_all = eval_split(data, n)
        for x, y in zip(x_all.split(batch_size), y_all.split(batch_size)):
            recon, kl = elbo_parts(model, x.to(device), y.to(device))
            recon_sum += recon.double().sum().item()
            kl_sum += kl.double().sum(0).cpu()
    n = len(x_all)
    kl_per_dim = (kl_sum / n).tolist()
    return EvalResult(elbo=-(recon_sum / n + sum(kl_per_dim)), recon=recon_sum / n, kl=sum(kl_per_dim),
                      kl_per_dim=kl_per_dim, n=n)


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
def importance_weighted_bound(model, objective, data: Dataset, k: int = 100, n: int | None = None,
                              batch_size: int = 100, chunk: int = 100, seed: int = 0,
                              progress: bool = False) -> BoundResult:
    """The importance-weighted bound log p(x) >= E[log (1/k) sum_i p(x, z_i) / q(z_i|x)] (Burda et al.
    2016, eq. 8), averaged over the first n test images, with the objective's own posterior as the
    proposal (flows, refinements and Laplace posteriors included). The k samples are drawn in chunks,
    but their log-weights are gathered in float64 and reduced by one logsumexp over all k. The mean of
    the same log-weights is the ELBO (eq. 3), so both come from one pass."""
    from tqdm import tqdm

    model.eval()
    device = model.prior_loc.device
    bound = elbo = 0.0
    with seeded(device, seed):
        x_all, y_all = eval_split(data, n)
        batches = list(zip(x_all.split(batch_size), y_all.split(batch_size)))
        for x, y in tqdm(batches, desc=f"IWAE k={k}", unit="batch", disable=not progress, leave=False):
            x, y = x.to(device), y.to(device)
            log_w = torch.cat([log_weights(model, x, y, *objective.posterior_samples(model, x, y, min(chunk, k - i)))[0]
                               .double() for i in range(0, k, chunk)])
            bound += (torch.logsumexp(log_w, 0) - math.log(k)).sum().item()
            elbo += log_w.mean(0).sum().item()
    return BoundResult(elbo / len(x_all), bound / len(x_all), k, len(x_all))
