"""The training engine: a stepper you build, step, read and change between steps.

    trainer = Trainer(RunConfig(data=DataSpec("mnist"), objective="beta-vae"))
    trainer.step(100)              # run 100 steps here and now
    trainer.history[-1]            # {'step': 100, 'loss': ..., 'recon': ..., 'kl_per_dim': [...], ...}
    trainer.set_beta(8.0)          # change beta or the learning rate between steps,
    model = trainer.snapshot()     # take the model as it is now (a core.bundle.Bundle)

Running it in the background, pausing and stopping belong to a run (core.control: a thread, a child
process, or a recorded run), whose controller owns the state.

The whole dataset sits on the training device as one tensor; a minibatch is an index into it.
Each trainer owns its random stream, so runs racing side by side give the numbers each gives alone.
Every `live_every` steps the live diagnostics (KL, active units, mutual information, code usage; see
core.diagnostics.LIVE) run on a fixed batch of held-out images and land in `trainer.live`; they draw
from their own seeded stream, so watching a run does not change it.
A step whose loss, any term or the gradient is not finite is not applied: step() raises Diverged with a
message naming the step and the term, the weights stay those of the last good step, and every later
step() raises it again.

A run survives its process: `save(path, resumable=True)` also writes the optimizer's state, the random
stream and the batch order, `autosave(path, every)` does so periodically, and `Trainer.resume(path)`
continues exactly where the run was (on the CPU, bit for bit). Along the way the trainer keeps its weights
at the steps core.snapshots picks (dense early, sparse later, within `snapshot_mb`), and a saved
checkpoint carries them, so any view can go back to step 600 of the run. `Trainer.branch(path, ...)` starts a new
run from a saved step of another, with other knob values or learning rate, and records its parent.
"""
from __future__ import annotations

import contextlib
import copy
import math
import signal
import threading
import time
import uuid
from dataclasses import replace

import torch

from . import checkpoint, limits, settings, snapshots
from . import data as datasets
from .bundle import Bundle, Ref
from .config import (LIVE_BATCH, LIVE_EVERY, SYNC_EVERY, RunConfig, check_lr, epochs, finite_or_none, save_every,
                     steps_per_epoch)
from .diagnostics import LIVE
from .errors import CheckpointError, ConfigError, LabError
from .evaluate import eval_split
from .models import VAE
from .objectives import build as build_objective
from . import weights as weights_io
from .rng import RNG_LOCK, cuda_devices, seeded


class Diverged(LabError):
    """Training produced a NaN or inf; the weights were left at the last good step."""


def pick_device(name: str = "auto") -> torch.device:
    """'auto' takes cuda, then mps, then cpu; a named device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for, but no CUDA GPU is available; use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' asked for, but MPS is not available; use --device cpu")
    return device


def describe_device(device: torch.device, threads: int | None = None) -> str:
    """'cuda (NVIDIA H100 ...)', 'cpu', or with the training process's torch threads 'cpu, 2 threads'."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if threads is None:
        return device.type
    return f"{device.type}, {threads} thread{'s' if threads != 1 else ''}"


def shaped(config: RunConfig, info: datasets.DataInfo, objective) -> RunConfig:
    """The config with the model shaped for the data and adjusted by the objective (likelihood 'auto'
    takes the dataset's)."""
    likelihood = info.likelihood if config.model.likelihood == "auto" else config.model.likelihood
    model = objective.configure_model(replace(config.model, image_shape=info.shape, likelihood=likelihood), info)
    return replace(config, model=model)


def check_run(config: RunConfig, info: datasets.DataInfo):
    """Everything about a run that can be refused before a process starts for it: its device, its
    objective's settings, its size on this data. Raises ConfigError with one line."""
    pick_device(config.device)
    check_size(shaped(config, info, build_objective(config.objective, config.settings)))


def build_model(config: RunConfig, info: datasets.DataInfo, objective) -> tuple[RunConfig, VAE]:
    """The model the config asks for, shaped for the data and adjusted by the objective; returns the
    config with those filled in."""
    config = shaped(config, info, objective)
    check_size(config)
    vae = VAE(config.model)
    objective.attach(vae)
    return config, vae


def check_size(config: RunConfig) -> int:
    """The run's weights counted on the meta device (no memory, no random draws) and its step's memory
    estimated (core.limits), before any tensor is allocated; returns the weight count."""
    with torch.device("meta"):
        network = VAE(config.model)
        objective = build_objective(config.objective, config.settings, network)
    count = sum(p.numel() for p in (*network.parameters(), *objective.parameters()))
    limits.check("parameters", count, "the number of weights")
    limits.check_memory(config.model, config.settings, config.batch_size, count)
    return count


def compile_loss(objective, mode: str):
    """The objective's forward through torch.compile. The step number is a dynamic input, so a new
    step does not compile again."""
    backend = settings.get().compile_backend  # "eager" tests the plumbing fast
    options = {"mode": mode} if backend == "inductor" and mode != "default" else {}
    return torch.compile(objective, backend=backend, dynamic=None, **options)


@contextlib.contextmanager
def whole_steps():
    """Hold a SIGINT back until the step under way is done: one landing inside the optimizer's update
    would leave weights, optimizer state and step counter out of step with each other. Yields deliver(),
    to call between steps: it hands a held-back signal to the handler that was there (Python's default
    raises KeyboardInterrupt). Only the main thread receives signals; elsewhere this does nothing."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield lambda: None
        return
    caught = []

    def hold(*args):
        caught.append(args)

    def deliver():
        if caught:
            args = caught.pop()
            caught.clear()
            signal.signal(signal.SIGINT, previous)
            previous(*args)
            signal.signal(signal.SIGINT, hold)  # the handler did not stop the run: go on holding

    signal.signal(signal.SIGINT, hold)
    try:
        yield deliver
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            previous(*caught[-1])


class Trainer:
    def __init__(self, config: RunConfig, data: datasets.Dataset | None = None, live_every: int = LIVE_EVERY,
                 live_batch: int = LIVE_BATCH, sync_every: int | None = None,
                 snapshot_mb: float = snapshots.BUDGET_MB):
        self.device = pick_device(config.device)
        self.run_id = uuid.uuid4().hex  # this run's identity: its snapshots are (run_id, step)
        self.data = data if data is not None else datasets.load(config.data)
        self.objective = build_objective(config.objective, config.settings)
        with self._rng(seed=config.seed):
            self.config, self.model = build_model(config, self.data.info, self.objective)
        self.model.to(self.device)
        self.objective.to(self.device)
        self.params = list(self.model.parameters()) + list(self.objective.parameters())
        self.optimizer = config.make_optimizer(self.params)
        self._loss = self.objective if config.compile == "off" else compile_loss(self.objective, config.compile)
        # How many steps' logged numbers are gathered in one host copy. On the CPU that copy is free, so
        # every step is checked before it is applied; on a GPU a copy per step would stall the queue.
        self.sync_every = sync_every or (1 if self.device.type == "cpu" else SYNC_EVERY)
        fused = self.optimizer.defaults.get("fused")
        self._found_inf = torch.zeros((), device=self.device) if self.sync_every > 1 and fused else None
        if self._found_inf is not None:
            self.optimizer.found_inf = self._found_inf
        self._pending: list[tuple] = []  # (names, values, beta, lr, step, seconds) still on the device
        self.train_x = self.data.train_x.to(self.device)
        self.train_y = self.data.train_y.to(self.device)
        self.binarize = self.data.spec.binarize == "dynamic"
        self.batch_size = min(config.batch_size, len(self.train_x))

        self.step_count = 0
        self.seconds = 0.0          # time spent in steps, pauses excluded
        self.history: list[dict] = []
        self.live: list[dict] = []  # {'step', 'kl', 'kl_per_dim', 'au', 'mi', ...} every live_every steps
        self.live_every = live_every
        with seeded(self.device, config.seed):
            live_x, live_y = eval_split(self.data, live_batch)
        self._live_x, self._live_y = live_x.to(self.device), live_y.to(self.device)
        self.diverged: str | None = None  # the message of the step that diverged; no step after it
        self._order, self._pos = None, 0
        self._lock = threading.RLock()
        self.parent: dict | None = None  # for a branch: the run, step and weights it started from
        self._autosave = None            # (path, ("steps" | "seconds", every), time of the last save)
        self.snapshot_mb, self.snapshot_every = float(snapshot_mb), snapshots.EVERY
        self.snapshots: dict[int, dict] = {}  # step -> CPU copies of the weights then (core.snapshots)
        self._keep_snapshot()

    # ------------------------------------------------------------ stepping

    @property
    def epoch(self) -> float:
        return epochs(self.step_count, self.batch_size, len(self.train_x))

    @property
    def steps_per_epoch(self) -> int:
        return steps_per_epoch(self.batch_size, len(self.train_x))

    def step(self, n: int = 1) -> list[dict]:
        """Run n optimizer steps now; returns their metric rows. Raises Diverged. A Ctrl-C raises
        KeyboardInterrupt between two steps, never inside one, so the run can be saved as it is."""
        first = len(self.history)
        with whole_steps() as deliver:
            try:
                for _ in range(n):
                    with self._lock:
                        if self.diverged:
                            raise Diverged(self.diverged)
                        self._step()
                        if len(self._pending) >= self.sync_every:
                            self._gather()
                    deliver()
            finally:
                with self._lock:
                    self._gather()
        return self.history[first:]

    def _next_batch(self):
        if self._order is None or self._pos >= len(self._order):
            self._order = torch.randperm(len(self.train_x), device=self.device)
            self._pos = 0
        idx = self._order[self._pos:self._pos + self.batch_size]
        self._pos += self.batch_size
        x = self.train_x[idx]
        return (torch.bernoulli(x) if self.binarize else x), self.train_y[idx]

    def _step(self):
        t0 = time.perf_counter()
        with self._rng():
            x, y = self._next_batch()
            if not self.model.training:  # only the live rows switch it (a walk over every module)
                self.model.train()
            out = self._loss(self.model, x, y, self.step_count)
            self.optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None])
        scalars = {"loss": out.loss, **{k: v for k, v in out.terms.items() if v.dim() == 0}, "grad_norm": grad_norm}
        values = torch.cat([torch.stack([v.detach().float() for v in scalars.values()]),
                            out.terms["kl_per_dim"].detach().float()])
        names, beta, lr = tuple(scalars), self.objective.beta, self.lr
        if self._found_inf is None:
            if not values.isfinite().all():
                self._pending.append((names, values, beta, lr, self.step_count + 1, None))
                self._gather()  # raises Diverged before the bad step is applied
        else:
            # Sticky on the device: once a step is not finite, this and every later update is skipped by
            # the fused optimizer itself (as under a GradScaler), so no step waits for the host.
            self._found_inf.logical_or_(~values.isfinite().all())
        self.optimizer.step()
        self.step_count += 1
        self.seconds += time.perf_counter() - t0
        self._pending.append((names, values, beta, lr, self.step_count, self.seconds))
        if self.snapshot_mb and snapshots.due(self.step_count, self.snapshot_every):
            self._keep_snapshot()
        if self.live_every and self.step_count % self.live_every == 0:
            self._gather()
            self.live.append(self._live_row())
        if self._autosave:
            self._autosave_if_due()

    def _gather(self):
        """Bring the logged numbers of the steps taken since the last gather to the host in one copy and
        append their rows to the history. A step with a non-finite number ends the run there: the
        weights are those of the step before it (no later update was applied), and Diverged is raised."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        flat = torch.cat([p[1] for p in pending]).tolist()
        rows, at = [], 0
        for names, values, beta, lr, step, seconds in pending:
            v, at = flat[at:at + len(values)], at + len(values)
            row = dict(zip(names, v[:len(names)]))
            bad = [k for k, x in row.items() if not math.isfinite(x)]
            if bad or not all(map(math.isfinite, v[len(names):])):
                term = ", ".join(bad) if bad else "kl_per_dim"
                self.diverged = (f"training diverged at step {step}: {term} became non-finite "
                                 f"({', '.join(f'{k}={row[k]}' for k in bad) or 'a KL dimension'}); the weights "
                                 f"are kept from step {step - 1}. Try a lower learning rate.")
                self.optimizer.zero_grad(set_to_none=True)
                self.step_count = step - 1
                self.snapshots = {s: t for s, t in self.snapshots.items() if s <= self.step_count}
                self.history += rows
                raise Diverged(self.diverged)
            row.update(step=step, kl_per_dim=v[len(names):], beta=beta, lr=lr, seconds=seconds)
            rows.append(row)
        self.history += rows

    @torch.no_grad()
    def _live_row(self) -> dict:
        """The live diagnostics on the fixed held-out batch. They draw from a stream seeded by the step,
        inside this trainer's own, so the training stream is exactly as if they had not run."""
        row = {"step": self.step_count}
        self.model.eval()  # batch norm reads its running statistics and leaves them as they are
        with self._rng(), seeded(self.device, self.step_count):
            q = self.objective.posterior(self.model, self._live_x, self._live_y).for_live()
            for _, live in LIVE.items():
                row.update(live(q))
        return {k: finite_or_none(v) for k, v in row.items()}

    @contextlib.contextmanager
    def _rng(self, seed: int | None = None):
        """Swap this trainer's random stream into torch's global one for the duration."""
        cuda = cuda_devices(self.device)
        with RNG_LOCK, torch.random.fork_rng(devices=cuda):
            if seed is not None:
                torch.manual_seed(seed)
            else:
                torch.set_rng_state(self._cpu_rng)
                if cuda:
                    torch.cuda.set_rng_state(self._cuda_rng, cuda[0])
            yield
            self._cpu_rng = torch.get_rng_state()
            if cuda:
                self._cuda_rng = torch.cuda.get_rng_state(cuda[0])

    def _keep_snapshot(self):
        """Keep the weights as they are now, as they are stored (float16, core.snapshots.compact), and thin the
        kept steps to the budget, counted in those bytes."""
        if not self.snapshot_mb:
            return
        self.snapshots[self.step_count] = snapshots.compact(weights_io.state_tensors(self.model, self.objective))
        size = snapshots.nbytes(self.snapshots[self.step_count])
        kept, self.snapshot_every = snapshots.thin(list(self.snapshots), self.snapshot_every,
                                                   snapshots.limit(self.snapshot_mb, size))
        self.snapshots = {s: self.snapshots[s] for s in kept}

    def snapshot_state(self) -> tuple[dict, dict]:
        """The kept steps for a checkpoint: ({step: tensors, already compact} without the current step, whose
        weights are the checkpoint's own, in float32) and the sidecar's fields (the steps, the grid, the budget)."""
        with self._lock:
            earlier = {s: t for s, t in self.snapshots.items() if s != self.step_count}
            return earlier, {"steps": sorted(self.snapshots), "every": self.snapshot_every,
                             "budget_mb": self.snapshot_mb}

    # ------------------------------------------------------------ changes mid-run

    def set_beta(self, beta: float):
        with self._lock:
            self.objective.set_beta(beta)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def set_lr(self, lr: float):
        lr = check_lr(lr)
        with self._lock:
            for group in self.optimizer.param_groups:
                group["lr"] = lr

    def save(self, path, resumable: bool = False, **extra):
        """Write a checkpoint of the current weights (core.checkpoint.save), with the training state when
        resumable; returns the sidecar's path."""
        with self._lock:
            training = self.training_state() if resumable else None
            parent = {"parent": self.parent} if self.parent else {}
            return checkpoint.save(path, self.snapshot(), training=training, snapshots=self.snapshot_state(),
                                   **parent, **extra)

    # ------------------------------------------------------------ surviving the process

    def autosave(self, path, every=None, **extra):
        """Write a resumable checkpoint to `path` every N steps or every so many seconds of the run
        (core.config.save_every: '500', '5m'; None or '0': off), from inside step()."""
        schedule = save_every(every) if every is not None else ("off", 0)
        self._autosave = None if schedule[0] == "off" else (path, schedule, time.monotonic(), extra)

    def _autosave_if_due(self):
        path, (kind, every), last, extra = self._autosave
        due = self.step_count % every == 0 if kind == "steps" else time.monotonic() - last >= every
        if due:
            self.save(path, resumable=True, **extra)
            self._autosave = (path, (kind, every), time.monotonic(), extra)

    def training_state(self) -> tuple[dict, dict]:
        """What a resumed run needs beyond the weights: tensors (the optimizer's, the random stream, the
        batch order) and JSON fields (the optimizer's hyperparameters, counters)."""
        with self._lock:
            self._gather()
            tensors, groups = weights_io.optimizer_tensors(self.optimizer)
            tensors["train.rng.cpu"] = self._cpu_rng.clone()
            if cuda_devices(self.device):
                tensors["train.rng.cuda"] = self._cuda_rng.clone()
            if self._order is not None:
                tensors["train.order"] = self._order.cpu()
            fields = {"step": self.step_count, "optimizer": groups, "batch_position": self._pos,
                      "seconds": self.seconds, "live_every": self.live_every, "device": self.device.type,
                      "diverged": self.diverged}
            return tensors, fields

    @classmethod
    def resume(cls, path, data: datasets.Dataset | None = None) -> "Trainer":
        """The run saved at `path` (by save(resumable=True) or autosave), ready to take its next step as if
        it had never stopped. Refuses a checkpoint without training state, a diverged run, and a sidecar
        and weights that disagree, each by name."""
        meta, tensors = checkpoint.read(path)
        training = meta.get("training")
        if training is None:
            raise CheckpointError(f"{checkpoint.paths(path)[1]}: saved without its training state, so it cannot "
                                  f"resume; start a branch from it instead")
        if training.get("diverged"):
            raise CheckpointError(f"{checkpoint.paths(path)[1]}: this run diverged ({training['diverged']}); "
                                  f"branch from it with a lower learning rate instead")
        live_every = training.get("live_every", LIVE_EVERY)
        run_id = meta.get("run_id")
        if not isinstance(live_every, int) or live_every < 0 or not isinstance(run_id, str):
            raise CheckpointError(f"{checkpoint.paths(path)[1]}: its training state is malformed "
                                  f"(live_every {live_every!r}, run_id {run_id!r})")
        trainer = cls(_config_of(meta, path), data, live_every=live_every)
        trainer._restore(meta, tensors, path)
        trainer.run_id, trainer.parent = run_id, meta.get("parent")
        return trainer

    @classmethod
    def branch(cls, path, data: datasets.Dataset | None = None, settings: dict | None = None,
               lr: float | None = None, live_every: int = LIVE_EVERY) -> "Trainer":
        """A new run from the step saved at `path`: its weights, history and (if saved) optimizer state and
        random stream, with the objective's knobs (beta among them) and the learning rate changed as
        given. Its `parent` (saved in its sidecar) names the run, the step and the weights it came from."""
        meta, tensors = checkpoint.read(path)
        config = _config_of(meta, path)
        config = replace(config, settings={**config.settings, **(settings or {})}, lr=check_lr(lr or config.lr))
        trainer = cls(config, data, live_every=live_every)
        trainer._restore(meta, tensors, path, optimizer=meta.get("training") is not None)
        if lr is not None:
            trainer.set_lr(lr)
        trainer.parent = {"run_id": meta.get("run_id"), "step": trainer.step_count,
                          "weights_sha256": meta["weights_sha256"], "path": str(checkpoint.paths(path)[1])}
        return trainer

    def _restore(self, meta: dict, tensors: dict, path, optimizer: bool = True):
        """Take the saved run's weights, counters, history and (optimizer) training state."""
        where = checkpoint.paths(path)[1]
        training, step, history = meta.get("training") or {}, meta.get("step", 0), meta.get("history", [])
        # A saved history is thinned (core.checkpoint.thin_history), so its rows are not counted: its last row
        # is the saved step's.
        last = history[-1]["step"] if history else 0
        if last != step or (training and training.get("step") != step):
            raise CheckpointError(f"{where}: the sidecar and the weights disagree (step {step}, history up to "
                                  f"step {last}, training state at step {training.get('step')})")
        n_train = (meta.get("data") or {}).get("n_train")
        if optimizer and n_train is not None and n_train != len(self.train_x):
            raise CheckpointError(f"{where}: the run trained on {n_train:,} images and {len(self.train_x):,} are "
                                  f"here ({self.data.info.name}); it cannot resume exactly on other data")
        try:
            self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            self.objective.load_state_dict({k[10:]: v for k, v in tensors.items() if k.startswith("objective.")})
            if optimizer:
                weights_io.load_optimizer(self.optimizer, tensors, training["optimizer"])
                steps = {int(v) for k, v in tensors.items() if k.startswith("train.optimizer.") and k.endswith(".step")}
                if steps - {step}:
                    raise ValueError(f"the optimizer's state is at step {sorted(steps)}")
                self._cpu_rng = tensors["train.rng.cpu"].clone()
                if cuda_devices(self.device) and training.get("device") == "cuda" and "train.rng.cuda" in tensors:
                    self._cuda_rng = tensors["train.rng.cuda"].clone()
                order = tensors.get("train.order")
                if order is not None and (order.dim() != 1 or len(order) != len(self.train_x)
                                          or order.dtype != torch.int64
                                          or not torch.equal(order.sort().values, torch.arange(len(order)))):
                    raise ValueError(f"the saved batch order is not a permutation of {len(self.train_x):,} images")
                self._order = None if order is None else order.to(self.device)
                self._pos = int(training["batch_position"])
                self.seconds = float(training.get("seconds", 0.0))
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{where}: the sidecar and the weights disagree ({e})") from None
        self.step_count = step
        self.history = list(history)
        self.live = [row for row in meta.get("live", []) if row.get("step", 0) <= step]
        self._restore_snapshots(meta, tensors)

    def _restore_snapshots(self, meta: dict, tensors: dict):
        """The saved run's kept steps (its own step's weights are the file's), and its grid and budget. They are
        held as the run keeps them (compact), whether the file stored them so or, written before, as float32."""
        fields = meta.get("snapshots") or {}
        kept = {s: snapshots.compact(t) for s, t in snapshots.unpack(tensors).items()}
        if self.step_count in fields.get("steps", []):
            kept[self.step_count] = snapshots.compact(weights_io.state_tensors(self.model, self.objective))
        self.snapshots = {s: kept[s] for s in sorted(kept) if s <= self.step_count}
        every, budget = fields.get("every", snapshots.EVERY), fields.get("budget_mb", self.snapshot_mb)
        if isinstance(every, int) and every > 0 and isinstance(budget, (int, float)) and budget >= 0:
            self.snapshot_every, self.snapshot_mb = every, float(budget)

    def snapshot(self) -> Bundle:
        """The model as it is now: CPU copies of the network (in eval mode) and the objective with its
        trained parameters, safe to decode from while training goes on, identified as (run_id, step)."""
        with self._lock:
            self._gather()
            return Bundle(copy.deepcopy(self.model).cpu().eval(), copy.deepcopy(self.objective).cpu(),
                          replace(self.config, settings=self.objective.settings()), Ref(self.run_id, self.step_count),
                          self.data.info, len(self.train_x), list(self.history), list(self.live))


def _config_of(meta: dict, path) -> RunConfig:
    try:
        return RunConfig.from_dict(meta["config"])
    except (LabError, KeyError, TypeError, ValueError, ArithmeticError) as e:
        raise CheckpointError(f"{checkpoint.paths(path)[1]}: its run config cannot be read ({e})") from None
