"""One table of a run's options: each declared once, and everything else generated from it.

An option has a name (its flag without the dashes, and its key in a sweep spec), a type, the place in a
RunConfig where its value goes (its default is that field's default: core.config, core.models,
core.data), its bounds (a minimum here, a maximum from core.limits), its help, and where it applies:

    cli      a flag of `vaelab train` (core.cli builds the parser from this table)
    sweep    a key of a sweep spec's [train] or [grid] (core.sweep checks the spec against it)
    page     a widget of the Train page (dashboard/views/train.py draws it from `page`)

A config goes the other way too: `words(config)` gives the flags that make it, for the exported command
(core.recipe). An objective's knobs (core.objectives: Knob) are the other half of the options; they are
declared in the objective's own file and join the parser and the spec beside these.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path

from . import data as datasets
from . import files, limits, safefs, snapshots
from .config import COMPILE_MODES, LIVE_EVERY, OPTIMIZERS, PRESETS, SAVE_EVERY, RunConfig
from .errors import ConfigError
from .models import ACTIVATIONS, DECODER_VARIANCES, INITS, LIKELIHOODS, PIXELCNN_Z, ModelConfig
from .objectives import OBJECTIVES
from .objectives import build as build_objective

EVERYWHERE = frozenset({"cli", "sweep"})
CLI = frozenset({"cli"})
ON_PAGE = EVERYWHERE | {"page"}
CLI_AND_PAGE = CLI | {"page"}


@dataclass(frozen=True)
class Widget:
    """How the Train page draws an option: a live demo on a laptop needs narrower ranges than the CLI."""
    label: str
    key: str                    # its session-state key (lessons set the controls by these keys)
    low: float | None = None
    high: float | None = None
    step: float | None = None
    start: object = None        # the page's starting value where it is not the option's default
    slider: bool = False


@dataclass(frozen=True)
class Option:
    name: str                      # --name-with-dashes on the command line, name_with_underscores in a spec
    group: str                     # its section of `vaelab train --help`
    help: str
    field: str = ""                # where it goes in a RunConfig ("data.binarize", "model.latent_dim", "lr",
                                   # "betas.1"); "": how the run is run (steps, where it saves), not what it is
    kind: str = "str"              # str, int, float, flag, widths or dataset
    choices: tuple = ()
    low: float | None = None       # the smallest value allowed
    above: bool = False            # ... and low itself is not
    limit: str = ""                # its maximum: a row of core.limits
    default: object = None         # for options without a field (a field's default is its config's)
    metavar: str | None = None
    where: frozenset = EVERYWHERE
    page: Widget | None = None     # the Train page's widget, where it has one

    @property
    def flag(self) -> str:
        return flag_of(self.name)

    @property
    def initial(self):
        """Its default: its config field's, else its own."""
        return get(RunConfig(), self.field) if self.field else self.default

    def parse(self, value):
        """A value as typed (a string) or as a sweep spec gives it (TOML's types), checked and typed;
        raises ConfigError naming the option."""
        try:
            return self._parse(value)
        except ConfigError:
            raise
        except (TypeError, ValueError):
            raise ConfigError(f"{self.flag}: expected {self._expected()}, not {value!r}") from None

    def _expected(self) -> str:
        return {"int": "a whole number", "float": "a number", "flag": "true or false",
                "widths": "comma-separated widths like 512,256"}.get(self.kind, "a word")

    def _parse(self, value):
        if self.kind == "flag":
            if not isinstance(value, bool):
                raise TypeError
            return value
        if self.kind == "widths":
            widths = tuple(_whole(v) for v in (value if isinstance(value, (list, tuple)) else str(value).split(",")))
            if not widths or min(widths) < 1:
                raise ConfigError(f"{self.flag}: widths must be at least 1, not {value!r}")
            for width in widths:
                limits.check(self.limit or "width", width, f"{self.flag}: {WHAT_WIDTHS.get(self.limit, 'a width')}")
            return widths
        if self.kind in ("int", "float"):
            if isinstance(value, bool):
                raise TypeError
            number = _whole(value) if self.kind == "int" else float(value)
            if not math.isfinite(number) or (self.low is not None and (number < self.low or
                                                                       (self.above and number == self.low))):
                bound = f" {'>' if self.above else '>='} {self.low:g}" if self.low is not None else ""
                raise ConfigError(f"{self.flag} must be {'a whole' if self.kind == 'int' else 'a finite'} number"
                                  f"{bound}, not {value}")
            if self.limit:
                limits.check(self.limit, number, self.flag)
            return number
        if not isinstance(value, str):
            raise TypeError
        if self.kind == "dataset":
            return dataset(value)
        if self.choices and value not in self.choices:
            raise ConfigError(f"{self.flag} must be one of {', '.join(map(str, self.choices))}, not {value!r}")
        return value

    def words(self, value) -> list[str]:
        return flag_words(self.flag, value)


WHAT_WIDTHS = {"stride": "a stride", "kernel": "a kernel size"}  # what one number of a "widths" option is, by its limit


def flag_of(name: str) -> str:
    """An option's or a knob's flag: free_bits -> --free-bits."""
    return "--" + name.replace("_", "-")


def flag_words(flag: str, value) -> list[str]:
    """The command-line words that give this value: a bare flag for true, none for false, widths joined by commas."""
    if isinstance(value, bool):
        return [flag] if value else []
    if isinstance(value, tuple):
        return [flag, ",".join(map(str, value))]
    return [flag, str(value)]


def _whole(value) -> int:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return int(value.strip())
    if not isinstance(value, int):
        raise TypeError
    return value


def dataset(text: str) -> str:
    """A built-in dataset's name, or a path to the user's files, made absolute so a checkpoint finds them again."""
    if text in datasets.DATASETS:
        return text
    if files.is_path(text):
        path = Path(text).expanduser()
        if not path.exists() or safefs.is_system(path):
            raise ConfigError(f"{text}: no such folder or file")
        return str(path.resolve())
    raise ConfigError(f"unknown dataset {text!r}; choose from: {', '.join(datasets.DATASETS.names())}, "
                      f"or give a folder of images or an .npz file")


Opt = Option
TABLE = [
    # ---------------------------------------------------------------- data
    Opt("dataset", "data", f"one of {', '.join(datasets.DATASETS.names())}, or your own images: a folder (one sub-folder "
      "per class, or none) or an .npz with x and optional y", "data.name", "dataset", metavar="NAME|PATH"),
    Opt("image_size", "data", "your own images: resize each to PIXELS x PIXELS (0: as they are, all one size)",
      "data.size", "int", low=0, limit="image_side", metavar="PIXELS"),
    Opt("color", "data", "your own images: grey or RGB (auto: RGB when any image has colour)", "data.color",
      choices=files.COLORS),
    Opt("data_dir", "data", "folder with the dataset files (default: $VAELAB_DATA, then ~/.cache/torchvision)",
      "data.data_dir", where=CLI),
    Opt("binarize", "data", "dynamic: a fresh Bernoulli draw of every pixel in every minibatch; invert-nonzero: 0 where "
      "a pixel is > 0, 1 elsewhere (seed 'Improving VAEs')", "data.binarize", choices=datasets.BINARIZATIONS),
    Opt("normalize", "data", "pixel-rms: subtract the pixel means, divide by the pixels' RMS deviation (the VLAE "
        "authors' code); mean: scale to unit mean squared image norm instead (28x larger on MNIST)",
      "data.normalize", choices=datasets.NORMALIZATIONS),
    Opt("offline", "data", "never try to download", kind="flag", default=False, where=CLI),
    # ---------------------------------------------------------------- model
    Opt("arch", "model", "an MLP or a convolutional network", "model.arch", choices=("mlp", "conv")),
    Opt("hidden", "model", "MLP widths, input side first", "model.hidden", "widths"),
    Opt("latent_below", "model", "a second stochastic layer of this size between the image and the latent (0: none; "
        "Burda et al.'s two-layer IWAE: --hidden 200,200 --latent-below 100 --hidden-above 100,100; iwae only)",
        "model.latent_below", "int", low=0, limit="latent"),
    Opt("hidden_above", "model", "with --latent-below: the MLP widths between it and the latent",
        "model.hidden_above", "widths"),
    Opt("channels", "model", "conv widths, one per layer", "model.channels", "widths"),
    Opt("activation", "model", "the encoder's, and the decoder's unless --decoder-activation", "model.activation",
      choices=tuple(ACTIVATIONS)),
    Opt("decoder_activation", "model", "the decoder's (empty: the encoder's)", "model.decoder_activation",
      choices=("", *ACTIVATIONS)),
    Opt("leaky_slope", "model", "negative slope of leaky-relu", "model.leaky_slope", "float", low=0),
    Opt("batch_norm", "model", "batch normalization after every hidden layer", "model.batch_norm", "flag"),
    Opt("conv_kernel", "model", "conv kernel size", "model.kernel", "int", low=1, limit="kernel"),
    Opt("strides", "model", "conv strides, one per layer (default: 2 each)", "model.strides", "widths", limit="stride"),
    Opt("decoder_channels", "model", "widths the transposed convs read, head first (default: the encoder's mirror)",
      "model.decoder_channels", "widths"),
    Opt("decoder_strides", "model", "their strides (default: the encoder's, reversed)", "model.decoder_strides",
      "widths", limit="stride"),
    Opt("pixelcnn_layers", "model", "a PixelCNN decoder: this many gated masked layers over the pixels, each conditioned "
        "on z (0: none; binary one-channel images). It can model the images without z: the collapse of strong decoders",
        "model.pixelcnn_layers", "int", low=0, limit="layers", metavar="N", where=ON_PAGE,
        page=Widget("PixelCNN decoder layers", "pixelcnn", 0, 8, 1, slider=True)),
    Opt("pixelcnn_channels", "model", "the PixelCNN's channels", "model.pixelcnn_channels", "int", low=1, limit="width"),
    Opt("pixelcnn_kernels", "model", "its kernel sizes, one a layer, odd (default: 7 for the first, 3 after)",
        "model.pixelcnn_kernels", "widths", limit="kernel"),
    Opt("pixelcnn_z", "model", "how z reaches every PixelCNN layer: map, the plain decoder's picture of z plus a bias "
        "(PixelVAE); bias, a bias alone (van den Oord et al.'s global conditioning: the collapse shows)",
        "model.pixelcnn_z", choices=PIXELCNN_Z),
    Opt("skip_z", "model", "z enters every layer of the MLP decoder, not only the first (skip-VAE, Dieng et al. 2019)",
        "model.skip_z", "flag"),
    Opt("latent", "model", "latent size", "model.latent_dim", "int", low=1, limit="latent", where=ON_PAGE,
        page=Widget("Latent size", "latent", 2, 64, 1, PRESETS["dashboard"].latent_dim, slider=True)),
    Opt("likelihood", "model", "auto: what suits the dataset; mse: the squared error (a Gaussian of variance 1/2)",
      "model.likelihood", choices=("auto", *LIKELIHOODS)),
    Opt("decoder_variance", "model", "learned Gaussian std: softplus + 0.01 per pixel; tanh: log variance = tanh (seed "
      "'Improving VAEs'); shared: one learned log variance for every pixel, from 0 (the VLAE authors' code)",
      "model.decoder_variance", choices=DECODER_VARIANCES),
    Opt("obs_std", "model", "Gaussian only: fixed std, 0 learns it per pixel", "model.obs_std", "float", low=0),
    Opt("gaussian_mean", "model", "Gaussian only: sigmoid keeps the decoder's mean in (0, 1), for pixels in [0, 1] "
      "(Frey Faces)", "model.gaussian_mean", choices=("identity", "sigmoid")),
    Opt("init", "model", "how the weights start", "model.init", choices=INITS),
    Opt("latent_clip", "model", "keep every encoder mean within C*sqrt(latent) (Ucar 2019); 0 is off",
      "model.latent_clip", "float", low=0, metavar="C"),
    # ---------------------------------------------------------------- objective (its knobs follow, from the objectives)
    Opt("objective", "objective", "what the run minimizes (core/objectives: one file each)", "objective",
      choices=tuple(OBJECTIVES.names())),
    # ---------------------------------------------------------------- training
    Opt("epochs", "training", "passes over the training set (default: 10)", kind="int", low=1),
    Opt("steps", "training", "optimizer steps instead of epochs", kind="int", low=1, limit="steps", where=ON_PAGE,
        page=Widget("Steps", "steps", 50, limits.maximum("page_steps"), 100, 2000)),
    Opt("batch_size", "training", "images per minibatch", "batch_size", "int", low=1, limit="batch", where=ON_PAGE,
        page=Widget("Batch size", "batch", 8, 4096, 8)),
    Opt("lr", "training", "learning rate", "lr", "float", low=0, above=True, where=ON_PAGE,
        page=Widget("Learning rate", "lr", 1e-5, 0.1)),
    Opt("optimizer", "training", "Adam, or Adagrad as Kingma & Welling (2014) trained", "optimizer", choices=OPTIMIZERS),
    Opt("adam_beta2", "training", "Adam's second-moment decay", "betas.1", "float", low=0),
    Opt("seed", "training", "the run's random seed: the same seed, the same numbers on the CPU", "seed", "int", low=0,
        limit="seed", where=ON_PAGE, page=Widget("Seed", "seed", 0, 1_000_000)),
    Opt("device", "training", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps", "device", where=CLI_AND_PAGE,
        page=Widget("Device", "device")),
    Opt("compile", "training", "torch.compile the step's forward and loss; reduce-overhead on a GPU also replays it "
      "as CUDA graphs", "compile", choices=COMPILE_MODES),
    Opt("live_every", "training", "held-out KL, active units and MI every N steps, shown in the bar and saved (0: off)",
      kind="int", low=0, limit="steps", default=LIVE_EVERY, metavar="N"),
    Opt("out", "training", "output folder", default="checkpoints", where=CLI),
    Opt("name", "training", "checkpoint name (default: DATASET-OBJECTIVE-zLATENT; when OUT has one by that name, "
      "NAME-2, NAME-3, ... unless --overwrite)", where=CLI),
    Opt("overwrite", "training", "replace a checkpoint of the same name in OUT (without it a new name is taken)",
      kind="flag", default=False, where=CLI),
    Opt("snapshot_budget", "training", "keep the weights of steps 0, 10, 20, 50, 100, 200, 500 and every 100 after, "
      "thinned to fit MB megabytes, in the checkpoint: every view can go back to them (0: keep none)",
      kind="float", low=0, default=snapshots.BUDGET_MB, metavar="MB"),
    # ---------------------------------------------------------------- surviving a stop
    Opt("save_every", "surviving a stop", "write a resumable checkpoint (weights, optimizer state, random stream) to "
      "OUT/NAME every N steps or every TIME of the run (90s, 5m, 2h); 0: off, and the final checkpoint then keeps no "
      "training state", default=SAVE_EVERY, metavar="N|TIME", where=CLI),
    Opt("resume", "surviving a stop", "continue the run saved there (a path, or a name in --out) exactly where it "
      "stopped, to the steps it was started with, or to --steps/--epochs in all; its settings stay its own",
      metavar="CHECKPOINT", where=CLI),
    Opt("branch", "surviving a stop", "start a new run from the step saved there, with --beta, --lr or the objective's "
      "knobs changed, for --steps/--epochs more; the sidecar records its parent", metavar="CHECKPOINT", where=CLI),
]
del Opt
OPTIONS = {option.name: option for option in TABLE}


def knobs() -> dict:
    """Every objective's knobs by name, with the objectives that have each: `--beta 4` works for whichever
    objective takes it."""
    found = {}
    for name, cls in OBJECTIVES.items():
        for knob_name, knob in cls.knobs.items():
            found.setdefault(knob_name, (knob, []))[1].append(name)
    return found


def where(place: str) -> list[Option]:
    return [o for o in TABLE if place in o.where]


# ------------------------------------------------------------------ options <-> a run config


def get(config, path: str):
    """The value at a field path of a config: "model.latent_dim", "betas.1"."""
    for part in path.split("."):
        config = config[int(part)] if part.isdigit() else getattr(config, part)
    return config


def run_config(values: dict, settings: dict | None = None) -> RunConfig:
    """The run config of some options' values (name -> value, already parsed; None: the default) and an
    objective's knob values. The configs' own checks run as it is built: a ConfigError names what is wrong."""
    parts = {"data": {}, "model": {}, "run": {}}
    for name, value in values.items():
        option = OPTIONS[name]
        if value is None or not option.field:
            continue
        head, _, rest = option.field.partition(".")
        if head in ("data", "model"):
            parts[head][rest] = value
        else:
            parts["run"][option.field] = value
    run = {k: v for k, v in parts["run"].items() if "." not in k}
    if "betas.1" in parts["run"]:
        run["betas"] = (RunConfig().betas[0], parts["run"]["betas.1"])
    spec = datasets.DataSpec(**parts["data"])
    return RunConfig(data=spec, model=ModelConfig(**parts["model"]), settings=dict(settings or {}), **run)


# Filled in when the model is built (the data's image shape and classes, the objective's latent type): no flag.
DERIVED = {f.name for f in fields(ModelConfig)} - {o.field.partition(".")[2] for o in TABLE if o.field.startswith("model.")}


def words(config: RunConfig) -> list[str]:
    """The flags that make this config (its dataset always, the rest where they differ from the defaults),
    in the table's order. The objective's knobs are the caller's (their defaults are the objective's)."""
    out, default = [], RunConfig()
    for option in TABLE:
        if not option.field:
            continue
        value = get(config, option.field)
        if option.name == "dataset" or value != get(default, option.field):
            out += option.words(value)
    return out


def canonical(value):
    """A value as JSON holds it (tuples as lists), for a stable hash of a config."""
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return value


def knob_words(objective: str, settings: dict) -> list[str]:
    """The flags of an objective's knob values that differ from the objective's defaults."""
    knobs = OBJECTIVES.get(objective).knobs
    defaults = {name: knob.default for name, knob in knobs.items()} | {"beta": knobs["beta"].default
                                                                       if "beta" in knobs else 1.0}
    out = []
    for name, value in settings.items():
        if value != defaults.get(name):
            out += flag_words(flag_of(name), value)
    return out


def train_words(config: RunConfig, steps: int | None = None, epochs: int | None = None,
                live_every: int = LIVE_EVERY) -> list[str]:
    """`vaelab train`'s arguments for this config, its knobs and its length."""
    out = words(config) + knob_words(config.objective, config.settings)
    if live_every != LIVE_EVERY:
        out += ["--live-every", str(live_every)]
    if steps is not None:
        out += ["--steps", str(steps)]
    if epochs is not None:
        out += ["--epochs", str(epochs)]
    return out


def read_words(words: list[str]) -> tuple[dict, dict]:
    """`vaelab train`'s arguments back to (option values, knob values), each parsed as the parser would:
    how a sweep recognizes a trial recorded by its command before sweeps recorded a config's digest."""
    flags = {o.flag: o for o in TABLE}
    knob_flags = {flag_of(name): name for name in [*knobs(), "beta"]}
    found, settings, words = {}, {}, list(words)
    while words:
        word = words.pop(0)
        flag, _, attached = word.partition("=")
        if flag in flags and flags[flag].kind == "flag":
            found[flags[flag].name] = True
            continue
        if flag not in flags and flag not in knob_flags or (not attached and not words):
            raise ConfigError(f"not a train option with a value: {word!r}")
        value = attached or words.pop(0)
        if flag in flags:
            found[flags[flag].name] = flags[flag].parse(value)
        else:
            settings[knob_flags[flag]] = value
    return found, settings


def digest(config: RunConfig, steps: int | None, epochs: int | None, live_every: int) -> str:
    """A short hash of what a run trains: the same config and length, the same digest, however its
    options were written."""
    text = json.dumps([canonical(config.to_dict()), steps, epochs, live_every], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def typed(config: RunConfig) -> RunConfig:
    """The config with its objective's every knob, checked against its range and typed, as the checkpoint
    will store them."""
    return replace(config, settings=build_objective(config.objective, config.settings).settings())
