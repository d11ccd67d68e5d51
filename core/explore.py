"""What the Explore view asks of a model: slider ranges, decoded codes, traversals, interpolations.
Plain torch, no UI, so the dashboard stays layout over these calls.

Functions that read images through the encoder take a model value (core.bundle.Bundle) and use its own
posterior; functions that only decode codes take the network, and need no dataset."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from .bundle import as_bundle
from .diagnostics import held_out, sampling
from .diagnostics.active_units import active_units_of
from .errors import ConfigError
from .evaluate import eval_split
from .rng import seeded


@dataclass
class LatentRanges:
    low: list[float]        # per dimension: slider range from the aggregate posterior, mean -/+ 3 std
    high: list[float]
    mean: list[float]
    active: list[bool]      # Var_x E_q[z_d] > 0.01 (Burda et al.'s active units)
    from_data: bool = True  # False: the prior's range, for a model whose dataset is not here


@torch.no_grad()
def latent_ranges(model, data, n: int = 500, spread: float = 3.0) -> LatentRanges:
    """Where the codes of real images lie, dimension by dimension, under the model's own posterior: its
    means for n test images give which dimensions are active; one z ~ q(z|x) per image gives the aggregate
    posterior's spread."""
    bundle = as_bundle(model)
    x, y = held_out(bundle, data, n)
    with sampling(x.device):
        q = bundle.posterior(x, y)
        z = q.sample(1)[0][0, :, -bundle.latent_dim:]  # the top layer of a two-layer model's joint codes
        au = active_units_of(q)
    mean, std = z.mean(0), z.std(0).clamp(min=1e-3)
    active = [v > au.threshold for v in au.variances]
    return LatentRanges((mean - spread * std).tolist(), (mean + spread * std).tolist(), mean.tolist(), active)


def prior_ranges(network, spread: float = 3.0) -> LatentRanges:
    """Slider ranges from the prior N(0, I) alone: what a model without its dataset can offer."""
    d = network.latent_dim
    return LatentRanges([-spread] * d, [spread] * d, [0.0] * d, [True] * d, from_data=False)


@torch.no_grad()
def decode(network, z, y=None) -> torch.Tensor:
    """Codes (B, d) or one code (d,) -> the decoder's mean pictures (B, C, H, W)."""
    z = torch.as_tensor(z, dtype=torch.float32, device=network.prior_loc.device).reshape(-1, network.latent_dim)
    if y is not None:
        y = torch.as_tensor(y, device=z.device).reshape(-1).expand(len(z))
    return network.mean_image(z, y).cpu()


@torch.no_grad()
def teacher_forced(network, z, x) -> torch.Tensor:
    """A PixelCNN's p(x_i = 1 | x_<i, z) at every pixel of the images x (B, 1, H, W) under the codes z (B, d),
    or one image under many codes: one pass, where a drawn picture takes one per pixel. What z changes in
    it is what the decoder reads from z; a collapsed model gives the same map for every code."""
    z = torch.as_tensor(z, dtype=torch.float32, device=network.prior_loc.device).reshape(-1, network.latent_dim)
    x = x.to(z.device).reshape(-1, *network.cfg.image_shape).expand(len(z), *network.cfg.image_shape)
    return network.decode(z).probs(x).cpu()


def slow_pictures(network) -> bool:
    """True where a picture is drawn pixel by pixel (a PixelCNN): the pages draw few, and say so."""
    return getattr(network, "autoregressive", False)


DRAWN = 16  # pictures a page draws pixel by pixel at most, for one view of a PixelCNN


@dataclass
class DecoderProgram:
    """An MLP decoder as plain affine layers, for a client to decode codes itself (the Explore sliders
    decode in the browser while they are dragged). Batch norm (in eval mode) and a fixed label are
    folded into the weights, so decoding is: h = z; for each layer h = act(W h + b); then the mean's
    squash and the display transform (pixels = clamp(h * scale + offset, 0, 1))."""
    layers: list[tuple[np.ndarray, np.ndarray, str]]  # (W (out, in) float32, b (out,), "relu" | "leaky-relu:0.01" | "tanh" | "")
    squash: str                                       # "sigmoid" or "" (the likelihood's mean of the last layer)
    shape: tuple[int, int, int]                       # C, H, W of a picture (channel-major)
    scale: float = 1.0
    offset: np.ndarray | None = None                  # the dataset's mean image of a mean-normalized model

    def __call__(self, z) -> np.ndarray:
        """The reference evaluation, in float32 like the client's: codes (B, d) -> pixels (B, C, H, W)."""
        h = np.asarray(z, dtype=np.float32).reshape(-1, self.layers[0][0].shape[1])
        for w, b, act in self.layers:
            h = h @ w.T + b
            if act == "relu":
                h = np.maximum(h, 0)
            elif act.startswith("leaky-relu"):
                h = np.where(h > 0, h, h * np.float32(act.split(":")[1]))
            elif act == "tanh":
                h = np.tanh(h)
        if self.squash == "sigmoid":
            h = 1 / (1 + np.exp(-h))
        h = h * self.scale + (0 if self.offset is None else self.offset)
        return np.clip(h, 0, 1).reshape(-1, *self.shape).astype(np.float32)


@torch.no_grad()
def decoder_program(network, y=None, data=None) -> DecoderProgram | None:
    """The network's decoder as a DecoderProgram, or None where it is not a plain MLP (a conv decoder).
    A learned variance, per pixel or shared, does not touch the mean and is left out."""
    cfg = network.cfg
    if cfg.arch != "mlp" or not isinstance(getattr(network, "decoder", None), torch.nn.Sequential):
        return None  # a conv decoder, or a user's own module
    if getattr(network, "layered", False) or getattr(network, "autoregressive", False) or getattr(cfg, "skip_z", False):
        return None  # p(z1|z), a PixelCNN or z entering every layer: decoded on the server
    layers = []
    for m in network.decoder[0]:
        if isinstance(m, torch.nn.Linear):
            layers.append([m.weight.double().clone(), m.bias.double().clone(), ""])
        elif isinstance(m, torch.nn.BatchNorm1d):  # eval mode: an affine map per unit, folded into the Linear
            gain = m.weight.double() / torch.sqrt(m.running_var.double() + m.eps)
            w, b, _ = layers[-1]
            layers[-1][:2] = w * gain[:, None], (b - m.running_mean.double()) * gain + m.bias.double()
        elif isinstance(m, torch.nn.LeakyReLU):
            layers[-1][2] = f"leaky-relu:{m.negative_slope}"
        elif isinstance(m, (torch.nn.ReLU, torch.nn.Tanh)):
            layers[-1][2] = "relu" if isinstance(m, torch.nn.ReLU) else "tanh"
        else:
            return None
    d = network.latent_dim
    if cfg.n_classes:  # a fixed label is a constant part of the first layer's input: fold it into the bias
        w, b, _ = layers[0]
        layers[0][:2] = w[:, :d], b + w[:, d + int(y if y is not None else 0)]
    c, h, w_ = cfg.image_shape
    if layers[-1][0].shape[0] == 2 * c * h * w_:  # a per-pixel std is the second half of the channels
        layers[-1][:2] = layers[-1][0][:c * h * w_], layers[-1][1][:c * h * w_]
    squash = "sigmoid" if cfg.likelihood in ("bernoulli", "mse") or cfg.gaussian_mean == "sigmoid" else ""
    offset, scale = None, 1.0
    if data is not None and data.mean is not None:
        offset, scale = data.mean.reshape(-1).numpy().astype(np.float32), float(data.scale)
    as32 = lambda t: t.float().cpu().numpy()  # noqa: E731
    return DecoderProgram([(as32(w), as32(b), act) for w, b, act in layers], squash, (c, h, w_), scale, offset)


@torch.no_grad()
def encode_mean(model, x, y=None) -> list[float]:
    """The posterior mean code of one image (the model's own posterior), to start the sliders from."""
    bundle = as_bundle(model)
    device = bundle.device
    y = None if y is None else torch.as_tensor(y, device=device).reshape(1)
    with sampling(device):
        return bundle.posterior(x[None].to(device), y).mean[0].tolist()


def traversal_codes(z, dims: list[int], values: list[float]) -> torch.Tensor:
    """One row per dimension in dims: the code z with that dimension swept over values (len(dims) * len(values)
    codes, row by row)."""
    base = torch.as_tensor(z, dtype=torch.float32)
    codes = base.repeat(len(dims) * len(values), 1)
    for row, d in enumerate(dims):
        codes[row * len(values):(row + 1) * len(values), d] = torch.as_tensor(values, dtype=torch.float32)
    return codes


def traversal(network, z, dims: list[int], values: list[float], y=None) -> torch.Tensor:
    """The traversal's codes decoded, as in the mu-VAE paper's Fig. 7."""
    return decode(network, traversal_codes(z, dims, values), y)


def interpolate(network, z_a, z_b, steps: int = 10, y=None) -> torch.Tensor:
    """Decoded codes on the straight line from z_a to z_b, both ends included."""
    t = torch.linspace(0, 1, steps)[:, None]
    a, b = torch.as_tensor(z_a, dtype=torch.float32), torch.as_tensor(z_b, dtype=torch.float32)
    return decode(network, (1 - t) * a + t * b, y)


@torch.no_grad()
def prior_samples(network, n: int, sigma: float = 1.0, seed: int = 0, y=None) -> torch.Tensor:
    """n pictures decoded from N(0, sigma^2 I) (the mu-VAE's spread-out codes want sigma ~ 3); discrete
    latents sample their own prior and ignore sigma."""
    gen = torch.Generator(device=network.prior_loc.device).manual_seed(seed)
    if network.cfg.latent != "gaussian":
        return network.sample(n, generator=gen, y=y).cpu()
    z = sigma * torch.randn(n, network.latent_dim, generator=gen, device=network.prior_loc.device)
    if y is None and network.cfg.n_classes:
        y = torch.arange(n) % network.cfg.n_classes
    return decode(network, z, None if y is None else torch.as_tensor(y))


METHODS = ("pca", "tsne", "umap", "raw")  # raw: the first two latent coordinates themselves
# umap-learn says a seeded map runs on one thread, on every call. Filtered once here, not with
# warnings.catch_warnings around the call: that swaps process-wide state and is not safe in threads.
warnings.filterwarnings("ignore", message=r"n_jobs value .* overridden", category=UserWarning)


@dataclass
class LatentMap:
    coords: list[list[float]]   # (n, 2) positions
    index: list[int]            # which test images, in order
    labels: list[int]           # their labels (-1 when the dataset has none)
    kl: list[float]             # KL(q(z|x) || p(z)) of each image, nats (a Monte Carlo estimate for a flow)
    recon: list[float]          # -log p(x | z = E_q[z]) of each image, nats
    method: str


@torch.no_grad()
def latent_map(model, data, method: str = "pca", n: int = 2000, seed: int = 0, perplexity: float = 30.0,
               neighbors: int = 15, init: np.ndarray | None = None) -> LatentMap:
    """A 2-D map of the posterior means (the model's own posterior) of n test images (a seeded random
    subset): PCA, t-SNE (scikit-learn) or UMAP (umap-learn), or the raw first two coordinates. init: a
    starting layout of the same points for t-SNE and UMAP (core.timeline starts each step's map from the
    step before's)."""
    if method not in METHODS:
        raise ConfigError(f"unknown map method {method!r}; choose from: {', '.join(METHODS)}")
    total = len(data.test_x)
    index = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:min(n, total)].sort().values
    bundle = as_bundle(model)
    device = bundle.device
    with seeded(device, seed):
        x_all, y_all = eval_split(data)
    x, y = x_all[index].to(device), y_all[index].to(device)
    with sampling(device, seed):
        q = bundle.posterior(x, y)
        means, kl = q.mean, q.kl()
    recon = -bundle.network.decode(means, y).log_prob(x)
    means = means.cpu().numpy()
    if method == "raw" or means.shape[1] <= 2:
        coords = means[:, :2] if means.shape[1] >= 2 else np.c_[means, np.zeros(len(means))]
    elif method == "pca":
        from sklearn.decomposition import PCA  # scikit-learn's import takes a second: only when mapping
        coords = PCA(2, random_state=seed).fit_transform(means)
    elif method == "tsne":
        from sklearn.manifold import TSNE
        start = "pca" if init is None else 1e-4 * init / max(float(np.std(init[:, 0])), 1e-12)  # t-SNE's own scale for a start
        coords = TSNE(2, perplexity=min(perplexity, (len(means) - 1) / 3), init=start, random_state=seed).fit_transform(means)
    else:
        import umap  # imported here: it takes seconds, spent only when asked
        coords = umap.UMAP(n_neighbors=min(neighbors, len(means) - 1), random_state=seed,
                           init="spectral" if init is None else init).fit_transform(means)
    return LatentMap(np.asarray(coords, dtype=float).tolist(), index.tolist(), y.cpu().tolist(), kl.cpu().tolist(),
                     recon.cpu().tolist(), method)


UMAP_EXACT_BELOW = 4096  # umap-learn finds neighbours exactly below this many points, by NN-descent from it


def warm_up_umap(approximate: bool = True):
    """Compile umap-learn's numba kernels on random points, once per process: the exact-neighbour path
    (a few seconds) and, when `approximate`, the nearest-neighbour-descent path that maps of
    UMAP_EXACT_BELOW or more points take (about 25 s more on a 2-core CPU)."""
    import umap
    rng = np.random.default_rng(0)
    for size in (500, UMAP_EXACT_BELOW + 100) if approximate else (500,):
        umap.UMAP(n_epochs=10, random_state=0).fit_transform(rng.standard_normal((size, 8)).astype(np.float32))
