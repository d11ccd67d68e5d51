"""The VAE: an encoder q(z|x), a decoder p(x|z) and a prior p(z); the latent is Gaussian with a
standard normal prior, or discrete (Bernoulli bits or one categorical) with a uniform prior.

Encoders and decoders are either an MLP or a small conv net of stride-2 layers; the decoder
mirrors the encoder. Densities are torch.distributions objects, so objectives call .log_prob,
.rsample and kl_divergence rather than hand-written formulas. Argument validation is off: it costs
time every step, and a NaN must reach the engine's divergence check, not raise inside a density.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Bernoulli, Independent, Normal, OneHotCategorical

from .errors import ConfigError

ACTIVATIONS = {"relu": nn.ReLU, "leaky-relu": nn.LeakyReLU, "tanh": nn.Tanh}
LIKELIHOODS = ("bernoulli", "gaussian")
INITS = ("default", "he", "vlae")
LATENTS = ("gaussian", "bernoulli", "categorical")


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "mlp"                          # "mlp" or "conv"
    hidden: tuple[int, ...] = (512, 256)       # MLP widths, input side first; the decoder reverses them
    channels: tuple[int, ...] = (32, 64, 128)  # conv widths, one stride-2 4x4 layer each
    activation: str = "relu"                   # "relu", "leaky-relu" or "tanh"
    latent_dim: int = 20
    likelihood: str = "auto"                   # "bernoulli" (logits), "gaussian", or "auto": the dataset's
    obs_std: float = 0.0                       # Gaussian only: 0 learns a per-pixel std, > 0 fixes it
    gaussian_mean: str = "identity"            # Gaussian only: "sigmoid" keeps the mean in (0, 1), for pixels in [0, 1]
    init: str = "default"                      # "default" (PyTorch), "he" or "vlae" (He, gain 2^(1/3))
    image_shape: tuple[int, int, int] = (1, 28, 28)
    n_classes: int = 0                         # > 0: encoder and decoder also see a one-hot label (CVAE)
    latent_clip: float = 0.0                   # c > 0: rescale each encoder mean so ||mu|| <= c sqrt(d)
    latent: str = "gaussian"                   # "gaussian"; "bernoulli": z in {0,1}^d; "categorical": one of d

    def __post_init__(self):
        # JSON turns tuples into lists; accept both so a config round-trips through a checkpoint.
        for name in ("hidden", "channels", "image_shape"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        check = [
            (self.arch in ("mlp", "conv"), f"arch must be 'mlp' or 'conv', not {self.arch!r}"),
            (self.latent_dim >= 1, f"latent size must be at least 1, not {self.latent_dim}"),
            (self.activation in ACTIVATIONS, f"activation must be one of {', '.join(ACTIVATIONS)}"),
            (self.likelihood in LIKELIHOODS + ("auto",), f"likelihood must be one of {', '.join(LIKELIHOODS)} or auto"),
            (self.init in INITS, f"init must be one of {', '.join(INITS)}"),
            (math.isfinite(self.obs_std) and self.obs_std >= 0, "obs_std must be a finite number >= 0"),
            (self.gaussian_mean in ("identity", "sigmoid"), "gaussian_mean must be 'identity' or 'sigmoid'"),
            (all(w >= 1 for w in self.hidden + self.channels), "layer widths must be at least 1"),
            (len(self.image_shape) == 3 and min(self.image_shape) >= 1, "image shape must be C, H, W"),
            (self.n_classes >= 0, "n_classes must be >= 0"),
            (self.latent in LATENTS, f"latent must be one of {', '.join(LATENTS)}"),
            (self.latent == "gaussian" or self.latent_clip == 0, "latent clipping needs a Gaussian latent"),
            (self.latent != "categorical" or self.latent_dim >= 2, "a categorical latent needs at least 2 categories"),
            (math.isfinite(self.latent_clip) and self.latent_clip >= 0, "latent clip c must be a finite number >= 0"),
            (self.arch != "conv" or 1 <= len(self.channels) <= 5, "a conv net needs 1 to 5 layers"),
        ]
        for ok, message in check:
            if not ok:
                raise ConfigError(message)

    def to_dict(self) -> dict:
        return asdict(self)


def mlp(widths: list[int], activation: str) -> nn.Sequential:
    """Linear layers with an activation between them, none after the last."""
    layers = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class ConvEncoder(nn.Module):
    """Stride-2 4x4 convolutions, flattened: the features the encoder head reads."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c, h, w = cfg.image_shape
        c += cfg.n_classes  # a label enters as constant one-hot planes
        layers, self.sizes = [], [(h, w)]
        for width in cfg.channels:
            layers += [nn.Conv2d(c, width, 4, stride=2, padding=1), ACTIVATIONS[cfg.activation]()]
            c, h, w = width, h // 2, w // 2
            self.sizes.append((h, w))
        if h < 1 or w < 1:
            raise ConfigError(f"{len(cfg.channels)} stride-2 layers shrink a {cfg.image_shape[1:]} image to nothing")
        self.conv = nn.Sequential(*layers)
        self.flat = (c, h, w)
        self.width = c * h * w

    def forward(self, x):
        return self.conv(x).flatten(1)


class ConvDecoder(nn.Module):
    """The encoder's mirror: a linear map up to the smallest feature map, then transposed
    convolutions whose output padding restores each odd size the encoder rounded down."""

    def __init__(self, cfg: ModelConfig, encoder: ConvEncoder, out_channels: int):
        super().__init__()
        c, h, w = encoder.flat
        self.flat = encoder.flat
        self.head = nn.Sequential(nn.Linear(cfg.latent_dim + cfg.n_classes, c * h * w), ACTIVATIONS[cfg.activation]())
        widths = list(reversed(cfg.channels[:-1])) + [out_channels]
        sizes = list(reversed(encoder.sizes))
        layers = []
        for i, width in enumerate(widths):
            (h0, w0), (h1, w1) = sizes[i], sizes[i + 1]
            pad = (h1 - 2 * h0, w1 - 2 * w0)  # 0 or 1: a 4x4 stride-2 transpose conv gives 2n + pad
            layers.append(nn.ConvTranspose2d(c, width, 4, stride=2, padding=1, output_padding=pad))
            if i < len(widths) - 1:
                layers.append(ACTIVATIONS[cfg.activation]())
            c = width
        self.deconv = nn.Sequential(*layers)

    def forward(self, z):
        return self.deconv(self.head(z).view(-1, *self.flat))


class VAE(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.likelihood not in LIKELIHOODS:
            raise ConfigError("the model's likelihood must be resolved (bernoulli or gaussian) before building")
        self.cfg = cfg
        c, h, w = cfg.image_shape
        d = cfg.latent_dim
        learned_std = cfg.likelihood == "gaussian" and cfg.obs_std == 0
        out_channels = 2 * c if learned_std else c  # a learned std takes a second output map
        # encoder: x -> features h (encoder_body) -> latent parameters (encoder_head). Flows and
        # iterative refinements read h; conditional models concatenate a one-hot label to the input.
        if cfg.arch == "mlp":
            widths = [c * h * w + cfg.n_classes, *cfg.hidden]
            body = [nn.Flatten(), mlp(widths, cfg.activation)] + ([ACTIVATIONS[cfg.activation]()] if cfg.hidden else [])
            self.encoder_body = nn.Sequential(*body)
            self.features = widths[-1]
            self.decoder = nn.Sequential(
                mlp([d + cfg.n_classes, *reversed(cfg.hidden), out_channels * h * w], cfg.activation),
                nn.Unflatten(1, (out_channels, h, w)))
        else:
            self.encoder_body = ConvEncoder(cfg)
            self.features = self.encoder_body.width
            self.decoder = ConvDecoder(cfg, self.encoder_body, out_channels)
        # Gaussian: (mu, log sigma^2) per dimension; discrete latents: one logit per dimension.
        self.encoder_head = nn.Linear(self.features, 2 * d if cfg.latent == "gaussian" else d)
        # The prior lives in buffers so it follows the model to its device.
        self.register_buffer("prior_loc", torch.zeros(d))
        self.register_buffer("prior_scale", torch.ones(d))
        initialize(self, cfg.init)

    @property
    def latent_dim(self) -> int:
        return self.cfg.latent_dim

    def prior(self):
        """p(z): N(0, I); Bernoulli(1/2) per dimension; or uniform over the d categories."""
        if self.cfg.latent == "bernoulli":
            return Bernoulli(probs=torch.full_like(self.prior_loc, 0.5), validate_args=False)
        if self.cfg.latent == "categorical":
            return OneHotCategorical(probs=torch.full_like(self.prior_loc, 1 / self.latent_dim), validate_args=False)
        return Normal(self.prior_loc, self.prior_scale, validate_args=False)

    def with_label(self, x, y):
        """Concatenate a one-hot label to an input (flat vectors) or as constant planes (images)."""
        if not self.cfg.n_classes:
            return x
        if y is None:
            raise ConfigError("this model is conditional: pass the labels y")
        onehot = F.one_hot(y, self.cfg.n_classes).to(x.dtype)
        if x.dim() == 2:
            return torch.cat([x, onehot], 1)
        if self.cfg.arch == "mlp":
            return torch.cat([x.flatten(1), onehot], 1)
        return torch.cat([x, onehot[:, :, None, None].expand(-1, -1, *x.shape[2:])], 1)

    def encode_features(self, x, y=None) -> torch.Tensor:
        """The last hidden layer of the encoder, h(x)."""
        return self.encoder_body(self.with_label(x, y))

    def encode(self, x, y=None) -> Normal:
        """q(z|x) = N(mu(x), diag sigma^2(x)); batch shape (B, d) so KL can be read per dimension."""
        return self.posterior(self.encoder_head(self.encode_features(x, y)))

    def posterior(self, params):
        """Encoder-head output -> q(z|x): Normal from (mu, log sigma^2), with latent clipping when
        configured; Bernoulli or one-hot categorical from logits for discrete latents."""
        if self.cfg.latent == "bernoulli":
            return Bernoulli(logits=params, validate_args=False)
        if self.cfg.latent == "categorical":
            return OneHotCategorical(logits=params, validate_args=False)
        mu, logvar = params.chunk(2, dim=-1)
        if self.cfg.latent_clip > 0:
            # Latent clipping (Ucar 2019, sec. 4.1): shrink long means back onto the ball of radius c sqrt(d).
            bound = self.cfg.latent_clip * math.sqrt(self.latent_dim)
            mu = mu * (bound / mu.norm(dim=-1, keepdim=True).clamp(min=1e-12)).clamp(max=1.0)
        return Normal(mu, torch.exp(0.5 * logvar), validate_args=False)

    def decode(self, z, y=None) -> Independent:
        """p(x|z), a distribution over whole images (event shape C x H x W)."""
        out = self.decoder(self.with_label(z, y))
        if self.cfg.likelihood == "bernoulli":
            # Bernoulli on logits: log_prob is -BCE-with-logits, stable for any logit.
            return Independent(Bernoulli(logits=out, validate_args=False), 3)
        # Kingma & Welling (2014), app. C.2, squash the Frey Faces decoder's mean into (0, 1) with a sigmoid:
        # pixels live there, and an unbounded mean decodes codes between the training images to noise.
        squash = torch.sigmoid if self.cfg.gaussian_mean == "sigmoid" else (lambda t: t)
        if self.cfg.obs_std > 0:
            return Independent(Normal(squash(out), self.cfg.obs_std, validate_args=False), 3)
        loc, raw_std = out.chunk(2, dim=1)
        loc = squash(loc)
        # A floor on the std keeps the density bounded, so one flat pixel cannot send the loss to -inf.
        return Independent(Normal(loc, F.softplus(raw_std) + 1e-2, validate_args=False), 3)

    def mean_image(self, z, y=None) -> torch.Tensor:
        """The decoder's mean, the picture to show for a latent code."""
        return self.decode(z, y).base_dist.mean

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, y=None) -> torch.Tensor:
        """n pictures decoded from the prior; a conditional model cycles through the classes unless given y."""
        device = self.prior_loc.device
        if self.cfg.latent == "gaussian":
            z = torch.randn(n, self.latent_dim, device=device, generator=generator)
        elif self.cfg.latent == "bernoulli":
            z = torch.bernoulli(torch.full((n, self.latent_dim), 0.5, device=device), generator=generator)
        else:
            pick = torch.randint(self.latent_dim, (n,), device=device, generator=generator)
            z = torch.nn.functional.one_hot(pick, self.latent_dim).float()
        if self.cfg.n_classes and y is None:
            y = torch.arange(n, device=device) % self.cfg.n_classes
        return self.mean_image(z, y)

    @torch.no_grad()
    def reconstruct(self, x, y=None) -> torch.Tensor:
        return self.mean_image(self.encode(x, y).mean, y)


def initialize(model: nn.Module, scheme: str):
    """'he': He et al. (2015) normal init for ReLU nets. 'vlae': the VLAE recipe (Park et al. 2019,
    supplement sec. 2): He init that preserves the variance of the backward pass (fan-out), with
    2^(1/3) "to account for the network structure of two ReLU layers and one linear layer"; as in
    the authors' implementation, 2^(1/3) is passed as kaiming's `a`, giving a gain of
    sqrt(2 / (1 + 2^(2/3))) ~ 0.88. It stops the KL gradient swamping the reconstruction gradient
    early in training, which otherwise collapses large models."""
    if scheme == "default":
        return
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            if scheme == "he":
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            else:
                nn.init.kaiming_uniform_(m.weight, a=2 ** (1 / 3), mode="fan_out", nonlinearity="leaky_relu")
            nn.init.zeros_(m.bias)
