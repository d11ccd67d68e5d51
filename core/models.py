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

from . import limits
from .errors import ConfigError
from .pixelcnn import PixelCNN, PixelCNNBernoulli
from .posterior import as_event

ACTIVATIONS = {"relu": nn.ReLU, "leaky-relu": nn.LeakyReLU, "tanh": nn.Tanh}
LIKELIHOODS = ("bernoulli", "gaussian", "mse")
INITS = ("default", "he", "vlae", "vlae-code")
LATENTS = ("gaussian", "bernoulli", "categorical")
DECODER_VARIANCES = ("softplus", "tanh", "shared")
PIXELCNN_Z = ("map", "bias")
# "mse": the squared error as a density. A Gaussian of variance 1/2 has
# -log p(x|z) = ||x - x'||^2 + (J/2) log pi, so training on it is training on the summed squared error
# (Ucar 2019, app. B) while every bound stays a bound, in nats.
MSE_STD = 0.5 ** 0.5


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "mlp"                          # "mlp" or "conv"
    hidden: tuple[int, ...] = (512, 256)       # MLP widths, input side first; the decoder reverses them
    channels: tuple[int, ...] = (32, 64, 128)  # conv widths, one layer each
    activation: str = "relu"                   # "relu", "leaky-relu" or "tanh"; the encoder's, and the decoder's unless set below
    latent_dim: int = 20
    likelihood: str = "auto"                   # "bernoulli" (logits), "gaussian", "mse" (sigmoid mean, variance 1/2), or "auto": the dataset's
    obs_std: float = 0.0                       # Gaussian only: 0 learns a per-pixel std, > 0 fixes it
    gaussian_mean: str = "identity"            # Gaussian only: "sigmoid" keeps the mean in (0, 1), for pixels in [0, 1]
    init: str = "default"                      # "default" (PyTorch), "he", "vlae" (He, gain 2^(1/3)) or "vlae-code" (below)
    image_shape: tuple[int, int, int] = (1, 28, 28)
    n_classes: int = 0                         # > 0: encoder and decoder also see a one-hot label (CVAE)
    latent_clip: float = 0.0                   # c > 0: rescale each encoder mean so ||mu|| <= c sqrt(d)
    latent: str = "gaussian"                   # "gaussian"; "bernoulli": z in {0,1}^d; "categorical": one of d
    decoder_activation: str = ""               # "": the encoder's activation
    leaky_slope: float = 0.01                  # negative slope of "leaky-relu" (Ucar 2019 uses 0.2)
    batch_norm: bool = False                   # batch normalization after every hidden layer of both networks
    kernel: int = 4                            # conv kernel size; padding (kernel - 1) // 2
    strides: tuple[int, ...] = ()              # conv strides per encoder layer; (): 2 for each
    decoder_channels: tuple[int, ...] = ()     # widths the transposed convs read (the first is the linear head's);
                                               # the last layer writes the image. (): the encoder's mirror
    decoder_strides: tuple[int, ...] = ()      # their strides; (): the encoder's, reversed
    latent_below: int = 0                      # > 0: a second stochastic layer z1 of this size between x and the latent
                                               # z (Burda et al. 2016's two-layer IWAE); `hidden` sits between x and z1
    hidden_above: tuple[int, ...] = ()         # with latent_below: the widths between z1 and z (decoder: reversed); unused without
    decoder_variance: str = "softplus"         # learned Gaussian std: "softplus" (std = softplus + 0.01), or
                                               # "tanh" (log sigma^2 = tanh, so sigma^2 in (1/e, e): seed "Improving VAEs", sec. 4.1), or
                                               # "shared": one learned log sigma^2 for every pixel, from 0 (the VLAE authors' code)
    pixelcnn_layers: int = 0                   # > 0: a PixelCNN of this many gated masked layers reads z and the pixels
                                               # before each one (core.pixelcnn); binary images only
    pixelcnn_channels: int = 32                # its channels
    pixelcnn_kernels: tuple[int, ...] = ()     # its kernel sizes, one a layer, odd; (): 7 for the first, 3 after (van den Oord et al.)
    pixelcnn_z: str = "map"                    # how z reaches every layer: "map", the plain decoder's picture of z and a
                                               # bias U z; "bias", U z alone (no plain decoder: the collapse shows)
    skip_z: bool = False                       # z enters every layer of an MLP decoder, not only the first (Dieng et al. 2019)

    def __post_init__(self):
        # JSON turns tuples into lists; accept both so a config round-trips through a checkpoint.
        for name in ("hidden", "channels", "image_shape", "strides", "decoder_channels", "decoder_strides", "hidden_above",
                     "pixelcnn_kernels"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        n_conv = len(self.channels)
        # The table of limits first: a sidecar or a flag asking for a billion units is refused before
        # anything is built from it.
        limits.check("latent", self.latent_dim, "latent size")
        limits.check("layers", len(self.hidden), "the number of hidden layers")
        limits.check("layers", len(self.hidden_above), "the number of hidden layers above the lower latent")
        if self.latent_below:
            limits.check("latent", self.latent_below, "the lower latent's size")
        limits.check("layers", len(self.decoder_channels), "the number of decoder conv layers")
        for width in self.hidden + self.channels + self.decoder_channels + self.hidden_above:
            limits.check("width", width, "a layer width")
        limits.check("kernel", self.kernel, "kernel size")
        limits.check("layers", self.pixelcnn_layers, "the number of PixelCNN layers")
        limits.check("width", self.pixelcnn_channels, "the PixelCNN's channels")
        for kernel in self.pixelcnn_kernels:
            limits.check("kernel", kernel, "a PixelCNN kernel size")
        for stride in self.strides + self.decoder_strides:
            limits.check("stride", stride, "a stride")
        limits.check("width", self.n_classes, "the number of classes")
        check = [
            (self.arch in ("mlp", "conv"), f"arch must be 'mlp' or 'conv', not {self.arch!r}"),
            (self.latent_dim >= 1, f"latent size must be at least 1, not {self.latent_dim}"),
            (self.activation in ACTIVATIONS, f"activation must be one of {', '.join(ACTIVATIONS)}"),
            (self.decoder_activation in ("",) + tuple(ACTIVATIONS),
             f"decoder activation must be one of {', '.join(ACTIVATIONS)}, or empty for the encoder's"),
            (math.isfinite(self.leaky_slope) and 0 <= self.leaky_slope < 1, "leaky slope must be in [0, 1)"),
            (self.likelihood in LIKELIHOODS + ("auto", "other"),  # other: a user's own decoder (core.protocol)
             f"likelihood must be one of {', '.join(LIKELIHOODS)} or auto"),
            (self.init in INITS, f"init must be one of {', '.join(INITS)}"),
            (math.isfinite(self.obs_std) and self.obs_std >= 0, "obs_std must be a finite number >= 0"),
            (self.gaussian_mean in ("identity", "sigmoid"), "gaussian_mean must be 'identity' or 'sigmoid'"),
            (self.decoder_variance in DECODER_VARIANCES, f"decoder variance must be one of {', '.join(DECODER_VARIANCES)}"),
            (all(w >= 1 for w in self.hidden + self.channels + self.decoder_channels), "layer widths must be at least 1"),
            (len(self.image_shape) == 3 and min(self.image_shape) >= 1, "image shape must be C, H, W"),
            (self.n_classes >= 0, "n_classes must be >= 0"),
            (self.latent in LATENTS, f"latent must be one of {', '.join(LATENTS)}"),
            (self.latent == "gaussian" or self.latent_clip == 0, "latent clipping needs a Gaussian latent"),
            (self.latent != "categorical" or self.latent_dim >= 2, "a categorical latent needs at least 2 categories"),
            (math.isfinite(self.latent_clip) and self.latent_clip >= 0, "latent clip c must be a finite number >= 0"),
            (self.arch != "conv" or 1 <= n_conv <= 5, "a conv net needs 1 to 5 layers"),
            (self.kernel >= 1, "kernel size must be at least 1"),
            (not self.strides or len(self.strides) == n_conv, f"give one stride per conv layer ({n_conv})"),
            (all(s >= 1 for s in self.strides + self.decoder_strides), "strides must be at least 1"),
            (len(self.decoder_strides) == len(self.decoder_channels),
             "give the decoder's channels and strides together, one stride per layer"),
            (self.latent_below >= 0, "the lower latent's size must be >= 0"),
            (not self.latent_below or (self.arch == "mlp" and self.latent == "gaussian" and not self.n_classes
                                       and not self.latent_clip and not self.batch_norm),
             "two stochastic layers (latent_below) need an MLP with Gaussian latents, no labels, no latent clipping "
             "and no batch norm"),
            (not self.pixelcnn_kernels or len(self.pixelcnn_kernels) == self.pixelcnn_layers,
             f"give one PixelCNN kernel size per layer ({self.pixelcnn_layers})"),
            (all(k % 2 == 1 for k in self.pixelcnn_kernels), "PixelCNN kernel sizes must be odd (the pixel sits at the centre)"),
            (self.pixelcnn_channels >= 1, "the PixelCNN needs at least 1 channel"),
            (self.pixelcnn_z in PIXELCNN_Z, f"pixelcnn_z must be one of {', '.join(PIXELCNN_Z)}"),
            (not self.pixelcnn_layers or (self.image_shape[0] == 1 and self.likelihood in ("bernoulli", "auto")
                                          and not self.n_classes and not self.latent_below),
             "a PixelCNN decoder models binary one-channel images (bernoulli likelihood), without labels or a second "
             "stochastic layer"),
            (not self.skip_z or (self.arch == "mlp" and not self.batch_norm and not self.latent_below),
             "skip connections from z (skip_z) need an MLP decoder without batch norm or a second stochastic layer"),
        ]
        for ok, message in check:
            if not ok:
                raise ConfigError(message)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def pixelcnn_kernel_sizes(self) -> tuple[int, ...]:
        return self.pixelcnn_kernels or (7, *(3,) * (self.pixelcnn_layers - 1))[:self.pixelcnn_layers]

    @property
    def encoder_strides(self) -> tuple[int, ...]:
        return self.strides or (2,) * len(self.channels)

    def act(self, decoder: bool = False) -> nn.Module:
        """A fresh activation layer: the encoder's, or the decoder's."""
        name = (self.decoder_activation or self.activation) if decoder else self.activation
        return nn.LeakyReLU(self.leaky_slope) if name == "leaky-relu" else ACTIVATIONS[name]()


def mlp(widths: list[int], cfg: ModelConfig, decoder: bool = False, last_act: bool = False) -> nn.Sequential:
    """Linear layers with batch norm (when configured) and an activation between them; after the last
    only when last_act."""
    layers = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2 or last_act:
            layers += [nn.BatchNorm1d(b)] if cfg.batch_norm else []
            layers.append(cfg.act(decoder))
    return nn.Sequential(*layers)


class SkipMLP(nn.Module):
    """Dieng et al. (2019), eq. 5: every layer of the decoder reads its input (z) beside the layer below,
    h_l = act(W_l h_{l-1} + U_l z), so the path from z to the image is one layer long wherever it is read."""

    def __init__(self, widths: list[int], cfg: ModelConfig):
        super().__init__()
        first = widths[0]
        self.layers = nn.ModuleList(nn.Linear(a + (first if i else 0), b) for i, (a, b) in enumerate(zip(widths, widths[1:])))
        self.acts = nn.ModuleList(cfg.act(decoder=True) for _ in self.layers[:-1])

    def forward(self, z):
        h = self.layers[0](z)
        for act, layer in zip(self.acts, self.layers[1:]):
            h = layer(torch.cat([act(h), z], -1))
        return h


def conv_size(n: int, kernel: int, stride: int) -> int:
    """The side of a convolution's output, padding (kernel - 1) // 2."""
    return (n + 2 * ((kernel - 1) // 2) - kernel) // stride + 1


class ConvEncoder(nn.Module):
    """Convolutions (batch norm when configured, then the activation), flattened: the features the
    encoder head reads."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c, h, w = cfg.image_shape
        c += cfg.n_classes  # a label enters as constant one-hot planes
        layers, self.sizes = [], [(h, w)]
        for width, stride in zip(cfg.channels, cfg.encoder_strides):
            layers.append(nn.Conv2d(c, width, cfg.kernel, stride=stride, padding=(cfg.kernel - 1) // 2))
            layers += [nn.BatchNorm2d(width)] if cfg.batch_norm else []
            layers.append(cfg.act())
            c, h, w = width, conv_size(h, cfg.kernel, stride), conv_size(w, cfg.kernel, stride)
            self.sizes.append((h, w))
        if h < 1 or w < 1:
            raise ConfigError(f"{len(cfg.channels)} conv layers shrink a {cfg.image_shape[1:]} image to nothing")
        self.conv = nn.Sequential(*layers)
        self.flat = (c, h, w)
        self.width = c * h * w

    def forward(self, x):
        return self.conv(x).flatten(1)


class ConvDecoder(nn.Module):
    """A linear map up to the first feature map, then transposed convolutions. By default it mirrors
    the encoder; given its own channels and strides, its sizes are those an encoder with the reversed
    strides would have, so that every output padding restores a size the convolutions rounded down."""

    def __init__(self, cfg: ModelConfig, out_channels: int):
        super().__init__()
        _, h, w = cfg.image_shape
        channels = cfg.decoder_channels or (cfg.channels[-1], *reversed(cfg.channels[:-1]))
        strides = cfg.decoder_strides or tuple(reversed(cfg.encoder_strides))
        sizes = [(h, w)]
        for stride in reversed(strides):
            h, w = conv_size(h, cfg.kernel, stride), conv_size(w, cfg.kernel, stride)
            sizes.append((h, w))
        sizes.reverse()
        c = channels[0]
        self.flat = (c, h, w)
        self.head = nn.Sequential(nn.Linear(cfg.latent_dim + cfg.n_classes, c * h * w),
                                  *([nn.BatchNorm1d(c * h * w)] if cfg.batch_norm else []), cfg.act(decoder=True))
        widths = list(channels[1:]) + [out_channels]
        pad = (cfg.kernel - 1) // 2
        layers = []
        for i, (width, stride) in enumerate(zip(widths, strides)):
            (h0, w0), (h1, w1) = sizes[i], sizes[i + 1]
            # A transposed conv gives (n - 1) s - 2 pad + kernel + output_padding; pick the padding that lands on the size.
            extra = [t - ((n - 1) * stride - 2 * pad + cfg.kernel) for n, t in ((h0, h1), (w0, w1))]
            layers.append(nn.ConvTranspose2d(c, width, cfg.kernel, stride=stride, padding=pad, output_padding=tuple(extra)))
            if i < len(widths) - 1:
                layers += [nn.BatchNorm2d(width)] if cfg.batch_norm else []
                layers.append(cfg.act(decoder=True))
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
        shared_std = learned_std and cfg.decoder_variance == "shared"
        out_channels = 2 * c if learned_std and not shared_std else c  # a per-pixel std takes a second output map
        # encoder: x -> features h (encoder_body) -> latent parameters (encoder_head). Flows and
        # iterative refinements read h; conditional models concatenate a one-hot label to the input.
        if cfg.arch == "mlp":
            widths = [c * h * w + cfg.n_classes, *cfg.hidden]
            self.encoder_body = nn.Sequential(nn.Flatten(), mlp(widths, cfg, last_act=bool(cfg.hidden)))
            self.features = widths[-1]
            # With a lower latent z1 the decoder reads z1, and z reaches it through p(z1|z) (build_layer_below).
            widths = [(cfg.latent_below or d) + cfg.n_classes, *reversed(cfg.hidden), out_channels * h * w]
            self.decoder = nn.Sequential(SkipMLP(widths, cfg) if cfg.skip_z else mlp(widths, cfg, decoder=True),
                                         nn.Unflatten(1, (out_channels, h, w)))
        else:
            self.encoder_body = ConvEncoder(cfg)
            self.features = self.encoder_body.width
            self.decoder = ConvDecoder(cfg, out_channels)
        if cfg.latent_below:
            self.build_layer_below(cfg)
        if cfg.pixelcnn_layers:
            # p(x|z) = prod_i p(x_i | x_<i, z): z, and the plain decoder's map of it, condition every masked layer
            by_map = cfg.pixelcnn_z == "map"
            self.pixelcnn = PixelCNN(cfg.pixelcnn_kernel_sizes, cfg.pixelcnn_channels, out_channels if by_map else 0, d)
            if not by_map:
                self.decoder = nn.Sequential()  # no plain decoder: z enters the layers as a bias alone
        # Gaussian: (mu, log sigma^2) per dimension; discrete latents: one logit per dimension.
        self.encoder_head = nn.Linear(self.upper_features if cfg.latent_below else self.features,
                                      2 * d if cfg.latent == "gaussian" else d)
        if shared_std:
            # held by the decoder, so whatever reads the decoder's parameters sees it too
            self.decoder.log_var = nn.Parameter(torch.zeros(()))
        # The prior lives in buffers so it follows the model to its device.
        self.register_buffer("prior_loc", torch.zeros(d))
        self.register_buffer("prior_scale", torch.ones(d))
        initialize(self, cfg.init)

    def build_layer_below(self, cfg: ModelConfig):
        """Burda et al. (2016), sec. 5: x -> hidden -> z1 -> hidden_above -> z on the way up, q(z1|x) q(z|z1);
        z -> reversed(hidden_above) -> z1 -> reversed(hidden) -> x on the way down, p(z) p(z1|z) p(x|z1). Every
        stochastic layer is a diagonal Gaussian from (mu, log sigma^2)."""
        d, d1 = cfg.latent_dim, cfg.latent_below
        self.below_head = nn.Linear(self.features, 2 * d1)                      # q(z1|x)
        self.encoder_above = mlp([d1, *cfg.hidden_above], cfg, last_act=bool(cfg.hidden_above))  # z1 -> features of q(z|z1)
        self.upper_features = cfg.hidden_above[-1] if cfg.hidden_above else d1
        self.decoder_above = mlp([d, *reversed(cfg.hidden_above), 2 * d1], cfg, decoder=True)    # p(z1|z)

    @property
    def latent_dim(self) -> int:
        return self.cfg.latent_dim

    @property
    def autoregressive(self) -> bool:
        """True for a PixelCNN decoder: log p(x|z) needs x (teacher forcing), and a picture is drawn pixel by pixel."""
        return self.cfg.pixelcnn_layers > 0

    @property
    def layered(self) -> bool:
        """True for two stochastic layers: a code is then (z1, z), d1 + d numbers (layer_codes splits it)."""
        return self.cfg.latent_below > 0

    def layer_codes(self, code):
        """A joint code (..., d1 + d) -> (z1, z)."""
        return code[..., :self.cfg.latent_below], code[..., self.cfg.latent_below:]

    def layer_below(self, z):
        """p(z1|z), a diagonal Gaussian with batch shape (..., d1)."""
        mu, logvar = self.decoder_above(z).chunk(2, dim=-1)
        return Normal(mu, torch.exp(0.5 * logvar), validate_args=False)

    def log_prior(self, z):
        """log p(z) of codes (..., d): summed over dimensions; with a lower latent, log p(z1|z) + log p(z) of
        joint codes (z1, z)."""
        if not self.layered:
            return as_event(self.prior()).log_prob(z)
        z1, top = self.layer_codes(z)
        shape = top.shape[:-1]
        below = self.layer_below(top.reshape(-1, top.shape[-1]))
        return (Independent(below, 1).log_prob(z1.reshape(-1, z1.shape[-1])).view(shape)
                + Independent(self.prior(), 1).log_prob(top))

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

    def encoder_parameters(self) -> list[nn.Parameter]:
        """The inference side's parameters (the gradient diagnostics split the gradient by side)."""
        return [*self.encoder_body.parameters(), *self.encoder_head.parameters()]

    def decoder_parameters(self) -> list[nn.Parameter]:
        return list(self.decoder.parameters()) + (list(self.pixelcnn.parameters()) if self.autoregressive else [])

    def encode_features(self, x, y=None) -> torch.Tensor:
        """The last hidden layer of the encoder, h(x)."""
        return self.encoder_body(self.with_label(x, y))

    def encode(self, x, y=None) -> Normal:
        """q(z|x) = N(mu(x), diag sigma^2(x)); batch shape (B, d) so KL can be read per dimension."""
        if self.layered:
            raise ConfigError("this model has two stochastic layers: q(z|x) is not one Gaussian; read its posterior "
                              "(core.posterior.Layered) and train it with iwae (k = 1 is its ELBO)")
        return self.posterior(self.encoder_head(self.encode_features(x, y)))

    def encode_below(self, x) -> Normal:
        """q(z1|x) of a model with two stochastic layers."""
        return self.posterior(self.below_head(self.encode_features(x)))

    def encode_above(self, z1) -> Normal:
        """q(z|z1) of a model with two stochastic layers."""
        return self.posterior(self.encoder_head(self.encoder_above(z1)))

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
        """p(x|z), a distribution over whole images (event shape C x H x W). With two stochastic layers, z is
        a joint code (z1, z) and p(x|z1) is read; a code of the top layer alone goes through the mean of
        p(z1|z), the picture Explore and the samples show."""
        if self.layered:
            z = self.layer_codes(z)[0] if z.shape[-1] == self.cfg.latent_below + self.latent_dim else self.layer_below(z).mean
        if self.autoregressive:
            m = self.decoder(z) if self.cfg.pixelcnn_z == "map" else None
            return PixelCNNBernoulli(self.pixelcnn, m, z, self.cfg.image_shape)
        return self.likelihood(self.decoder(self.with_label(z, y)))

    def likelihood(self, out) -> Independent:
        """The decoder's output -> p(x|z) over whole images."""
        if self.cfg.likelihood == "bernoulli":
            # Bernoulli on logits: log_prob is -BCE-with-logits, stable for any logit.
            return Independent(Bernoulli(logits=out, validate_args=False), 3)
        # Kingma & Welling (2014), app. C.2, squash the Frey Faces decoder's mean into (0, 1) with a sigmoid:
        # pixels live there, and an unbounded mean decodes codes between the training images to noise.
        if self.cfg.likelihood == "mse":
            return Independent(Normal(torch.sigmoid(out), MSE_STD, validate_args=False), 3)
        squash = torch.sigmoid if self.cfg.gaussian_mean == "sigmoid" else (lambda t: t)
        if self.cfg.obs_std > 0:
            return Independent(Normal(squash(out), self.cfg.obs_std, validate_args=False), 3)
        if self.cfg.decoder_variance == "shared":
            # One variance for all pixels cannot shrink onto a pixel that never changes (a constant
            # MNIST border), which sends a per-pixel variance to its floor.
            return Independent(Normal(squash(out), torch.exp(0.5 * self.decoder.log_var).expand_as(out),
                                      validate_args=False), 3)
        loc, raw = out.chunk(2, dim=1)
        loc = squash(loc)
        if self.cfg.decoder_variance == "tanh":
            # Seed "Improving VAEs" bounds the Frey Faces decoder's log-variance with a tanh, having seen
            # its gradients explode as the variance moved; sigma^2 stays in (1/e, e).
            return Independent(Normal(loc, torch.exp(0.5 * torch.tanh(raw)), validate_args=False), 3)
        # A floor on the std keeps the density bounded, so one flat pixel cannot send the loss to -inf.
        return Independent(Normal(loc, F.softplus(raw) + 1e-2, validate_args=False), 3)

    def mean_image(self, z, y=None) -> torch.Tensor:
        """The decoder's mean, the picture to show for a latent code. A PixelCNN has no mean in closed form:
        its picture is a draw, pixel by pixel, with one fixed noise image for every code (PICTURE_NOISE_SEED),
        so a change of z changes only what z changes."""
        p = self.decode(z, y)
        if self.autoregressive:
            g = torch.Generator().manual_seed(PICTURE_NOISE_SEED)
            noise = torch.rand((1, *p.event_shape), generator=g).to(z.device).expand(p.batch_shape + p.event_shape)
            return p.sample(noise=noise)
        return p.base_dist.mean

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
        if self.layered:  # p(x|z1) at the mean of q(z1|x)
            return self.likelihood(self.decoder(self.encode_below(x).mean)).base_dist.mean
        return self.mean_image(self.encode(x, y).mean, y)


PICTURE_NOISE_SEED = 0  # the noise a PixelCNN's pictures are drawn with (mean_image)


VLAE_GAIN = 2 ** (1 / 3)


def initialize(model: nn.Module, scheme: str):
    """'he': He et al. (2015) normal init for ReLU nets. The VLAE recipe (Park et al. 2019, supplement
    sec. 2) is He init that preserves the variance of the backward pass (fan-out) "with gain of
    2^(1/3) to account for the network structure that consists of two ReLU layers and one linear
    layer": each ReLU layer scales the gradient's variance by g^2 / 2 and the linear one by g^2, so
    g^6 / 4 = 1. It keeps the KL gradient from swamping the reconstruction gradient early in
    training, which otherwise collapses large models. Two readings:
    - 'vlae', as the supplement words it: normal, std = 2^(1/3) / sqrt(fan_out), biases 0;
    - 'vlae-code', as the authors' code does it: kaiming_uniform_ with 2^(1/3) passed as the
      leaky-ReLU slope, so the gain is sqrt(2 / (1 + 2^(2/3))) ~ 0.88; biases left at PyTorch's."""
    if scheme == "default":
        return
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            if scheme == "he":
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif scheme == "vlae":
                fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight)[1]
                nn.init.normal_(m.weight, std=VLAE_GAIN / math.sqrt(fan_out))
                nn.init.zeros_(m.bias)
            else:
                nn.init.kaiming_uniform_(m.weight, a=VLAE_GAIN, mode="fan_out", nonlinearity="leaky_relu")
