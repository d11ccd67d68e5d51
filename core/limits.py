"""One table of limits: every size a user can type, upload or write into a checkpoint has a maximum here,
and a run's memory is estimated from its config before any of it is allocated.

A class shares one server, so one student's `--latent 1000000000` or a 500 KB .npz that unpacks to 7 GB
must be one line of refusal, not the server's memory. The CLI flags, the dashboard's widgets, the URL
values, sweep specs and checkpoint sidecars all check against these numbers; nothing else defines a
maximum. The memory budget alone can be moved by the operator ($VAELAB_MAX_MEMORY_MB).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from . import settings
from .errors import ConfigError


@dataclass(frozen=True)
class Limit:
    maximum: int
    what: str


LIMITS = {
    # the network
    "latent": Limit(4096, "latent dimensions"),
    "width": Limit(16384, "units of a hidden layer or channels of a conv layer"),
    "layers": Limit(16, "hidden layers of an MLP, or layers of a decoder's convolutions"),
    "kernel": Limit(15, "a convolution's kernel size"),
    "stride": Limit(8, "a convolution's stride"),
    "parameters": Limit(200_000_000, "weights of one network and its objective"),
    # the objectives' knobs (core/objectives: Knob(max=...))
    "k": Limit(5000, "importance samples per image in training"),
    "samples": Limit(10_000, "samples of z per image per step"),
    "flow_steps": Limit(64, "steps of a normalizing flow"),
    "inner_steps": Limit(100, "inner updates per image per step (SA-VAE, VLAE)"),
    "cycles": Limit(10_000, "annealing cycles"),
    # training
    "batch": Limit(65_536, "images per minibatch"),
    "steps": Limit(100_000_000, "optimizer steps of one run"),
    "seed": Limit(2**63 - 1, "a random seed"),
    # your own images
    "image_side": Limit(256, "pixels a side an image is resized to"),
    "image_pixels": Limit(4096 * 4096, "pixels of one image file, read from its header before decoding"),
    "images": Limit(200_000, "images of a folder, members of an archive"),
    "values": Limit(2**27, "pixel values of a dataset of your own (count x channels x height x width); "
                           "512 MiB as float32"),
    "walk": Limit(400_000, "entries looked at while walking a folder"),
    "walk_seconds": Limit(60, "seconds the dashboard spends reading a folder or file of your own"),
    # the pages
    "compare": Limit(8, "models on the Compare page at once (each is measured on the server)"),
    "race": Limit(6, "runs one session trains at once from the Train page"),
    "page_steps": Limit(100_000, "steps of one run trained from the Train page (its sidecar keeps a row per step)"),
    # checkpoints
    "weights_bytes": Limit(4 * 2**30, "bytes of a weights file (the largest network allowed, its optimizer "
                                      "state and kept steps)"),
    "sidecar_bytes": Limit(256 * 2**20, "bytes of a checkpoint's JSON sidecar (a 100,000-step history is tens of MiB)"),
    # sweeps
    "grid": Limit(100_000, "combinations of a sweep's grid, counted before its [[exclude]] rules"),
    "trials": Limit(1000, "trials of one sweep (vaelab sweep --max-trials raises it)"),
    "trial_id": Limit(80, "characters of a trial's name (a longer one is shortened with a hash)"),
}


def table() -> str:
    """The table of limits as Markdown, for the README and `vaelab limits`."""
    rows = ["| limit | maximum | what it bounds |", "| --- | ---: | --- |"]
    rows += [f"| {name} | {limit.maximum:,} | {limit.what} |" for name, limit in LIMITS.items()]
    rows.append(f"| memory | {memory_budget() // 2**20:,} MiB | one run's estimated weights, gradients, "
                 f"optimizer state and activations ($VAELAB_MAX_MEMORY_MB) |")
    return "\n".join(rows)


def maximum(name: str) -> int:
    return LIMITS[name].maximum


def check(name: str, value, label: str | None = None) -> int:
    """value if it is a whole number within [0, its limit]; else one ConfigError naming the limit."""
    limit = LIMITS[name]
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit.maximum:
        raise ConfigError(f"{label or name} must be a whole number up to {limit.maximum:,} "
                          f"({limit.what}), not {value!r}")
    return value


def memory_budget() -> int:
    """Bytes one run may take: $VAELAB_MAX_MEMORY_MB (default 4,096 MiB). A class of thirty on one
    server wants it lower; a researcher alone on a GPU, higher."""
    return (settings.get().max_memory_mb or 4096) * 2**20


def clamp(value: float, low: float, high: float) -> float:
    """A number read from a URL, within a widget's range (NaN goes to low)."""
    return low if math.isnan(value) else min(max(value, low), high)


def activations(model) -> int:
    """Values one image's forward pass keeps for the backward pass, roughly: every layer's output
    (encoder and decoder), the image and its reconstruction."""
    c, h, w = model.image_shape
    pixels = c * h * w
    if model.arch == "conv":
        side, layers = max(h, w), 0
        for width, stride in zip(model.channels, model.encoder_strides):
            side = max(1, side // stride)
            layers += width * side * side
        hidden = 2 * layers
    else:
        hidden = 2 * sum(model.hidden)
    # a PixelCNN layer keeps its two gates' pre-activations, their product and its output at every pixel
    autoregressive = 5 * model.pixelcnn_layers * model.pixelcnn_channels * h * w
    return hidden + autoregressive + 4 * model.latent_dim + 3 * pixels


def samples_per_image(settings: dict) -> int:
    """How many codes an objective draws per image per step (IWAE's k, the discrete estimators' M)."""
    return max(int(settings.get("k", 1) or 1), int(settings.get("samples", 1) or 1))


def run_bytes(model, settings: dict, batch_size: int, parameters: int) -> int:
    """Memory of one training step: weights, gradients and Adam's two moments (4 copies), and the
    activations of batch x samples forward passes (3 copies: outputs, saved tensors, gradients)."""
    return 4 * (4 * parameters + 3 * batch_size * samples_per_image(settings) * activations(model))


def check_memory(model, settings: dict, batch_size: int, parameters: int):
    need, budget = run_bytes(model, settings, batch_size, parameters), memory_budget()
    if need > budget:
        k = samples_per_image(settings)
        raise ConfigError(f"this run would take about {need / 2**30:.1f} GiB ({parameters:,} weights, batch "
                          f"{batch_size:,}{f' x {k:,} samples' if k > 1 else ''}), more than the "
                          f"{budget / 2**30:.1f} GiB a run may take here; make the network, batch or samples "
                          f"smaller (the operator sets VAELAB_MAX_MEMORY_MB)")
