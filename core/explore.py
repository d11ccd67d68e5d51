"""What the Explore view asks of a model: slider ranges, decoded codes, traversals, interpolations.
Plain torch, no UI, so the dashboard stays layout over these calls."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .diagnostics import held_out, sampling


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
    active = q.mean.var(0, unbiased=False) > 0.01
    return LatentRanges((mean - spread * std).tolist(), (mean + spread * std).tolist(), mean.tolist(), active.tolist())


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
