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
After each step the trainer calls its hooks (core.hooks): the kept steps (`trainer.kept`), the live
diagnostics every `live_every` steps on a fixed batch of held-out images (`trainer.live`; they draw from
their own seeded stream, so watching a run does not change it) and the periodic checkpoint.
A step whose loss, any term or the gradient is not finite is not applied: step() raises Diverged with a
message naming the step and the term, the weights stay those of the last good step, and every later
step() raises it again.

A run survives its process: `save(path, resumable=True)` also writes the training state (core.training_state:
the optimizer's state, the random stream, the batch order), `autosave(path, every)` does so periodically, and
`Trainer.load(path)` continues exactly where the run was (on the CPU, bit for bit). Along the way the trainer
keeps its weights at the steps core.snapshots picks (dense early, sparse later, within `snapshot_mb`), and a
saved checkpoint carries them, so any view can go back to step 600 of the run. `Trainer.branch(path, ...)`
starts a new run from a saved step of another, with other knob values or learning rate, and records its parent.
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

from . import checkpoint, limits, settings, snapshots, training_state
from . import data as datasets
from .bundle import Bundle, Ref
from .config import LIVE_BATCH, LIVE_EVERY, SYNC_EVERY, RunConfig, check_lr, epochs, save_every, steps_per_epoch
from .errors import ConfigError, LabError
from .hooks import Autosave, KeptSteps, LiveRows
from .models import VAE
from .objectives import build as build_objective
from .records import HistoryRow, LiveRow
from .rng import RNG_LOCK, cuda_devices


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
    if model.latent_below and objective.name != "iwae":
        raise ConfigError(f"two stochastic layers (latent_below) train with the iwae objective only (k = 1 is their "
                          f"ELBO), not {objective.name!r}")
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
        with self.own_random_stream(seed=config.seed):
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
        self.history: list[HistoryRow] = []
        self.live: list[LiveRow] = []  # every live_every steps (core.hooks.LiveRows)
        self.diverged: str | None = None  # the message of the step that diverged; no step after it
        self._order, self._pos = None, 0
        self._lock = threading.RLock()
        self.parent: dict | None = None  # for a branch: the run, step and weights it started from
        # What happens after a step besides stepping (core.hooks), in this order.
        self.kept = KeptSteps(snapshot_mb)
        self.live_rows = LiveRows(self, live_every, live_batch)
        self.autosaving: Autosave | None = None
        self.kept.keep(self)  # step 0: the initial weights

    # ------------------------------------------------------------ stepping

    @property
    def live_every(self) -> int:
        return self.live_rows.every

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
                            self.gather()
                    deliver()
            finally:
                with self._lock:
                    self.gather()
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
        with self.own_random_stream():
            x, y = self._next_batch()
            if not self.model.training:  # only the live rows switch it (a walk over every module)
                self.model.train()
            self.objective.before_step(self.model, x, y, self._next_batch, self.step_count)
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
                self.gather()  # raises Diverged before the bad step is applied
        else:
            # Sticky on the device: once a step is not finite, this and every later update is skipped by
            # the fused optimizer itself (as under a GradScaler), so no step waits for the host.
            self._found_inf.logical_or_(~values.isfinite().all())
        self.optimizer.step()
        self.step_count += 1
        self.seconds += time.perf_counter() - t0
        self._pending.append((names, values, beta, lr, self.step_count, self.seconds))
        self.kept.after_step(self)
        self.live_rows.after_step(self)
        if self.autosaving is not None:
            self.autosaving.after_step(self)

    def gather(self):
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
                self.kept.drop_after(self.step_count)
                self.history += rows
                raise Diverged(self.diverged)
            row.update(step=step, kl_per_dim=v[len(names):], beta=beta, lr=lr, seconds=seconds)
            rows.append(row)
        self.history += rows

    @contextlib.contextmanager
    def own_random_stream(self, seed: int | None = None):
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
            return checkpoint.save(path, self.snapshot(), training=training, snapshots=self.kept.state(self.step_count),
                                   **parent, **extra)

    # ------------------------------------------------------------ surviving the process

    def autosave(self, path, every=None, **extra):
        """Write a resumable checkpoint to `path` every N steps or every so many seconds of the run
        (core.config.save_every: '500', '5m'; None or '0': off), from inside step() (core.hooks.Autosave)."""
        off = every is None or save_every(every)[0] == "off"
        self.autosaving = None if off else Autosave(path, every, extra)

    def training_state(self) -> tuple[dict, dict]:
        """What a resumed run needs beyond the weights (core.training_state): (tensors, JSON fields)."""
        with self._lock:
            self.gather()
            return training_state.capture(self)

    @classmethod
    def load(cls, path, data: datasets.Dataset | None = None) -> "Trainer":
        """The run saved at `path` with its training state, ready to take its next step exactly as if it had
        never stopped (core.training_state.load)."""
        return training_state.load(cls, path, data)

    @classmethod
    def branch(cls, path, data: datasets.Dataset | None = None, settings: dict | None = None,
               lr: float | None = None, live_every: int = LIVE_EVERY) -> "Trainer":
        """A new run from the step saved at `path`, knobs or learning rate changed (core.training_state.branch)."""
        return training_state.branch(cls, path, data, settings, lr, live_every)

    def snapshot(self) -> Bundle:
        """The model as it is now: CPU copies of the network (in eval mode) and the objective with its
        trained parameters, safe to decode from while training goes on, identified as (run_id, step)."""
        with self._lock:
            self.gather()
            return Bundle(copy.deepcopy(self.model).cpu().eval(), copy.deepcopy(self.objective).cpu(),
                          replace(self.config, settings=self.objective.settings()), Ref(self.run_id, self.step_count),
                          self.data.info, len(self.train_x), list(self.history), list(self.live))
