"""What the Explore view asks of a model: slider ranges, decoded codes, traversals, interpolations.
Plain torch, no UI, so the dashboard stays layout over these calls."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from .diagnostics import held_out, sampling
from .diagnostics.active_units import active_units_of
from .errors import ConfigError
from .evaluate import eval_split, seeded
from .objectives import kl_per_dim


@dataclass
class LatentRanges:
    low: list[float]        # per dimension: slider range from the aggregate posterior, mean -/+ 3 std
    high: list[float]
    mean: list[float]
    active: list[bool]      # Var_x E_q[z_d] > 0.01 (Burda et al.'s active units)


@torch.no_grad()
def latent_ranges(model, data, n: int = 500, spread: float = 3.0) -> LatentRanges:
    """Where the codes of real images lie, dimension by dimension: the encoder means of n test images
    give which dimensions are active; one z ~ q(z|x) per image gives the aggregate posterior's spread."""
    x, y = held_out(model, data, n)
    q = model.encode(x, y)
    with sampling(x.device):
        z = q.sample()
    mean, std = z.mean(0), z.std(0).clamp(min=1e-3)
    au = active_units_of(q)
    active = [v > au.threshold for v in au.variances]
    return LatentRanges((mean - spread * std).tolist(), (mean + spread * std).tolist(), mean.tolist(), active)


@torch.no_grad()
def decode(model, z, y=None) -> torch.Tensor:
    """Codes (B, d) or one code (d,) -> the decoder's mean pictures (B, C, H, W)."""
    z = torch.as_tensor(z, dtype=torch.float32, device=model.prior_loc.device).reshape(-1, model.latent_dim)
    if y is not None:
        y = torch.as_tensor(y, device=z.device).reshape(-1).expand(len(z))
    return model.mean_image(z, y).cpu()


@torch.no_grad()
def encode_mean(model, x, y=None) -> list[float]:
    """The encoder's mean code of one image, to start the sliders from."""
    device = model.prior_loc.device
    y = None if y is None else torch.as_tensor(y, device=device).reshape(1)
    return model.encode(x[None].to(device), y).mean[0].tolist()


def traversal(model, z, dims: list[int], values: list[float], y=None) -> torch.Tensor:
    """One row per dimension in dims: the code z with that dimension swept over values, decoded
    (len(dims) * len(values) pictures, row by row), as in the mu-VAE paper's Fig. 7."""
    base = torch.as_tensor(z, dtype=torch.float32)
    codes = base.repeat(len(dims) * len(values), 1)
    for row, d in enumerate(dims):
        codes[row * len(values):(row + 1) * len(values), d] = torch.as_tensor(values, dtype=torch.float32)
    return decode(model, codes, y)


def interpolate(model, z_a, z_b, steps: int = 10, y=None) -> torch.Tensor:
    """Decoded codes on the straight line from z_a to z_b, both ends included."""
    t = torch.linspace(0, 1, steps)[:, None]
    a, b = torch.as_tensor(z_a, dtype=torch.float32), torch.as_tensor(z_b, dtype=torch.float32)
    return decode(model, (1 - t) * a + t * b, y)


@torch.no_grad()
def prior_samples(model, n: int, sigma: float = 1.0, seed: int = 0, y=None) -> torch.Tensor:
    """n pictures decoded from N(0, sigma^2 I) (the mu-VAE's spread-out codes want sigma ~ 3); discrete
    latents sample their own prior and ignore sigma."""
    gen = torch.Generator(device=model.prior_loc.device).manual_seed(seed)
    if model.cfg.latent != "gaussian":
        return model.sample(n, generator=gen, y=y).cpu()
    z = sigma * torch.randn(n, model.latent_dim, generator=gen, device=model.prior_loc.device)
    if y is None and model.cfg.n_classes:
        y = torch.arange(n) % model.cfg.n_classes
    return decode(model, z, None if y is None else torch.as_tensor(y))


METHODS = ("pca", "tsne", "umap", "raw")  # raw: the first two latent coordinates themselves
# umap-learn says a seeded map runs on one thread, on every call. Filtered once here, not with
# warnings.catch_warnings around the call: that swaps process-wide state and is not safe in threads.
warnings.filterwarnings("ignore", message=r"n_jobs value .* overridden", category=UserWarning)


@dataclass
class LatentMap:
    coords: list[list[float]]   # (n, 2) positions
    index: list[int]            # which test images, in order
    labels: list[int]           # their labels (-1 when the dataset has none)
    kl: list[float]             # KL(q(z|x) || p(z)) of each image, nats
    recon: list[float]          # -log p(x | z = E_q[z]) of each image, nats
    method: str


@torch.no_grad()
def latent_map(model, data, method: str = "pca", n: int = 2000, seed: int = 0, perplexity: float = 30.0,
               neighbors: int = 15) -> LatentMap:
    """A 2-D map of the encoder means of n test images (a seeded random subset): PCA, t-SNE
    (scikit-learn) or UMAP (umap-learn), or the raw first two coordinates."""
    if method not in METHODS:
        raise ConfigError(f"unknown map method {method!r}; choose from: {', '.join(METHODS)}")
    total = len(data.test_x)
    index = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:min(n, total)].sort().values
    device = model.prior_loc.device
    with seeded(device, seed):
        x_all, y_all = eval_split(data)
    x, y = x_all[index].to(device), y_all[index].to(device)
    q = model.encode(x, y)
    means = q.mean.cpu().numpy()
    kl = kl_per_dim(q, model.prior()).sum(-1)
    recon = -model.decode(q.mean, y).log_prob(x)
    if method == "raw" or means.shape[1] <= 2:
        coords = means[:, :2] if means.shape[1] >= 2 else np.c_[means, np.zeros(len(means))]
    elif method == "pca":
        coords = PCA(2, random_state=seed).fit_transform(means)
    elif method == "tsne":
        coords = TSNE(2, perplexity=min(perplexity, (len(means) - 1) / 3), init="pca", random_state=seed).fit_transform(means)
    else:
        import umap  # imported here: it takes seconds, spent only when asked
        coords = umap.UMAP(n_neighbors=min(neighbors, len(means) - 1), random_state=seed).fit_transform(means)
    return LatentMap(np.asarray(coords, dtype=float).tolist(), index.tolist(), y.cpu().tolist(), kl.cpu().tolist(),
                     recon.cpu().tolist(), method)


def warm_up_umap():
    """Compile umap-learn's numba kernels (about 40 s on a 2-core CPU, once per process) on random points,
    enough of them (4,200) to take the nearest-neighbour-descent path that real maps take."""
    import umap
    points = np.random.default_rng(0).standard_normal((4200, 8)).astype(np.float32)
    umap.UMAP(n_epochs=10, random_state=0).fit_transform(points)
