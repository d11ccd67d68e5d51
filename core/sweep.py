"""Sweeps: a grid of training runs from one TOML spec, on this machine or on a Ray cluster.

    name = "digits-collapse"
    [train]                       # any `vaelab train` option, the same for every trial
    dataset = "digits"
    hidden = [128]
    steps = 500
    [grid]                        # every combination of these (a list, or one value)
    objective = ["beta-vae", "free-bits"]
    beta = [1, 4, 8]
    latent = [2, 8]
    seed = [0, 1]
    free_bits = [0.5]             # an objective's knob: it multiplies only the objectives that have it
    [[exclude]]                   # drop the trials matching every key of a rule
    objective = "free-bits"
    beta = 1

Every key is an option of the run (core.options) or an objective's knob, checked and typed as the spec is
read, so each trial is a RunConfig with its length; it is identified by a digest of those (however the spec
writes them), trained by the engine into FOLDER/trials/ID, with its diagnostics recorded into the sidecar as
`diagnose --record` does; one row per trial lands in FOLDER/results.csv as trials finish. The trial function is the same for both backends: local
worker processes, or Ray Tune tasks on a cluster. A trial's own checkpoint is the truth about it, so a
sweep run again skips the finished trials, resumes the interrupted ones from their last checkpoint, and
trains only the rest.
"""
from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import math
import os
import re
import shlex
import socket
import sys
import time
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from . import checkpoint, limits, options, progress, safefs, settings
from . import data as datasets
from .config import EPOCHS, LIVE_EVERY, RunConfig, steps_per_epoch
from .control import RunState, train_to
from .engine import Trainer
from .errors import ConfigError, LabError
from .evaluate import evaluate
from .objectives import OBJECTIVES
from .records import Sidecar, TrialStatus
from .remote import adopt_environment, start_context
from .report import EVAL_N, from_dict, headline, record, run_all

SAVE_EVERY = "30s"     # an interrupted trial loses at most this much
AXIS_ORDER = ("objective", "beta", "latent", "seed")  # how trial names read; other axes follow in spec order
TIMING = ("seconds", "diagnose_seconds")               # the columns that differ between two runs of a sweep
METRICS = tuple(headline({}))  # ELBO, IWAE NLL, KL, AU, MI, probe accuracy, reliance gap, verdict


@dataclass(frozen=True)
class Trial:
    """One training run of a sweep: its name (its grid values), its config and its length."""
    id: str
    axes: dict
    config: RunConfig
    steps: int | None = None
    epochs: int | None = None
    live_every: int = LIVE_EVERY

    @property
    def digest(self) -> str:
        """What the trial trains, hashed: a finished trial is recognized by it, however the spec is written."""
        return options.digest(self.config, self.steps, self.epochs, self.live_every)

    @property
    def command(self) -> str:
        """The `vaelab train` command that trains the same run (its sidecar records it)."""
        return shlex.join(["vaelab", "train", *options.train_words(self.config, self.steps, self.epochs,
                                                                    self.live_every)])

    def total_steps(self, n_train: int) -> int:
        return self.steps or (self.epochs or EPOCHS) * steps_per_epoch(self.config.batch_size, n_train)

    def to_dict(self) -> dict:
        return {"id": self.id, "axes": self.axes, "config": self.config.to_dict(), "steps": self.steps,
                "epochs": self.epochs, "live_every": self.live_every}

    @classmethod
    def from_dict(cls, d: dict) -> "Trial":
        return cls(**{**d, "config": RunConfig.from_dict(d["config"])})


@dataclass(frozen=True)
class Spec:
    name: str
    trials: list[Trial]
    path: Path | None = None


# How a trial is run is the sweep's: where it saves and how often, and (the backend's) which device.
NOT_IN_SPEC = "the sweep decides it for each trial"
LENGTH = ("steps", "epochs", "live_every")  # options of a trial's length, not of its config


def _label(key: str, value) -> str:
    text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return re.sub(r"[^A-Za-z0-9.,+-]", "_", f"{key.replace('_', '-')}{text}")


def short_id(trial_id: str) -> str:
    """A trial's name as a file name: itself when short, else its start and a hash of the whole."""
    most = limits.maximum("trial_id")
    if len(trial_id) <= most:
        return trial_id
    return f"{trial_id[:most - 13]}-{hashlib.sha256(trial_id.encode()).hexdigest()[:12]}"


def knob_owners() -> dict[str, list[str]]:
    return {name: owners for name, (_, owners) in options.knobs().items()}


def parse_spec(text: str, name: str, max_trials: int | None = None) -> Spec:
    """A spec's text -> its trials, each value checked and typed by its option (core.options) or knob,
    each trial's config built and its knobs checked. The trials are counted from the axes before any is
    built, against max_trials (default: core.limits). Raises ConfigError with one clear line."""
    try:
        spec = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"the spec is not valid TOML: {e}") from None
    unknown = set(spec) - {"name", "train", "grid", "exclude"}
    if unknown:
        raise ConfigError(f"the spec has no section {', '.join(sorted(unknown))} (it has: name, train, grid, exclude)")
    name = spec.get("name", name)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}", name):
        raise ConfigError(f"the sweep's name must be letters, digits and ._+- (at most 64), not {name!r}")
    fixed, grid, rules = spec.get("train", {}), spec.get("grid", {}), spec.get("exclude", [])
    if not isinstance(fixed, dict) or not isinstance(grid, dict) or not isinstance(rules, list):
        raise ConfigError("[train] and [grid] must be tables and [[exclude]] a list of tables")
    if not grid:
        raise ConfigError("the spec's [grid] is empty: give at least one of objective, beta, latent, seed or a knob")
    owners = knob_owners()
    for section, keys in (("train", fixed), ("grid", grid)):
        for key in keys:
            option = options.OPTIONS.get(key)
            if option is not None and "sweep" not in option.where or key == "help":
                raise ConfigError(f"[{section}] cannot set {key!r}: {NOT_IN_SPEC}")
            if option is None and key not in owners:
                raise ConfigError(f"[{section}] has {key!r}, which is neither a train option nor any objective's "
                                  f"knob (see vaelab train --help)")
    both = set(fixed) & set(grid)
    if both:
        raise ConfigError(f"{', '.join(sorted(both))} is set in both [train] and [grid]; keep one")
    axes = {k: (v if isinstance(v, list) else [v]) for k, v in grid.items()}
    empty = [k for k, v in axes.items() if not v]
    if empty:
        raise ConfigError(f"[grid] {', '.join(empty)} has no values")
    objectives = axes.get("objective", [fixed.get("objective", "vae")])
    for objective in objectives:
        if objective not in OBJECTIVES:
            raise ConfigError(f"unknown objective {objective!r}; choose from: {', '.join(OBJECTIVES.names())}")
    knobs = {k for k in owners if k != "beta"}  # beta is every objective's (--beta); the rest are their own
    for section, keys in (("train", fixed), ("grid", axes)):
        for key in set(keys) & knobs:
            if not set(owners[key]) & set(objectives):
                raise ConfigError(f"[{section}] {key!r} is a knob of {', '.join(owners[key])}, none of which "
                                  f"the sweep trains")
    for rule in rules:
        if not isinstance(rule, dict) or not rule or set(rule) - set(axes):
            raise ConfigError(f"an [[exclude]] rule must name grid axes ({', '.join(axes)}), not {rule!r}")
    order = [k for k in AXIS_ORDER if k in axes] + [k for k in axes if k not in AXIS_ORDER]

    def excluded(values: dict) -> bool:
        return any(all(values.get(k) in (v if isinstance(v, list) else [v]) for k, v in rule.items())
                   for rule in rules)

    # Counted from the axes before a trial is built: a grid of 1000 x 1000 x 1000 is one line, not MemoryError.
    cap, most = max_trials or limits.maximum("trials"), max(limits.maximum("grid"), max_trials or 0)
    count = sum(math.prod(len(axes[k]) for k in order if k != "objective" and (k not in knobs or o in owners[k]))
                for o in objectives)
    if count > most:
        raise ConfigError(f"the spec's grid has {count:,} combinations, more than {most:,}; make it smaller")
    trials, seen = [], set()
    for objective in objectives:
        # An objective's knob multiplies only the objectives that have it; beta is every objective's.
        own = [k for k in order if k != "objective" and (k not in knobs or objective in owners[k])]
        for combo in itertools.product(*(axes[k] for k in own)):
            values = {"objective": objective, **dict(zip(own, combo))}
            if excluded(values):
                continue
            trial_id = short_id("-".join([objective] + [_label(k, values[k]) for k in own]))
            if trial_id in seen:
                continue
            seen.add(trial_id)
            chosen = {k: v for k, v in fixed.items() if k not in knobs or objective in owners[k]} | values
            try:
                trials.append(_trial(trial_id, values, chosen))
            except LabError as e:
                raise ConfigError(f"trial {trial_id}: {e}") from None
            if len(trials) > cap:
                raise ConfigError(f"the spec makes more than {cap:,} trials; make it smaller (or raise the cap "
                                  f"with --max-trials)")
    if not trials:
        raise ConfigError("the [[exclude]] rules leave no trial to run")
    return Spec(name, trials)


def _typed(key: str, value):
    """A spec's value for an option, checked and typed as the command line would."""
    option = options.OPTIONS[key]
    if isinstance(value, dict) or isinstance(value, list) and option.kind != "widths":
        raise ConfigError(f"{key}: one value, not {value!r}")
    return option.parse(value)


def _trial(trial_id: str, axes: dict, chosen: dict) -> Trial:
    """A trial from the spec's values of its options and knobs: its config built, its knobs checked and typed."""
    given = {k: _typed(k, v) for k, v in chosen.items() if k in options.OPTIONS}
    if given.get("steps") and given.get("epochs"):
        raise ConfigError("give epochs or steps, not both")
    settings = {k: v for k, v in chosen.items() if k not in options.OPTIONS}
    config = options.typed(options.run_config(given, settings))
    return Trial(trial_id, axes, config, given.get("steps"), given.get("epochs"),
                 given.get("live_every", LIVE_EVERY))


def read_spec(path, max_trials: int | None = None) -> Spec:
    path = Path(path)
    try:
        text = safefs.read_regular(path, 2**20).decode()
    except UnicodeDecodeError as e:
        raise ConfigError(f"cannot read the sweep spec {path}: {e}") from None
    spec = parse_spec(text, path.stem, max_trials)
    return Spec(spec.name, spec.trials, path)


# ------------------------------------------------------------------ one trial


@lru_cache(maxsize=4)
def dataset(spec: datasets.DataSpec) -> datasets.Dataset:
    return datasets.load(spec, download=not settings.get().offline)


def trial_path(folder, trial: Trial) -> Path:
    return Path(folder) / "trials" / trial.id


def failure_path(folder, trial: Trial) -> Path:
    return Path(folder) / "trials" / f"{trial.id}.failed.json"


def row_of(trial: Trial, meta: Sidecar | None, status: TrialStatus, message: str = "") -> dict:
    """The results table's row for a trial: its grid values, status, steps, time and headline figures."""
    row = {"trial": trial.id, "status": str(status), **trial.axes}  # text from here: the table's edge
    figures = dict.fromkeys(METRICS)
    if meta is not None:
        row |= {"step": meta.get("step"), "seconds": round((meta.get("training") or {}).get("seconds")
                                                            or (meta.get("history") or [{}])[-1].get("seconds", 0), 2)}
        sweep = meta.get("sweep") or {}
        row["diagnose_seconds"] = sweep.get("diagnose_seconds")
        entry = (meta.get("diagnostics") or {}).get("results")
        if entry:
            figures = headline(from_dict(entry))
        evaluation = (meta.get("evaluation") or {}).get("results") or {}
        figures["ELBO"] = evaluation.get("elbo", figures["ELBO"])
    return row | figures | {"message": message}


def recorded_digest(meta: dict) -> str | None:
    """The digest of the run a trial's sidecar (or failure note) records: its own, or for a trial trained
    before digests were recorded, that of the command it recorded."""
    digest = (meta.get("sweep") or {}).get("digest") or meta.get("digest")
    if digest or not meta.get("command"):
        return digest
    words = shlex.split(meta["command"])
    try:
        given, settings = options.read_words(words[words.index("train") + 1:])
        config = options.typed(options.run_config(given, settings))
    except (LabError, ValueError):
        return None
    return options.digest(config, given.get("steps"), given.get("epochs"), given.get("live_every", LIVE_EVERY))


def _progress_of(trial: Trial, meta: Sidecar) -> TrialStatus:
    """'done', 'partial' (resumable or still to record) or 'stale' (trained as another run)."""
    if recorded_digest(meta) != trial.digest:
        return TrialStatus.STALE
    if meta.get("diagnostics") and meta.get("step") == meta.get("target_steps"):
        return TrialStatus.DONE
    return TrialStatus.PARTIAL


def status(folder, trial: Trial) -> tuple[TrialStatus, Sidecar | None]:
    """Where a trial stands in its folder: ('new' | 'done' | 'partial' | 'failed' | 'stale', its sidecar)."""
    fail = failure_path(folder, trial)
    if fail.exists():
        try:
            failed = json.loads(fail.read_text())
        except (OSError, ValueError):
            failed = {}
        if recorded_digest(failed) == trial.digest:
            return TrialStatus.FAILED, failed
    meta_path = checkpoint.paths(trial_path(folder, trial))[1]
    if not meta_path.exists():
        return TrialStatus.NEW, None
    try:
        meta = checkpoint.read_sidecar(meta_path)
    except LabError:
        return TrialStatus.PARTIAL, None  # a damaged sidecar: the trial trains again from its start
    return _progress_of(trial, meta), meta


def run_trial(trial: Trial, folder: str, threads: int = 1, save_every: str = SAVE_EVERY) -> dict:
    """Train one trial to its step count (resuming its checkpoint if one is there), record its diagnostics,
    and return its results row. A failure (divergence, a setting the model refuses, missing data) is recorded
    in FOLDER/trials/ID.failed.json and returned as a failed row; it never raises but for an interrupt."""
    torch.set_num_threads(threads)  # the same threads on every backend: the same numbers
    path, fail = trial_path(folder, trial), failure_path(folder, trial)
    state, meta = status(folder, trial)
    if state == TrialStatus.DONE:
        return row_of(trial, meta, TrialStatus.DONE)
    if state == TrialStatus.STALE:
        raise LabError(f"{checkpoint.paths(path)[1]} was trained as another run ({meta.get('command')}); "
                       f"give the sweep another name or --out")
    try:
        config = trial.config
        data = dataset(config.data)
        total = trial.total_steps(len(data.train_x))
        sweep = {"trial": trial.id, "axes": trial.axes, "digest": trial.digest}
        if meta is not None and meta.get("training") and meta.get("step", 0) < total:
            trainer = Trainer.load(path, data)
        elif meta is not None and meta.get("step") == total:
            trainer = None  # trained; only its diagnostics are missing
        else:
            trainer = Trainer(config, data, live_every=trial.live_every, snapshot_mb=0)  # a grid's trials keep only their end
        if trainer is not None:
            fields = {"command": trial.command, "target_steps": total, "sweep": sweep}
            trainer.autosave(path, save_every, **fields)
            try:
                control = train_to(trainer, total, chunk=100)  # the one training loop (core.control)
            except KeyboardInterrupt:
                trainer.save(path, resumable=True, **fields)
                raise
            trainer.save(path, **fields)  # when it failed, the last good weights: a look at what went wrong
            if control.state != RunState.DONE:
                raise LabError(control.error)
        bundle = checkpoint.load(path)
        started = time.perf_counter()
        record(path, bundle, data)
        seconds = round(time.perf_counter() - started, 2)
        checkpoint.annotate(path, sweep=sweep | {"diagnose_seconds": seconds})
        return row_of(trial, checkpoint.read_sidecar(checkpoint.paths(path)[1]), TrialStatus.DONE)
    except LabError as e:
        message = str(e)
    fail.parent.mkdir(parents=True, exist_ok=True)
    fail.write_text(json.dumps({"command": trial.command, "digest": trial.digest, "message": message}))
    return row_of(trial, None, TrialStatus.FAILED, message)


# ------------------------------------------------------------------ the results table and progress


def write_rows(folder, rows: list[dict]):
    """FOLDER/results.csv, one row per trial in spec order, replaced atomically."""
    columns = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path = Path(folder) / "results.csv"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(buffer.getvalue())
    os.replace(tmp, path)


def read_rows(folder) -> list[dict]:
    """results.csv as dicts of strings (empty where a figure is missing)."""
    path = Path(folder) / "results.csv"
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


class Progress:
    """Trials done, running and failed, on a tqdm bar and in FOLDER/progress.json (which the Sweeps page
    reads to know a sweep is still running and refresh)."""

    def __init__(self, folder: Path, trials: list[Trial], rows: dict, backend: str, bar: bool = True):
        self.folder, self.trials, self.rows, self.backend = folder, trials, rows, backend
        self.running: set[str] = set()
        done = sum(r["status"] != TrialStatus.PENDING for r in rows.values())
        self.bar = progress.bar(total=len(trials), initial=done, unit="trial", disable=not bar, dynamic_ncols=True,
                        file=sys.stderr)
        self.started = time.time()
        self.write()

    def counts(self) -> dict:
        statuses = [r["status"] for r in self.rows.values()]
        return {"total": len(self.trials), "done": statuses.count(TrialStatus.DONE),
                "failed": statuses.count(TrialStatus.FAILED),
                "running": len(self.running)}

    def start(self, trial_id: str):
        self.running.add(trial_id)
        self.write()

    def finish(self, trial: Trial, row: dict):
        self.running.discard(trial.id)
        self.rows[trial.id] = row
        self.bar.update(1)
        if row["status"] == TrialStatus.FAILED:
            self.bar.write(f"trial {trial.id} failed: {row['message']}")
        write_rows(self.folder, [self.rows[t.id] for t in self.trials])
        self.write()

    def write(self, finished: bool = False):
        counts = self.counts()
        self.bar.set_postfix(running=counts["running"], failed=counts["failed"], refresh=False)
        state = {**counts, "backend": self.backend, "pid": os.getpid(), "started": self.started,
                 "updated": time.time(), "finished": finished}
        path = self.folder / "progress.json"
        tmp = path.with_name(f".progress.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, path)

    def close(self):
        self.write(finished=True)
        self.bar.close()


def is_running(folder, stale_after: float = 60.0) -> bool:
    """Whether a sweep in this folder is running now (its progress file was written recently)."""
    try:
        state = json.loads((Path(folder) / "progress.json").read_text())
    except (OSError, ValueError):
        return False
    return not state.get("finished") and time.time() - float(state.get("updated", 0)) < stale_after


# ------------------------------------------------------------------ the pilot and the estimate


@dataclass
class Estimate:
    step_seconds: dict        # objective -> seconds per step, measured
    diagnose_seconds: dict    # objective -> seconds for the recorded diagnostics, measured
    trial_seconds: float      # all trials to run, one after another
    pilot_seconds: float

    def wall(self, workers: int) -> float:
        return self.trial_seconds / max(1, workers)


def pilot(trials: list[Trial], threads: int = 1, steps: int = 10) -> Estimate:
    """Time `steps` steps and one run of the diagnostics of each objective, on its largest trial, and
    extrapolate to every trial. The pilot saves nothing."""
    started = time.perf_counter()
    torch.set_num_threads(threads)
    largest = {}
    for trial in trials:
        key = trial.axes["objective"]
        if key not in largest or trial.config.model.latent_dim > largest[key].config.model.latent_dim:
            largest[key] = trial
    step_seconds, diagnose_seconds = {}, {}
    for objective, trial in largest.items():
        config = trial.config
        trainer = Trainer(config, dataset(config.data), live_every=0, snapshot_mb=0)
        trainer.step(2)  # the first steps allocate
        t0 = time.perf_counter()
        trainer.step(steps)
        step_seconds[objective] = (time.perf_counter() - t0) / steps
        t0 = time.perf_counter()
        model = trainer.snapshot()
        evaluate(model, trainer.data, n=EVAL_N)  # what record() measures
        run_all(model, trainer.data)
        diagnose_seconds[objective] = time.perf_counter() - t0
    total = 0.0
    for trial in trials:
        objective = trial.axes["objective"]
        n_train = len(dataset(trial.config.data).train_x)
        total += trial.total_steps(n_train) * step_seconds[objective] + diagnose_seconds[objective]
    return Estimate(step_seconds, diagnose_seconds, total, time.perf_counter() - started)


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# ------------------------------------------------------------------ backends


def default_workers(threads: int = 1) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // threads)


def _local_trial(trial: Trial, folder: str, threads: int, environ: dict) -> dict:
    """run_trial in a worker, with the driver's environment of now (core.remote.adopt_environment)."""
    adopt_environment(environ)
    return run_trial(trial, folder, threads)


def run_local(folder: Path, todo: list[Trial], progress: Progress, workers: int, threads: int):
    """The trials in `workers` child processes (started as the training processes are, core.remote.
    start_context: never a plain fork, which can hang a torch with threads), `threads` threads each."""
    import concurrent.futures as cf

    with cf.ProcessPoolExecutor(workers, mp_context=start_context()) as pool:
        environ = dict(os.environ)
        futures = {pool.submit(_local_trial, trial, str(folder), threads, environ): trial for trial in todo}
        pending = set(futures)
        try:
            while pending:
                # The pool takes trials in the order they were submitted: the first `workers` pending are running.
                progress.running = set(list(t.id for f, t in futures.items() if f in pending)[:workers])
                done, pending = cf.wait(pending, timeout=10, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    trial = futures[fut]
                    try:
                        row = fut.result()
                    except LabError as e:
                        row = row_of(trial, None, TrialStatus.FAILED, str(e))
                    progress.finish(trial, row)
                progress.write()  # a heartbeat for the Sweeps page, even while no trial ends
        except KeyboardInterrupt:
            pool.shutdown(wait=True, cancel_futures=True)  # the running trials save as they stop
            raise


def check_ray_address(address: str):
    """One clear line for an address nothing answers at, before Ray waits on it."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as e:
        raise ConfigError(f"no Ray cluster answers at {address!r} ({e}); start one with `ray start --head` "
                          f"and give the address it prints, e.g. --ray 127.0.0.1:6379") from None


def _tune_trial(config: dict):
    """Ray Tune's trainable: the same trial function, its row reported as the trial's result."""
    from ray import tune

    trial = Trial.from_dict(config["trial"])
    tune.report({"row": json.dumps(run_trial(trial, config["folder"], config["threads"]))})


def run_ray(folder: Path, todo: list[Trial], progress: Progress, address: str, workers: int | None, threads: int):
    """The trials as Ray Tune trials: each asks for `threads` CPUs, and a GPU when the cluster has them."""
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # our table is the log
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_RESULT_BUFFER_LENGTH", "0")
    check_ray_address(address)
    if address != "local" and "RAY_AUTH_MODE" not in os.environ and (
            os.environ.get("RAY_AUTH_TOKEN") or (Path.home() / ".ray" / "auth_token").exists()):
        # `ray start` enables token authentication and writes the token there; a driver that joins the
        # cluster sends it only when told to, before Ray is imported.
        os.environ["RAY_AUTH_MODE"] = "token"
    import ray
    from ray import tune

    root = Path(__file__).resolve().parent
    env = {"env_vars": {k: v for k, v in os.environ.items() if k.startswith("VAELAB_")}, "py_modules": [str(root)]}
    try:
        if address == "local":
            ray.init(num_cpus=(workers or default_workers(threads)) * threads, include_dashboard=False,
                     log_to_driver=False, logging_level="ERROR", runtime_env=env)
        else:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR", runtime_env=env)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ConfigError(f"cannot connect to Ray at {address!r}: {str(e).splitlines()[0]} (a cluster with token "
                          f"authentication needs its token in $RAY_AUTH_TOKEN or ~/.ray/auth_token)") from None
    by_id = {t.id: t for t in todo}

    class Report(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            progress.start(trial.config["trial"]["id"])

        def on_trial_result(self, iteration, trials, trial, result, **info):
            row = json.loads(result["row"])
            progress.finish(by_id[row["trial"]], row)

        def on_trial_error(self, iteration, trials, trial, **info):
            t = by_id[trial.config["trial"]["id"]]
            progress.finish(t, row_of(t, None, TrialStatus.FAILED, f"Ray reported an error: {trial.error_file or 'unknown'}"))

        def on_step_end(self, iteration, trials, **info):
            if time.time() - progress_written[0] > 10:
                progress.write()
                progress_written[0] = time.time()

    progress_written = [time.time()]
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        resources = {"cpu": threads, "gpu": 1 if gpus else 0}
        space = {"trial": tune.grid_search([t.to_dict() for t in todo]), "folder": str(folder.resolve()),
                 "threads": threads}
        tuner = tune.Tuner(
            tune.with_resources(_tune_trial, resources),
            param_space=space,
            tune_config=tune.TuneConfig(max_concurrent_trials=workers, reuse_actors=True),
            run_config=tune.RunConfig(name="ray", storage_path=str((folder / "ray").resolve()), verbose=0,
                                      callbacks=[Report()], log_to_file=True))
        tuner.fit()
    finally:
        ray.shutdown()


def survey(folder, trials: list[Trial]) -> dict[str, tuple[str, dict | None]]:
    """{trial id: status(folder, trial)} for every trial; refuses, by name, a trial trained by another
    command (the spec's fixed settings changed since)."""
    found = {trial.id: status(folder, trial) for trial in trials}
    for trial in trials:
        state, meta = found[trial.id]
        if state == TrialStatus.STALE:
            raise ConfigError(f"{folder}/trials/{trial.id} was trained as another run ({meta.get('command')}); "
                              f"this spec asks for `{trial.command}`: give the sweep another name or --out")
    return found


def to_run(trials: list[Trial], found: dict, retry_failed: bool = False) -> list[Trial]:
    """The trials a run trains: all but the done ones and (unless retried) the failed ones."""
    return [t for t in trials if found[t.id][0] != TrialStatus.DONE and (retry_failed or found[t.id][0] != TrialStatus.FAILED)]


def run(spec: Spec, out, workers: int | None = None, threads: int = 1, ray: str | None = None,
        retry_failed: bool = False, bar: bool = True, found: dict | None = None) -> tuple[Path, list[dict]]:
    """Run a sweep's trials not yet done into OUT/NAME; returns the folder and every trial's row.
    found: what survey() found in the folder, if the caller has looked already."""
    folder = Path(out) / spec.name
    found = found if found is not None else survey(folder, spec.trials)
    (folder / "trials").mkdir(parents=True, exist_ok=True)
    if spec.path is not None:
        (folder / "spec.toml").write_text(spec.path.read_text())
    todo = to_run(spec.trials, found, retry_failed)
    pending, rows = {t.id for t in todo}, {}
    for trial in spec.trials:
        state, meta = found[trial.id]
        if trial.id in pending:
            failure_path(folder, trial).unlink(missing_ok=True)
            rows[trial.id] = row_of(trial, None, TrialStatus.PENDING)
        elif state == TrialStatus.DONE:
            rows[trial.id] = row_of(trial, meta, TrialStatus.DONE)
        else:
            rows[trial.id] = row_of(trial, None, TrialStatus.FAILED, meta.get("message", ""))
    progress = Progress(folder, spec.trials, rows, "ray" if ray else "local", bar=bar)
    write_rows(folder, [rows[t.id] for t in spec.trials])
    try:
        if todo and ray:
            run_ray(folder, todo, progress, ray, workers, threads)
        elif todo:
            run_local(folder, todo, progress, workers or default_workers(threads), threads)
    finally:
        progress.close()
    return folder, [rows[t.id] for t in spec.trials]


def number(value) -> float | None:
    """A table cell as a number (a CSV holds strings), or None where it is empty or not one."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


@dataclass
class PhaseCells:
    """One objective's trials on a grid of beta (columns) x latent size (rows), over seeds."""
    objective: str
    x: list          # the beta values, ascending
    y: list          # the latent sizes, ascending
    mean: list       # [row][column]: the metric's mean over seeds, None where no trial finished
    sd: list         # the standard deviation over seeds (0 for one seed), None likewise
    n: list          # how many seeds were averaged
    trials: list     # [row][column]: the trial ids in that cell


def phase_axes(rows: list[dict]) -> tuple[str, str]:
    """The phase diagram's axes: the sweep's grid keys other than the objective and the seed, in the spec's order
    (results.csv holds them between 'status' and 'step'): beta and the latent size for digits-collapse, the
    PixelCNN's layers alone for digits-strong-decoder (then y is "", one row a diagram)."""
    keys = list(rows[0]) if rows else []
    grid = keys[keys.index("status") + 1:keys.index("step")] if {"status", "step"} <= set(keys) else []
    axes = [k for k in grid if k not in ("objective", "seed")] or ["beta", "latent"]
    return axes[0], axes[1] if len(axes) > 1 else ""


def phase_cells(rows: list[dict], metric: str, x: str = "beta", y: str = "latent") -> list[PhaseCells]:
    """The collapse phase diagram's numbers: for each objective, the metric averaged over the trials
    (seeds, and any other axis) that share an x and a y (a beta and a latent size by default; y "": one row).
    Failed trials count in no mean."""
    objectives = list(dict.fromkeys(r.get("objective", "") for r in rows))
    diagrams = []
    for objective in objectives:
        own = [r for r in rows if r.get("objective", "") == objective]
        xs = sorted({number(r.get(x)) for r in own} - {None}) or [None]
        ys = sorted({number(r.get(y)) for r in own} - {None}) or [None]
        cells = {(a, b): [] for a in ys for b in xs}
        for r in own:
            cells[(number(r.get(y)), number(r.get(x)))].append(r)
        mean, sd, n, trials = [], [], [], []
        for a in ys:
            mean.append([]), sd.append([]), n.append([]), trials.append([])
            for b in xs:
                values = [v for v in (number(r.get(metric)) for r in cells[(a, b)] if r.get("status") == "done")
                          if v is not None]
                m = sum(values) / len(values) if values else None
                spread = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
                mean[-1].append(m)
                sd[-1].append(spread if values else None)
                n[-1].append(len(values))
                trials[-1].append([r["trial"] for r in cells[(a, b)]])
        diagrams.append(PhaseCells(objective, xs, ys, mean, sd, n, trials))
    return diagrams
