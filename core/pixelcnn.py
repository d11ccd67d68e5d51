"""A PixelCNN decoder: p(x|z) = prod_i p(x_i | x_<i, z), the pixels of a one-channel binary image in
raster order (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN Decoders").

Such a decoder can model the images without z at all, which is why posterior collapse is most common with
it (He et al. 2019). Each layer is a masked convolution with the gated activation

    h' = h + W_o (tanh(W_f * h + V_f m + U_f z) . sigmoid(W_g * h + V_g m + U_g z)),

conditioned on z at every layer: always through a per-channel bias U z (van den Oord et al.'s global
conditioning), and with `map` also through m, the picture the plain decoder makes of z (PixelVAE,
Gulrajani et al. 2017), pixel by pixel. The map hands every layer a template of the image, so z stays in use
far longer; the bias alone is the harder case, where the collapse shows. A masked stack has the blind spot van
den Oord et al. remove with two stacks; it is kept for its simplicity (the pixels it cannot see are still
modelled through the ones it can).

The likelihood needs x: log_prob runs one teacher-forced pass over the image; sample draws pixel by pixel,
recomputing only the window of pixels the next one can see.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Distribution, constraints


class MaskedConv2d(nn.Conv2d):
    """A convolution whose output at a pixel reads only the pixels before it in raster order ("A", the first
    layer) or those and itself ("B", later layers, whose own pixel holds only what came before)."""

    def __init__(self, mask: str, in_channels: int, out_channels: int, kernel: int):
        super().__init__(in_channels, out_channels, kernel, padding=kernel // 2)
        keep = torch.zeros(kernel, kernel)
        centre = kernel // 2
        keep[:centre] = 1                                   # the rows above
        keep[centre, :centre + (mask == "B")] = 1           # the left of this row (and its own pixel for B)
        self.register_buffer("mask", keep)

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class GatedLayer(nn.Module):
    def __init__(self, mask: str, in_channels: int, channels: int, kernel: int, map_channels: int, latent: int):
        super().__init__()
        self.conv = MaskedConv2d(mask, in_channels, 2 * channels, kernel)
        # V m: the decoder's picture of z, pixel by pixel (none without a map)
        self.from_map = nn.Conv2d(map_channels, 2 * channels, 1) if map_channels else None
        self.from_z = nn.Linear(latent, 2 * channels)             # U z: z itself, the same at every pixel
        self.out = nn.Conv2d(channels, channels, 1)
        self.residual = in_channels == channels

    def forward(self, h, m, z):
        pre = self.conv(h) + self.from_z(z)[:, :, None, None]
        f, g = (pre if m is None else pre + self.from_map(m)).chunk(2, 1)
        out = self.out(torch.tanh(f) * torch.sigmoid(g))
        return h + out if self.residual else out


class PixelCNN(nn.Module):
    """Gated masked layers over a binary image x (B, 1, H, W), conditioned on the code z (B, d) and, where
    map_channels > 0, the map m (B, C, H, W); returns the logit of each pixel given the pixels before it."""

    def __init__(self, kernels: tuple[int, ...], channels: int, map_channels: int, latent: int):
        super().__init__()
        self.layers = nn.ModuleList(
            GatedLayer("A" if i == 0 else "B", 1 if i == 0 else channels, channels, k, map_channels, latent)
            for i, k in enumerate(kernels))
        self.head = nn.Conv2d(channels, 1, 1)
        # Rows above a pixel that its logit can depend on: each layer reaches kernel // 2 rows further up.
        self.reach = sum(k // 2 for k in kernels)

    def forward(self, x, m, z):
        h = x
        for layer in self.layers:
            h = layer(h, m, z)
        return self.head(h)

    @torch.no_grad()
    def sample(self, m, z, noise):
        """Images drawn pixel by pixel: x_i = 1 where noise_i < p(x_i = 1 | x_<i, z). The same noise (B, 1, H, W)
        for every code, so a change of z changes only what z changes. Each pixel reruns the layers on the
        window it can see (reach rows up, reach columns either side), not on the whole image."""
        x = torch.zeros_like(noise)
        height, width = x.shape[-2:]
        r = self.reach
        for row in range(height):
            top = max(0, row - r)
            for col in range(width):
                # The window's own edges are padded with zeros, which reaches r pixels in: not this one.
                left, right = max(0, col - r), min(width, col + r + 1)
                window = (..., slice(top, row + 1), slice(left, right))
                logit = self(x[window], None if m is None else m[window], z)[..., -1, col - left]
                x[..., row, col] = (noise[..., row, col] < torch.sigmoid(logit)).float()
        return x


class PixelCNNBernoulli(Distribution):
    """p(x|z) of a PixelCNN decoder over whole images: batch shape (B,), event shape (1, H, W). log_prob is
    one teacher-forced pass over x; `probs(x)` the per-pixel p(x_i = 1 | x_<i, z) of that pass."""
    arg_constraints = {}
    support = constraints.independent(constraints.boolean, 3)

    def __init__(self, net: PixelCNN, m: torch.Tensor | None, z: torch.Tensor, image_shape: tuple[int, int, int]):
        self.net, self.m, self.z = net, m, z
        super().__init__(batch_shape=z.shape[:1], event_shape=image_shape, validate_args=False)

    def logits(self, x):
        x = x.expand(self.batch_shape + self.event_shape)
        return self.net(x, self.m, self.z)

    def log_prob(self, x):
        x = x.expand(self.batch_shape + self.event_shape)
        return -F.binary_cross_entropy_with_logits(self.logits(x), x, reduction="none").flatten(1).sum(1)

    def probs(self, x):
        return torch.sigmoid(self.logits(x))

    def sample(self, sample_shape=(), generator=None, noise=None):
        if tuple(sample_shape) != ():
            raise ValueError("draw one image per code: repeat the codes for more")
        if noise is None:
            noise = torch.rand(self.batch_shape + self.event_shape, device=self.z.device, generator=generator)
        return self.net.sample(self.m, self.z, noise)
