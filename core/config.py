"""The run config, its checks and its named presets: everything needed to repeat a run.

Persistence (checkpoints, the process pipe) and the engine both read this module; it imports neither.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import torch

from . import limits
from .data import DataSpec
from .errors import ConfigError
from .models import ModelConfig


OPTIMIZERS = ("adam", "adagrad")
# torch.compile modes for the step's forward and loss ("off": eager). On a GPU, "reduce-overhead" also
# replays the compiled code as CUDA graphs, which removes the launch gaps that dominate small models.
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class RunConfig:
    """Everything needed to repeat a run; stored in every checkpoint."""
    data: DataSpec = field(default_factory=DataSpec)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: str = "vae"
    settings: dict = field(default_factory=dict)  # the objective's knobs
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"
    optimizer: str = "adam"                # "adam" or "adagrad" (Kingma & Welling 2014 trained with Adagrad)
    betas: tuple[float, float] = (0.9, 0.999)  # Adam's moment decay rates
    compile: str = "off"                   # one of COMPILE_MODES

    def __post_init__(self):
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch size must be a whole number >= 1, not {self.batch_size}")
        limits.check("batch", self.batch_size, "batch size")
        limits.check("seed", self.seed, "the seed")
        check_lr(self.lr)
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {self.optimizer!r}")
        betas = tuple(self.betas)
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
            raise ConfigError(f"Adam's betas must be two numbers in [0, 1), not {self.betas}")
        object.__setattr__(self, "betas", tuple(float(b) for b in betas))
        if self.compile not in COMPILE_MODES:
            raise ConfigError(f"compile must be one of {', '.join(COMPILE_MODES)}, not {self.compile!r}")

    def make_optimizer(self, params) -> torch.optim.Optimizer:
        """The fused implementation where the device has one (one kernel for every parameter's update,
        and it can skip a non-finite step on the device), else the default."""
        params = list(params)
        make = ((lambda **kw: torch.optim.Adagrad(params, lr=self.lr, **kw)) if self.optimizer == "adagrad" else
                (lambda **kw: torch.optim.Adam(params, lr=self.lr, betas=self.betas, **kw)))
        try:
            return make(fused=True)
        except (RuntimeError, ValueError):
            return make()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        d = dict(d)
        d["data"] = DataSpec(**d.get("data", {}))
        d["model"] = ModelConfig(**d.get("model", {}))
        return cls(**d)


# Named presets of the model config. The dashboard trains live on a laptop CPU while a class watches,
# so its default network is smaller than the command line's (ModelConfig's own defaults); its PixelCNN, when
# the page asks for one, is the lesson's: 24 channels, z reaching each layer as a bias (where collapse shows).
PRESETS = {
    "default": ModelConfig(),
    "dashboard": replace(ModelConfig(), hidden=(256, 128), latent_dim=8, pixelcnn_channels=24, pixelcnn_z="bias"),
}


SAVE_EVERY = "5m"  # a periodic, resumable checkpoint every 5 minutes of a run (steps: "500"; off: "0")


def save_every(text) -> tuple[str, float]:
    """'500' -> ('steps', 500); '90s', '5m', '2h' -> ('seconds', ...); '0' -> ('off', 0)."""
    text = str(text).strip().lower()
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if text[-1:] in units:
            value = float(text[:-1]) * units[text[-1]]
            kind = "seconds"
        else:
            value = int(text)
            kind = "steps"
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"save-every must be a number of steps (500) or a time (90s, 5m, 2h), or 0 for off; not {text!r}")
    return ("off", 0) if value == 0 else (kind, value)


LIVE_EVERY = 50    # steps between live diagnostics on the held-out batch (0: off)
LIVE_BATCH = 500   # held-out images the live diagnostics read
SYNC_EVERY = 32   # on a GPU, steps whose logged numbers come to the host in one copy (the CPU checks every step)


EPOCHS = 10  # a run's budget when neither steps nor epochs are given


def steps_per_epoch(batch_size: int, n_train: int) -> int:
    """An epoch is ceil(n_train / batch) steps, the last batch of each pass being the short one."""
    return math.ceil(n_train / min(batch_size, n_train))


def epochs(steps: int, batch_size: int, n_train: int) -> float:
    """Passes over a training set of n_train images, so `train --epochs 5` ends at exactly 5.0."""
    return steps / steps_per_epoch(batch_size, n_train)


def check_lr(lr) -> float:
    if not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ConfigError(f"learning rate must be a finite number > 0, not {lr}")
    return float(lr)


def finite_or_none(value):
    """A logged number (or a dict or list of them), with inf and NaN as None (JSON has no NaN; a
    checkpoint never holds one)."""
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value if not isinstance(value, float) or math.isfinite(value) else None
