"""Command line: vaelab {train,evaluate,diagnose,export,animate,sweep,limits} ... (or python -m core ...);
`vaelab` alone, or `vaelab dashboard [streamlit options]`, starts the dashboard.

Every mistake a user can make ends in one line on stderr and a non-zero exit, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import torch

from . import checkpoint, files, limits, monitor, options, progress, settings, timeline
from . import data as datasets
from . import sweep as sweeps
from .config import EPOCHS, RunConfig, save_every
from .control import RunState, train_to
from .diagnostics import DIAGNOSTICS
from .engine import Trainer, describe_device, pick_device
from .errors import ConfigError, LabError
from .evaluate import evaluate
from .objectives import OBJECTIVES
from .protocol import user_bundle
from .records import TrialStatus
from .report import record, run_all, to_dict
from .track import Tracker, export


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage plus the error; one clear line is enough
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text, zero: bool = False):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        raise argparse.ArgumentTypeError(f"must be a finite number {'>=' if zero else '>'} 0, got {text}")
    return value


def non_negative_float(text):
    return positive_float(text, zero=True)


def make_parser(parser_class=Parser) -> Parser:
    parser = parser_class(prog="vaelab", description="VAE Lab: train and evaluate variational autoencoders.",
                          allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=parser_class)

    t = sub.add_parser("train", help="train a model and save a checkpoint", allow_abbrev=False,
                       description="Train a VAE and save a checkpoint (safetensors + JSON).")
    run_options(t)
    tracker_options(t.add_argument_group("where else the run goes"))

    e = sub.add_parser("evaluate", help="test ELBO, reconstruction and KL of a checkpoint",
                       description="Evaluate a checkpoint on its dataset's test split.")
    e.add_argument("checkpoint", nargs="?", help="path to NAME.json, NAME.safetensors or NAME (or --model)")
    e.add_argument("--json", action="store_true", help="print machine-readable JSON")
    e.add_argument("--step", type=int, default=None, help="the weights kept at this step of the run (default: its last)")
    e.add_argument("--data-dir", help="folder with the dataset files")
    e.add_argument("--device", default="cpu")
    e.add_argument("--offline", action="store_true", help="never try to download")
    user_model_options(e)

    d = sub.add_parser("diagnose", help="every collapse diagnostic of a checkpoint",
                       description="Run the collapse diagnostics on a checkpoint's test split: KL, active units, "
                                   "mutual information, IWAE_k, probe, decoder reliance, aggregate posterior, "
                                   "gradient variance, code usage and the per-dimension collapse report.")
    d.add_argument("checkpoint", nargs="?", help="path to NAME.json, NAME.safetensors or NAME (or --model)")
    d.add_argument("--json", action="store_true", help="print machine-readable JSON")
    d.add_argument("--step", type=int, default=None, help="the weights kept at this step of the run (default: its last)")
    d.add_argument("--only", type=diagnostic_names, default=None, metavar="NAMES",
                   help=f"comma-separated subset of: {', '.join(DIAGNOSTICS.names())}")
    d.add_argument("--k", type=positive_int, default=None,
                   help="importance samples for IWAE_k (default: 1000 on a GPU, 100 on a CPU)")
    d.add_argument("--record", action="store_true",
                   help="also store every diagnostic and the ELBO of the first 1,000 test images in the "
                        "checkpoint's sidecar, where the dashboard shows them without measuring again")
    d.add_argument("--data-dir", help="folder with the dataset files")
    d.add_argument("--device", default="cpu")
    d.add_argument("--offline", action="store_true", help="never try to download")
    user_model_options(d)

    x = sub.add_parser("export", help="a checkpoint to TensorBoard or MLflow, or as a script that trains it again",
                       description="Write a checkpoint's run where you already work: its curves, live diagnostics "
                                   "and pictures to TensorBoard or MLflow, and/or the command and a Python script "
                                   "that repeat the run (same seed, the same numbers on the CPU).")
    x.add_argument("checkpoint", help="path to NAME.json, NAME.safetensors or NAME")
    tracker_options(x)
    x.add_argument("--script", metavar="FILE.py", help="write a Python script that trains this run again")
    x.add_argument("--data-dir", help="folder with the dataset files")
    x.add_argument("--offline", action="store_true", help="never try to download")

    a = sub.add_parser("animate", help="an animation of a view over a run's kept steps, or a picture of one step",
                       description="Draw one view of a checkpoint at every step whose weights it kept (the latent "
                                   "map aligned from step to step, prior samples, reconstructions, or the KL heatmap "
                                   "with the step marked) and write it as a GIF or MP4, or one step as a PNG.")
    a.add_argument("checkpoint", help="path to NAME.json, NAME.safetensors or NAME")
    a.add_argument("--view", default="map", choices=list(timeline.VIEWS), help="what to draw (default: %(default)s)")
    a.add_argument("--out", default=None, metavar="FILE",
                   help="FILE.gif or FILE.mp4 (with --step: FILE.png) (default: NAME-VIEW.gif, or NAME-VIEW-STEP.png)")
    a.add_argument("--step", type=int, default=None, help="draw only this kept step, as a PNG")
    a.add_argument("--method", default="pca", choices=["pca", "tsne", "umap", "raw"], help="map view: how to flatten the codes")
    a.add_argument("--images", type=positive_int, default=1000, help="map view: test images placed (default: %(default)s)")
    a.add_argument("--no-align", action="store_true", help="map view: each step's map as the method draws it, unaligned")
    a.add_argument("--fps", type=positive_float, default=2.0, help="frames per second (default: %(default)s)")
    a.add_argument("--data-dir", help="folder with the dataset files")
    a.add_argument("--offline", action="store_true", help="never try to download")

    w = sub.add_parser("sweep", help="train a grid of runs from a TOML spec, here or on a Ray cluster",
                       description="Expand a sweep spec (objectives x knobs x beta x latent size x seeds; see "
                                   "README, 'Sweeps'), estimate its time from a short pilot, and train every trial "
                                   "with its diagnostics recorded, into OUT/NAME/results.csv. Run it again to "
                                   "resume: finished trials are skipped, interrupted ones continue.")
    w.add_argument("spec", help="the sweep spec, a TOML file")
    w.add_argument("--out", default="sweeps", help="where the sweep's folder goes (default: %(default)s)")
    w.add_argument("--workers", type=positive_int, default=None,
                   help="trials at once (default: one per core here; on Ray, as many as the cluster fits)")
    w.add_argument("--threads-per-trial", type=positive_int, default=1,
                   help="torch threads (and Ray CPUs) per trial (default: 1; the same on every backend, so the "
                        "same trial gives the same numbers)")
    w.add_argument("--ray", metavar="auto|local|ADDRESS", default=None,
                   help="run the trials with Ray Tune: 'auto' joins the cluster `ray start` made on this machine "
                        "(or $RAY_ADDRESS), 'local' starts one here for this sweep, ADDRESS joins that cluster "
                        "(host:6379, or ray://host:10001)")
    w.add_argument("--plan", action="store_true", help="list the trials and the time estimate; train nothing")
    w.add_argument("--no-pilot", action="store_true", help="skip the pilot that estimates the time")
    w.add_argument("--retry-failed", action="store_true", help="train the trials that failed before again")
    w.add_argument("--max-trials", type=positive_int, default=limits.maximum("trials"),
                   help="refuse a spec whose grid makes more trials than this (default: %(default)s)")
    sub.add_parser("limits", help="the table of limits every size is checked against",
                   description="Print the maximum of every size a user can type, upload or write into a "
                               "checkpoint (core/limits.py), and the memory budget of one run.")
    return parser


def argument_type(option: options.Option):
    """argparse's type= for an option of the table: its own parse, its error as argparse's."""
    def parse(text):
        try:
            return option.parse(text)
        except ConfigError as e:  # argparse names the flag itself
            raise argparse.ArgumentTypeError(str(e).removeprefix(option.flag).lstrip(": ")) from None
    parse.__name__ = option.kind
    return parse


def run_options(parser):
    """The train command's flags, generated from the option table (core.options) and the objectives' knobs."""
    groups = {}
    for option in options.where("cli"):
        g = groups.get(option.group) or groups.setdefault(option.group, parser.add_argument_group(option.group))
        default = option.initial
        shown = "" if default in (None, "", (), False) else f" (default: {','.join(map(str, default)) if isinstance(default, tuple) else default})"
        if option.kind == "flag":
            g.add_argument(option.flag, dest=option.name, action="store_true", help=option.help)
        elif option.choices:
            g.add_argument(option.flag, dest=option.name, default=default, choices=list(option.choices),
                           help=option.help + shown)
        else:
            g.add_argument(option.flag, dest=option.name, default=default, type=argument_type(option),
                           metavar=option.metavar, help=option.help + shown)
        if option.name == "objective":
            g.add_argument("--beta", dest="knob_beta", type=float, default=None,
                           help="weight on the KL term, any objective (default: the objective's own, 1 or 4 for beta-vae)")
            for name, (knob, owners) in options.knobs().items():
                if name != "beta":
                    kwargs = {"choices": knob.choices} if knob.choices else {"metavar": type(knob.default).__name__.upper()}
                    g.add_argument(options.flag_of(name), dest=f"knob_{name}", default=None,
                                   help=f"{knob.help} [{', '.join(owners)}]", **kwargs)


def tracker_options(g):
    g.add_argument("--tensorboard", metavar="DIR",
                   help="also write the run to TensorBoard event files in DIR/NAME: curves, held-out KL per "
                        "dimension and its heatmap, AU, MI, reconstructions, samples (tensorboard --logdir DIR)")
    g.add_argument("--mlflow", metavar="DIR",
                   help="also log the same to an MLflow tracking folder (mlflow ui --backend-store-uri "
                        "sqlite:///DIR/mlflow.db)")
    g.add_argument("--wandb", metavar="DIR",
                   help="also log the same to Weights & Biases, offline: its files in DIR/wandb (no account, no "
                        "network; wandb sync DIR/wandb/offline-run-* uploads it later)")


def user_model_options(parser):
    g = parser.add_argument_group("your own model (instead of a checkpoint; see core/protocol.py)")
    g.add_argument("--model", metavar="MODULE:FACTORY",
                   help="a PyTorch module of yours that follows the protocol: factory() builds it "
                        "(module.path:factory, or path/to/file.py:factory)")
    g.add_argument("--weights", metavar="FILE.safetensors", help="its weights (a safetensors file; never a pickle)")
    g.add_argument("--dataset", type=dataset_name, metavar="NAME|PATH", help="the data to measure it on")
    g.add_argument("--binarize", default="none", choices=list(datasets.BINARIZATIONS))
    g.add_argument("--image-size", type=int, default=0, metavar="PIXELS")
    g.add_argument("--color", default="auto", choices=list(files.COLORS))
    g.add_argument("--objective", default="vae", choices=OBJECTIVES.names(),
                   help="the loss it was trained with, for the gradient diagnostics (default: vae, the ELBO)")


def dataset_name(text):
    """argparse's type= for a dataset (core.options.dataset)."""
    try:
        return options.dataset(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def plain_name(text: str) -> str:
    """--name is a file name inside --out: no folder part, no '..', nothing hidden, at most 100 characters."""
    if not re.fullmatch(r"[A-Za-z0-9_+=,@-][A-Za-z0-9_.+=,@-]{0,99}", text or "") or text.endswith(".json"):
        raise LabError(f"--name {text!r}: give a plain file name (letters, digits and ._+=,@-, at most 100, "
                       f"no folder part); --out says where it goes")
    return text


def diagnostic_names(text):
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in DIAGNOSTICS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown diagnostic {', '.join(unknown) or repr(text)}; "
                                         f"choose from: {', '.join(DIAGNOSTICS.names())}")
    return names



def run_config(args) -> RunConfig:
    """The run config the train command's arguments ask for (core.options builds it)."""
    settings = {k[5:]: v for k, v in vars(args).items() if k.startswith("knob_") and v is not None}
    return options.run_config({o.name: getattr(args, o.name) for o in options.where("cli")}, settings)


# What --resume and --branch accept beside them: a resumed run keeps every setting; a branch changes knobs and rate.
RESUME_OPTIONS = {"steps", "epochs", "save_every", "out", "data_dir", "offline", "resume", "tensorboard", "mlflow", "wandb",
                  "snapshot_budget"}
BRANCH_OPTIONS = RESUME_OPTIONS - {"resume"} | {"branch", "lr", "name", "live_every"}


def given_options(args) -> set[str]:
    """The train options typed on the command line (whatever their value), by name (knobs by theirs)."""
    flags = {o.flag: o.name for o in options.where("cli")} | {options.flag_of(k): k for k in options.knobs()}
    return {flags[word.split("=", 1)[0]] for word in args.argv if word.split("=", 1)[0] in flags}


def flags(dests) -> str:
    return ", ".join(f"--{d.replace('_', '-')}" for d in dests)


def find_checkpoint(text: str, out: str) -> Path:
    """A checkpoint named by path, or by name in the output folder."""
    for path in (Path(text), Path(out) / text):
        if checkpoint.paths(path)[1].exists():
            return checkpoint.paths(path)[1]
    raise LabError(f"no checkpoint {text!r} (looked for {checkpoint.paths(text)[1]} and "
                   f"{checkpoint.paths(Path(out) / text)[1]})")


def load_data(spec, args):
    if args.data_dir:
        spec = replace(spec, data_dir=args.data_dir)
    return datasets.load(spec, download=False if args.offline else None)


def continued(args):
    """(trainer, total steps, where it saves, sidecar fields) for --resume or --branch."""
    path = find_checkpoint(args.resume or args.branch, args.out)
    meta = checkpoint.read_sidecar(path)
    data = load_data(RunConfig.from_dict(meta["config"]).data, args)
    knobs = set(options.knobs()) | {"beta"}
    if args.resume:
        extra = sorted(given_options(args) - RESUME_OPTIONS)
        if extra:
            raise LabError(f"--resume continues the run with its own settings; leave out {flags(extra)} "
                           f"(to change them, start a --branch)")
        trainer = Trainer.load(path, data)
        target = meta.get("target_steps") or trainer.step_count + EPOCHS * trainer.steps_per_epoch
        total = args.steps or (args.epochs * trainer.steps_per_epoch if args.epochs else target)
        return trainer, total, path.with_suffix(""), {"command": meta.get("command")}
    given = given_options(args)
    extra = sorted(given - BRANCH_OPTIONS - knobs)
    if extra:
        raise LabError(f"a branch keeps its parent's data, model and objective; leave out {flags(extra)} "
                       f"(it may change --lr, --beta and the objective's knobs)")
    settings = {k: getattr(args, f"knob_{k}") for k in given & knobs}
    trainer = Trainer.branch(path, data, settings, lr=args.lr if "lr" in given else None, live_every=args.live_every)
    more = args.steps or (args.epochs or EPOCHS) * trainer.steps_per_epoch
    name = plain_name(args.name) if args.name else f"{path.with_suffix('').name}-branch{trainer.step_count}"
    folder = Path(args.out) if "out" in given else path.parent  # beside its parent unless told
    return trainer, trainer.step_count + more, folder / name, {}


def free_name(out: Path) -> Path:
    """out, or out-2, out-3, ... : the first name no checkpoint in its folder has, so that training never
    replaces one silently (a user's digits.npz and the built-in digits are both "digits")."""
    free = checkpoint.unused_name(out, lambda p: any(f.exists() for f in checkpoint.paths(p)))
    if free != out:
        print(f"{out} exists: saving to {free.name} instead (--overwrite replaces it)", file=sys.stderr)
    return free


def train(args) -> int:
    if args.epochs and args.steps:
        raise LabError("give --epochs or --steps, not both")
    if args.resume and args.branch:
        raise LabError("give --resume or --branch, not both")
    if args.live_every < 0:
        raise LabError(f"--live-every must be 0 (off) or a number of steps, not {args.live_every}")
    resumable = save_every(args.save_every)[0] != "off"  # checks the value before any work
    command = shlex.join(["vaelab", *args.argv])
    if args.resume or args.branch:
        trainer, total, out, fields = continued(args)
        fields = {"command": fields.get("command") or command}
        start = trainer.step_count
        if start >= total:
            print(f"the run is already at step {start:,} of {total:,}; give --steps or --epochs (in all) to "
                  f"train it further", file=sys.stderr)
            return 0
    else:
        config = run_config(args)
        trainer = Trainer(config, load_data(config.data, args), live_every=args.live_every,
                          snapshot_mb=args.snapshot_budget)
        total = args.steps or (args.epochs or EPOCHS) * trainer.steps_per_epoch
        name = plain_name(args.name) if args.name else f"{config.data.short_name}-{config.objective}-z{config.model.latent_dim}"
        fields, start, out = {"command": command}, 0, Path(args.out) / name
        if not args.overwrite:
            out = free_name(out)
    config, data = trainer.config, trainer.data
    if "snapshot_budget" in given_options(args):  # a resumed run keeps its own budget unless told
        trainer.kept.budget_mb = args.snapshot_budget
    limits.check("steps", total, "the steps to train")
    fields["target_steps"] = total
    fields["threads"] = torch.get_num_threads()  # a CPU run's numbers depend on it: an exported script repeats it
    trainer.autosave(out, args.save_every, **fields)
    what = "resuming" if args.resume else "branching" if args.branch else "training"
    print(f"{what} {config.objective} on {data.info.name} ({len(data.train_x):,} images) "
          f"on {describe_device(trainer.device, torch.get_num_threads())}: steps {start:,} to {total:,}"
          + (f", saving to {out} every {args.save_every}" if resumable else ""), file=sys.stderr)
    failure = None
    tracker = (Tracker(out.name, config.to_dict(), args.tensorboard, args.mlflow, args.wandb)
               if args.tensorboard or args.mlflow or args.wandb else None)
    bar = progress.bar(total=total, initial=start, unit="step", dynamic_ncols=True)
    seen = [trainer.step_count, trainer.seconds]

    def after():
        """Between two chunks of steps: the bar and the trackers."""
        n = trainer.step_count - seen[0]
        if not n:
            return
        rate = n * trainer.batch_size / max(trainer.seconds - seen[1], 1e-9)
        seen[:] = trainer.step_count, trainer.seconds
        if tracker:
            tracker.log(trainer.history, trainer.live)
        bar.update(n)
        row = trainer.history[-1]
        live = {"AU": trainer.live[-1]["au"], "MI": f"{trainer.live[-1]['mi']:.2f}"} if trainer.live else {}
        bar.set_postfix(loss=f"{row['loss']:.2f}", kl=f"{row['kl']:.2f}", **live, samples_s=f"{rate:,.0f}",
                        refresh=False)  # drawn by update(), as often as the bar draws

    try:
        control = train_to(trainer, total, after)  # the one training loop (core.control)
        failure = None if control.state == RunState.DONE else control.error
    except KeyboardInterrupt:
        failure = f"interrupted at step {trainer.step_count}"
    finally:
        bar.close()
    path = trainer.save(out, resumable=resumable, **fields)
    saved = checkpoint.load(path, device=trainer.device)  # the model as saved
    if tracker:
        tracker.log(trainer.history, trainer.live)
        tracker.finish(saved, data)
    if failure:
        print(f"error: {failure}\nsaved the last good weights (step {trainer.step_count}) to {path}", file=sys.stderr)
        return 1
    result = evaluate(saved, data)
    print(f"test ELBO {result.elbo:.2f} nats (recon {result.recon:.2f}, KL {result.kl:.2f}) "
          f"after {trainer.step_count:,} steps in {trainer.seconds:.0f} s")
    print(f"saved {path}")
    return 0


def token_npz(name: str) -> bool:
    """--dataset names an .npz of token rows (data that are not images, for a --model that scores them)."""
    path = Path(name).expanduser()
    return path.suffix == ".npz" and path.is_file() and files.is_token_npz(path)


def load_checkpoint_and_data(args):
    """(the model value, its data spec, the data) of a checkpoint, or of --model with --weights on --dataset."""
    if args.model:
        if args.checkpoint:
            raise LabError("give a checkpoint or --model, not both")
        if not args.dataset:
            raise LabError("--model needs --dataset: the data to measure it on")
        spec = datasets.DataSpec(args.dataset, args.binarize, "none", args.data_dir, args.image_size, args.color)
        data = datasets.examples(Path(args.dataset)) if token_npz(args.dataset) else load_data(spec, args)
        bundle = user_bundle(args.model, args.weights, data, args.objective, pick_device(args.device))
        args.checkpoint = args.model  # the name printed beside the results
        return bundle, data.spec, data
    if not args.checkpoint:
        raise LabError("give a checkpoint (NAME, NAME.json) or --model module:factory")
    if (Path(args.checkpoint) / f"{monitor.RUN}.json").is_file():  # a run folder of core.monitor: your own loop's
        if getattr(args, "record", False):
            raise LabError("--record writes into a checkpoint's sidecar; a run folder is rewritten by its own loop "
                           "(use --json)")
        if args.weights or args.dataset:
            raise LabError(f"{flags([f for f in ('weights', 'dataset') if getattr(args, f)])} go with --model; "
                           "a run folder holds its weights and held-out data")
        bundle, data = monitor.load_run(args.checkpoint, args.step, pick_device(args.device))
        return bundle, data.spec, data
    given = [f for f in ("weights", "dataset") if getattr(args, f)]
    if given:
        raise LabError(f"{flags(given)} go with --model; a checkpoint knows its own weights and data")
    ckpt = checkpoint.load(args.checkpoint, device=pick_device(args.device), step=args.step)
    data = load_data(ckpt.config.data, args)
    return ckpt, data.spec, data


def evaluate_cmd(args) -> int:
    ckpt, spec, data = load_checkpoint_and_data(args)
    result = evaluate(ckpt, data)
    if args.json:
        print(json.dumps({"checkpoint": str(args.checkpoint), "dataset": spec.name, "step": step_of(ckpt),
                          **result.to_dict()}, indent=1))
        return 0
    print(f"{args.checkpoint}: {ckpt.config.objective} on {spec.name}{at_step(ckpt)}, {result.n:,} test images")
    print(f"  test ELBO       {result.elbo:10.2f} nats")
    print(f"  reconstruction  {result.recon:10.2f}")
    print(f"  KL              {result.kl:10.2f}" + ("" if result.kl_exact else "  (Monte Carlo estimate)"))
    print(f"  KL per dimension ({result.per_dim}):")
    for i, v in enumerate(result.kl_per_dim):
        print(f"    z{i:<3d} {v:8.3f} {'#' * min(40, round(v * 4))}")
    return 0


def step_of(bundle) -> int | None:
    """The training step of a checkpoint; None for a user's --model, whose file records no step."""
    return None if "weights" in bundle.meta else bundle.step  # core.protocol.user_bundle's meta


def at_step(bundle) -> str:
    return "" if step_of(bundle) is None else f", step {bundle.step:,}"


def diagnose_cmd(args) -> int:
    if args.record and args.step is not None:
        raise LabError("--record stores the diagnostics of a checkpoint's own (last) weights; leave out --step")
    if args.record and args.model:
        raise LabError("--record writes into a checkpoint's sidecar; a --model has none (use --json)")
    ckpt, spec, data = load_checkpoint_and_data(args)
    if args.record:
        if args.only or args.k or args.device != "cpu":
            raise LabError("--record measures every diagnostic with its defaults on the CPU; leave out --only, --k and --device")
        results = record(args.checkpoint, ckpt, data, bars=True)["diagnostics"]["results"]
        print(f"recorded the diagnostics in {checkpoint.paths(args.checkpoint)[1]}", file=sys.stderr)
    else:
        options = {"iwae": {"k": args.k}} if args.k else {}
        results = to_dict(run_all(ckpt, data, args.only, options, bars=True))
    if args.json:
        print(json.dumps({"checkpoint": str(args.checkpoint), "objective": ckpt.config.objective,
                          "dataset": spec.name, "step": step_of(ckpt), "diagnostics": results}, indent=1))
        return 0
    print(f"{args.checkpoint}: {ckpt.config.objective} on {spec.name}{at_step(ckpt)}, "
          f"z={ckpt.config.model.latent_dim} ({ckpt.config.model.latent})")
    for name, result in results.items():
        print(f"\n{name}")
        if "skipped" in result:
            print(f"  skipped: {result['skipped']}")
        elif name == "collapse":
            print_collapse(result)
        else:
            print_fields(result, "  ")
    return 0


def print_fields(result: dict, indent: str):
    """Numbers one per line; a per-dimension list as its range, since `--json` has every value."""
    for key, value in result.items():
        if isinstance(value, dict):
            print(f"{indent}{key}:")
            print_fields(value, indent + "  ")
        elif isinstance(value, list):
            flat = [v for row in value for v in (row if isinstance(row, list) else [row])]
            print(f"{indent}{key:<18} {len(value)} values, {min(flat):.4g} .. {max(flat):.4g}" if flat else
                  f"{indent}{key:<18} none")
        elif isinstance(value, bool) and key.endswith("exact"):
            print(f"{indent}{key:<18} {'yes, closed form' if value else 'no: these are Monte Carlo estimates'}")
        elif isinstance(value, float):
            print(f"{indent}{key:<18} {value:.4g}")
        else:
            print(f"{indent}{key:<18} {value}")


def print_collapse(report: dict):
    t = report["thresholds"]
    print(f"  thresholds: active when Var_x E[z_d] > {t['au_variance']:g} and zeroing z_d changes log p(x|z) by > "
          f"{t['zeroing_cost_nats']:g} nats; KL below {t['kl_nats']:g} nats is nothing")
    print(f"  {'dim':<5}{'KL':>9}{'AU var':>10}{'zeroing':>10}  verdict")
    for d, (verdict, kl, var, cost) in enumerate(zip(report["verdicts"], report["kl_per_dim"],
                                                     report["au_variances"], report["zeroing_cost"])):
        print(f"  z{d:<4}{kl:9.3f}{var:10.3g}" + (f"{cost:10.3f}" if cost is not None else f"{'–':>10}") + f"  {verdict}")
    counts = {v: report["verdicts"].count(v) for v in ("active", "unused by decoder", "collapsed")}
    print("  " + ", ".join(f"{n} {v}" for v, n in counts.items()) +
          f"; MI {report['mi']:.2f} nats (ceiling {report['mi_ceiling']:.2f})")
    for flag in report["flags"]:
        print(f"  ! {flag}")


def export_cmd(args) -> int:
    if not (args.tensorboard or args.mlflow or args.wandb or args.script):
        raise LabError("say where to: --tensorboard DIR, --mlflow DIR, --wandb DIR and/or --script FILE.py")
    path = find_checkpoint(args.checkpoint, ".")
    bundle = checkpoint.load(path)
    if args.script:
        from .recipe import script
        Path(args.script).write_text(script(bundle, path.stem))
        print(f"wrote {args.script}: python {args.script} trains it again", file=sys.stderr)
    if args.tensorboard or args.mlflow or args.wandb:
        export(bundle, load_data(bundle.config.data, args), path.stem, args.tensorboard, args.mlflow, args.wandb)
        for kind, where in (("TensorBoard", args.tensorboard), ("MLflow", args.mlflow), ("Weights & Biases", args.wandb)):
            if where:
                print(f"wrote {path.stem} to {kind} in {where}", file=sys.stderr)
    return 0


def sweep_cmd(args) -> int:
    if args.ray:
        sweeps.check_ray_address(args.ray)
    spec = sweeps.read_spec(args.spec, args.max_trials)
    for data_spec in {t.config.data for t in spec.trials}:
        sweeps.dataset(data_spec)  # a missing dataset is one line now, not one per trial later
    folder = Path(args.out) / spec.name
    found = sweeps.survey(folder, spec.trials)  # refuses a trial another command trained, by name
    states = [state for state, _ in found.values()]
    todo = sweeps.to_run(spec.trials, found, args.retry_failed)
    counts = {str(s): states.count(s) for s in (TrialStatus.DONE, TrialStatus.FAILED, TrialStatus.PARTIAL)}
    print(f"sweep {spec.name}: {len(spec.trials)} trials ({counts['done']} done, {counts['failed']} failed, "
          f"{counts['partial']} to resume, {len(todo)} to run) into {folder}", file=sys.stderr)
    if args.plan:
        for trial in spec.trials:
            print(f"  {trial.id:<40} {trial.command}")
    if todo and not args.no_pilot:
        estimate = sweeps.pilot(todo, args.threads_per_trial)
        per_step = ", ".join(f"{o} {s * 1e3:.1f} ms" for o, s in estimate.step_seconds.items())
        diagnose = ", ".join(f"{o} {s:.1f} s" for o, s in estimate.diagnose_seconds.items())
        workers = args.workers or (None if args.ray else sweeps.default_workers(args.threads_per_trial))
        wall = (f"about {sweeps.duration(estimate.wall(workers))} with {workers} at once" if workers else
                "divide by the trials the cluster runs at once")
        print(f"pilot ({estimate.pilot_seconds:.0f} s): a step takes {per_step}; the diagnostics {diagnose}.\n"
              f"estimate: {sweeps.duration(estimate.trial_seconds)} of trials in all, {wall}", file=sys.stderr)
    if args.plan:
        return 0
    try:
        folder, rows = sweeps.run(spec, args.out, args.workers, args.threads_per_trial, args.ray, args.retry_failed,
                                  found=found)
    except KeyboardInterrupt:
        print(f"interrupted; run the same command again to resume ({folder})", file=sys.stderr)
        return 130
    failed = [r for r in rows if r["status"] == TrialStatus.FAILED]
    print(f"{len(rows) - len(failed)} trials done, {len(failed)} failed: {folder / 'results.csv'}")
    return 1 if failed else 0


def animate_cmd(args) -> int:
    path = checkpoint.paths(args.checkpoint)[1]
    if args.step is not None:
        bundles = [checkpoint.load(path, step=args.step)]
    else:
        bundles = checkpoint.load_steps(path)
    name = path.with_suffix("").name
    out = Path(args.out or (f"{name}-{args.view}-{args.step}.png" if args.step is not None else f"{name}-{args.view}.gif"))
    if args.step is not None and out.suffix.lower() != ".png":
        raise LabError(f"--step draws one picture: give --out {out.with_suffix('.png').name}")
    if args.step is None and out.suffix.lower() not in timeline.FORMATS:
        raise LabError(f"{out.name}: an animation is written as {' or '.join(timeline.FORMATS)} (one step, with --step: .png)")
    data = None
    if args.view in ("map", "reconstructions") or bundles[0].config.data.normalize != "none":
        data = load_data(bundles[0].config.data, args)
    maps = None
    if args.view == "map":
        if args.method == "raw" and bundles[0].latent_dim != 2:
            raise LabError(f"--method raw draws a 2-D code, and this model's has {bundles[0].latent_dim} dimensions")
        with progress.bar(total=len(bundles), unit="step", desc=f"{args.method} maps") as bar:
            maps = timeline.maps_over_time(bundles, data, args.method, args.images, align=not args.no_align,
                                           progress=lambda done, total: bar.update(1))
    pictures = timeline.frames(args.view, bundles, data, maps=maps, title=name)
    timeline.write(out, pictures, fps=args.fps)
    steps = ", ".join(f"{b.step:,}" for b in bundles)
    print(f"wrote {out}: {len(pictures)} frame{'s' if len(pictures) != 1 else ''} of {args.view} (steps {steps})")
    return 0


def dashboard(options: list[str]):
    """Start the dashboard: Streamlit runs dashboard/app.py of this installation (this package imports no
    Streamlit; the server is its own process)."""
    import dashboard as package

    app = Path(package.__file__).resolve().parent / "app.py"
    os.execv(sys.executable, [sys.executable, "-m", "streamlit", "run", str(app),
                              "--browser.gatherUsageStats=false", *options])


def entry(argv=None):
    """The `vaelab` command: the dashboard, or one of the commands of main()."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] == "dashboard":
        dashboard(argv[1:])
    if argv[0].startswith("--") and argv[0] != "--help":  # `vaelab --server.port 8600`: Streamlit's options
        dashboard(argv)
    sys.exit(main(argv))


def main(argv=None) -> int:
    warnings.showwarning = lambda message, *a, **k: print(f"warning: {message}", file=sys.stderr)
    args = make_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        settings.get()  # the operator's settings, read once here: a value that cannot be read is one line
        commands = {"train": train, "evaluate": evaluate_cmd, "diagnose": diagnose_cmd, "sweep": sweep_cmd,
                    "export": export_cmd, "animate": animate_cmd, "limits": lambda args: print(limits.table()) or 0}
        return commands[args.command](args)
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
