"""The training processes of one server: a bounded pool, a queue, and runs that outlive both.

A classroom puts many people on one dashboard server, and each training run is a child process
(core.remote.ProcessRun, about 1 GB resident). The pool runs at most `limit` of them at once (default:
the number of cores); the others wait in order, and a waiting run knows how many are ahead of it. Every
run checkpoints into FOLDER/OWNER/NAME (resumable, core.checkpoint) as it trains, so:

- a run that finishes is saved and releases its process; it lives on as a RecordedRun (core.control),
  its final weights still there for every page;
- a run whose owner has not been seen for `grace` seconds (the browser tab was closed) is saved and its
  process ended; it can be resumed later;
- after the server restarts, an owner's runs are read back from the folder: finished ones as recorded
  runs, the others as interrupted runs that resume exactly where their last checkpoint was.

    pool = Pool(Path("runs"), limit=2)
    run = pool.submit("a1b2c3d4", "vae", config, steps=2000, data=data)
    pool.runs("a1b2c3d4")          # {"vae": run}, oldest first
    run.state, run.ahead           # "queued", 1 ... "starting" ... "running", 0 ... then "recorded"
    pool.requeue("a1b2c3d4", "vae")  # an interrupted run, queued again from its checkpoint
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from dataclasses import replace
from pathlib import Path

from . import checkpoint
from . import data as datasets
from .bundle import Ref
from .config import RunConfig
from .control import Controller, RecordedRun, RunError, RunState
from .errors import CheckpointError, LabError
from .remote import ProcessRun

OWNER = re.compile(r"[0-9a-f]{8,32}")   # owner tokens come from a URL: never a path of their own choosing
NAME = re.compile(r"(?!.*\.(json|safetensors)$)[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")
log = logging.getLogger("vaelab.pool")
SAVE_EVERY = "30s"  # a dashboard run loses at most this much when its server dies
# Training yields the cores to the server and the browser: a page answers at once while runs train, and
# training takes back what the pages leave idle (bench/interaction.py).
TRAINING_NICE = 10
GRACE = 90.0        # seconds an owner may go unseen (its pages ping every 20 s) before its runs are saved and ended


def check_owner(owner: str) -> str:
    if not isinstance(owner, str) or not OWNER.fullmatch(owner):
        raise LabError(f"not a session token: {owner!r}")
    return owner


class PooledRun:
    """One run of the pool, following the run protocol of core.control whatever it is now: queued (no
    process yet), starting, live (a ProcessRun, whose state goes to this run's controller), recorded
    (finished and saved), or interrupted (saved, no process). Only its controller changes its state."""

    def __init__(self, pool: "Pool", owner: str, name: str, path: Path, config: RunConfig | None, target: int,
                 data: datasets.Dataset | None, state: RunState = RunState.QUEUED, error: str | None = None):
        self.pool, self.owner, self.name, self.path = pool, owner, name, path
        self.config, self.target, self.data = config, target, data
        self.control = Controller(state, error)
        self.resume_from = False          # queued to go on from its checkpoint (resume, extend)
        self.branch: tuple | None = None  # (parent's checkpoint, changed knobs, learning rate) for a branch
        self.inner: ProcessRun | RecordedRun | None = None  # its process, or what it saved
        self.lock = threading.Lock()  # held while its process is being saved and ended
        self.last_threads: int | None = None

    # ------------------------------------------------------------ what the protocol reads

    # The pool's thread may swap `inner` at any moment: each read takes it once.

    state = property(lambda self: self.control.state)
    error = property(lambda self: self.control.error)

    @property
    def ahead(self) -> int:
        """How many runs wait before this one (0 once it has a process)."""
        return self.pool.ahead(self)

    def _read(self, name, otherwise):
        inner = self.inner
        return getattr(inner, name) if inner is not None else otherwise()

    history = property(lambda self: self._read("history", lambda: self._saved("history", [])))
    live = property(lambda self: self._read("live", lambda: self._saved("live", [])))
    step_count = property(lambda self: self._read("step_count", lambda: self._saved("step", 0)))
    latent_dim = property(lambda self: self._read("latent_dim", lambda: self.config.model.latent_dim))
    seconds = property(lambda self: self._read("seconds", lambda: 0.0))
    batch_size = property(lambda self: self._read("batch_size", lambda: self.config.batch_size))
    epoch = property(lambda self: self._read("epoch", lambda: None))
    threads = property(lambda self: self._read("threads", lambda: None) or self.last_threads)
    beta = property(lambda self: self._read("beta", lambda: self.config.settings.get("beta") if self.config else None))
    lr = property(lambda self: self._read("lr", lambda: self.config.lr if self.config else None))
    device = property(lambda self: getattr(self.inner, "device", None))
    command = property(lambda self: getattr(self.inner, "command", None))
    data_error = property(lambda self: getattr(self.inner, "data_error", None))

    @property
    def run_id(self) -> str:
        inner = self.inner
        return inner.run_id if isinstance(inner, ProcessRun) else self.snapshot().ref.id

    def _saved(self, field, empty):
        with contextlib.suppress(LabError, OSError):
            if checkpoint.paths(self.path)[1].exists():
                bundle = self.pool.load(self.path)
                return bundle.step if field == "step" else getattr(bundle, field)
        return empty

    # ------------------------------------------------------------ controls

    def _live(self) -> ProcessRun:
        inner = self.inner
        if not isinstance(inner, ProcessRun):
            raise RunError(f"{self.name} is {self.state}: it has no training process"
                           + (f" ({self.ahead} runs ahead of it)" if self.state == RunState.QUEUED else ""))
        return inner

    def start(self, steps=None):
        raise RunError("a run of the pool starts when a process is free; resume it from the Train page")

    def pause(self):
        self._live().pause()

    def resume(self):
        self._live().resume()

    def set_beta(self, beta):
        self._live().set_beta(beta)

    def set_lr(self, lr):
        self._live().set_lr(lr)

    def stop(self):
        """Stop for good: a queued run leaves the queue; a live one is saved and releases its process."""
        self.pool.stop(self)

    def join(self, timeout=None):
        """Wait until the run is over and its process released (recorded, stopped, failed or interrupted)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while isinstance(self.inner, ProcessRun) or not self.state.finished:
            if deadline is not None and time.monotonic() > deadline:
                return
            self.control.wait(0.05)

    def snapshot(self):
        inner = self.inner
        if inner is None:
            if checkpoint.paths(self.path)[1].exists():
                return self.pool.load(self.path)
            if self.state in (RunState.FAILED, RunState.INTERRUPTED, RunState.STOPPED) and self.error:
                raise LabError(self.error)
            raise LabError(f"{self.name} is queued ({self.ahead} runs ahead of it): no weights yet")
        return inner.snapshot()

    def save(self, path, **fields):
        inner = self.inner
        if isinstance(inner, ProcessRun):
            return inner.save(path, **fields)
        return checkpoint.save(path, self.snapshot(), **fields)


class Pool:
    def __init__(self, folder: Path, limit: int | None = None, save_every: str = SAVE_EVERY, grace: float = GRACE,
                 cores: int | None = None, nice: int = TRAINING_NICE):
        """cores: the torch threads to split between the live runs (default: as many as torch finds in a
        training process, one per core)."""
        self.folder, self.save_every, self.grace, self.cores, self.nice = Path(folder), save_every, grace, cores, nice
        self.limit = max(1, limit or os.cpu_count() or 1)
        self._runs: dict[str, dict[str, PooledRun]] = {}
        self._queue: list[PooledRun] = []
        self._seen: dict[str, float] = {}
        self._holders: dict[str, str] = {}  # owner token -> the browser session holding it
        self._alive = None  # whether a browser session is still open (claim's test), once one has claimed
        self._lock = threading.RLock()
        self._loaded: dict[tuple[str, int], object] = {}
        self._cache_lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="vaelab-pool")
        self._thread.start()

    # ------------------------------------------------------------ what the pages ask

    def runs(self, owner: str) -> dict[str, PooledRun]:
        """The owner's runs, oldest first: those of this server, and those saved before it started."""
        check_owner(owner)
        self.touch(owner)
        with self._lock:
            if owner in self._runs:
                return dict(self._runs[owner])
        found = self._read_back(owner)  # reading files and datasets: not while holding up the pool
        with self._lock:
            return dict(self._runs.setdefault(owner, found))

    def submit(self, owner: str, name: str, config: RunConfig, steps: int, data=None, branch=None) -> PooledRun:
        """Queue a new run (replacing the owner's run of that name); it starts when a process is free.
        branch: (a checkpoint, changed knobs, learning rate) to start from, as branch() gives."""
        if not NAME.fullmatch(name):
            raise LabError(f"a run name is letters, digits and -_.+, at most 64: not {name!r}")
        runs = self.runs(owner)
        if name in runs:
            self.forget(runs[name])
        run = PooledRun(self, owner, name, self.folder / owner / name, config, steps, data)
        run.branch = branch
        with self._lock:
            self._runs[owner][name] = run
            self._queue.append(run)  # the pool's thread starts it (only that thread starts processes)
        return run

    def requeue(self, owner: str, name: str, data=None) -> PooledRun:
        """Queue an interrupted run again, to go on from its last checkpoint (a paused run goes on with
        run.resume(); this is for a run that has no process)."""
        run = self.runs(owner).get(name)
        with self._lock:  # two tabs pressing Resume at once queue it once
            if run is None or run.state != RunState.INTERRUPTED:
                raise RunError(f"no interrupted run {name!r} to resume")
            run.control.move(RunState.QUEUED)
            run.resume_from, run.inner = True, None
            run.data = data if data is not None else run.data
            self._queue.append(run)
        return run

    def extend(self, owner: str, name: str, steps: int, data=None) -> PooledRun:
        """Train a finished run `steps` further, from its checkpoint, exactly as if it had been asked for
        those steps at the start."""
        run = self.runs(owner).get(name)
        with self._lock:
            if run is None or run.state != RunState.RECORDED or not self.load(run.path).meta.get("training"):
                raise RunError(f"{name!r} is not a finished run saved with its training state")
            run.target = run.step_count + int(steps)
            run.control.move(RunState.QUEUED)
            run.inner, run.resume_from = None, True
            run.data = data if data is not None else run.data
            self._queue.append(run)
        return run

    def branch(self, owner: str, parent: str, name: str, steps: int, settings: dict | None = None,
               lr: float | None = None, data=None) -> PooledRun:
        """A new run from where `parent` is saved, with knobs (beta among them) or the learning rate changed,
        for `steps` more (core.engine.Trainer.branch; its sidecar names the parent)."""
        source = self.runs(owner).get(parent)
        if source is None or not checkpoint.paths(source.path)[1].exists():
            raise RunError(f"no saved run {parent!r} to branch from")
        start = self.load(source.path).step
        taken, base, n = self.runs(owner), name, 2
        while name in taken:  # a second branch from the same step keeps the first
            name, n = f"{base}-{n}", n + 1
        return self.submit(owner, name, source.config, start + int(steps), data if data is not None else source.data,
                           branch=(source.path, dict(settings or {}), lr))

    def ahead(self, run: PooledRun) -> int:
        with self._lock:
            return self._queue.index(run) if run in self._queue else 0

    def touch(self, owner: str):
        self._seen[owner] = time.monotonic()

    def claim(self, owner: str, holder: str, alive) -> bool:
        """Let browser session `holder` take the runs of token `owner` (from its URL) unless another session
        that holds them is still open (alive(holder) -> bool): a shared link then gets a token of its own,
        while a reload, or the first visit after a restart, finds its runs."""
        check_owner(owner)
        with self._lock:
            current = self._holders.get(owner)
            if current is not None and current != holder and alive(current):
                return False
            self._holders[owner] = holder
            self._alive = alive
            return True

    def gone(self, owner: str) -> bool:
        """Whether every page of the owner is closed: the browser session holding its token has ended."""
        with self._lock:
            holder, alive = self._holders.get(owner), self._alive
        return holder is not None and alive is not None and not alive(holder)

    def stop(self, run: PooledRun):
        with self._lock:
            if run.state == RunState.STARTING:  # its process is being spawned: the scheduler ends it once it is up
                run.control.stop()
                return
            if run in self._queue:
                self._queue.remove(run)
                self._unqueued(run)
                return
        self._release(run)

    def _unqueued(self, run: PooledRun):
        """A run taken out of the queue: back to what its files say (a resume or extension that was
        asked for and cancelled), or stopped (a new run that never started)."""
        if checkpoint.paths(run.path)[1].exists():
            with contextlib.suppress(LabError, OSError):
                bundle = self.load(run.path)
                if bundle.step < run.target:
                    run.control.move(RunState.INTERRUPTED, f"interrupted at step {bundle.step:,}; resume it to go on")
                else:
                    run.inner = RecordedRun(bundle, run.data)
                    run.control.move(RunState.RECORDED)
                return
        run.control.stop()

    def forget(self, run: PooledRun):
        """Stop a run and drop it from its owner's list (its files stay)."""
        self.stop(run)
        with self._lock:
            self._runs.get(run.owner, {}).pop(run.name, None)

    def discard(self, run: PooledRun):
        """Stop a run, drop it from its owner's list and delete its files (a new run of the page replaces it)."""
        self.forget(run)
        for path in checkpoint.paths(run.path):
            path.unlink(missing_ok=True)

    def active(self) -> int:
        with self._lock:
            return sum(isinstance(r.inner, ProcessRun) for runs in self._runs.values() for r in runs.values())

    def load(self, path: Path):
        """A saved run's model, read once per version of its sidecar. It keeps the identity it had while it
        trained, (run id, step), so a page's state for it lives on when the run finishes."""
        meta = checkpoint.paths(path)[1]
        key = (str(meta), meta.stat().st_mtime_ns)
        with self._cache_lock:
            bundle = self._loaded.get(key)
        if bundle is None:
            bundle = checkpoint.load(path)
            bundle = replace(bundle, ref=Ref(bundle.meta.get("run_id") or bundle.ref.id, bundle.step))
            with self._cache_lock:
                if len(self._loaded) > 64:
                    self._loaded.clear()
                self._loaded[key] = bundle
        return bundle

    def close(self):
        """Save and end every live run (as at a server's shutdown)."""
        self._closed.set()
        with self._lock:
            live = [r for runs in self._runs.values() for r in runs.values() if isinstance(r.inner, ProcessRun)]
        for run in live:
            self._interrupt(run, "the server stopped")

    # ------------------------------------------------------------ the pool's own thread

    def _loop(self):
        while not self._closed.wait(0.25):
            try:
                self._tend()
            except Exception:  # one run's trouble is logged, and the pool goes on tending the others
                log.exception("the training pool could not tend its runs")

    def _tend(self):
        with self._lock:
            runs = [r for owner in self._runs.values() for r in owner.values()]
            waiting = bool(self._queue) and self.active() >= self.limit
        now = time.monotonic()
        for run in runs:
            if isinstance(run.inner, ProcessRun):
                if run.inner.state.finished:
                    self._release(run)
                elif now - self._seen.get(run.owner, now) > self.grace:
                    self._interrupt(run, f"its page was closed for more than {self.grace:.0f} s")
                elif waiting and self.gone(run.owner):  # nobody watches it and somebody waits: the core goes now
                    self._interrupt(run, "its page was closed while another run waited for its core")
                    waiting = False
        self._schedule()
        self._share_cores()

    def _schedule(self):
        """Give free processes to the first runs in the queue."""
        while True:
            with self._lock:
                if not self._queue or self.active() >= self.limit:
                    return
                run = self._queue.pop(0)
                run.control.move(RunState.STARTING)
            process = None
            try:
                fields = {"target_steps": run.target, "command": "dashboard"}
                autosave = (run.path, self.save_every, fields)
                if run.resume_from:
                    meta = checkpoint.read_sidecar(checkpoint.paths(run.path)[1])
                    run.config = RunConfig.from_dict(meta["config"])
                    process = ProcessRun(run.config, run.data, resume_from=run.path, autosave=autosave,
                                         control=run.control, nice=self.nice)
                else:
                    process = ProcessRun(run.config, run.data, branch=run.branch, autosave=autosave,
                                         control=run.control, nice=self.nice)
                with self._lock:
                    run.inner = process
                if run.state == RunState.STOPPED:  # stopped while its process was being spawned
                    self._release(run)
                else:
                    process.start(steps=max(0, run.target - process.step_count))
            except Exception as e:  # a bad sidecar, a failed spawn: the run says why, the pool goes on
                if process is not None:
                    process.release()
                run.inner = None
                run.control.failed(f"could not start: {e if isinstance(e, LabError) else f'{type(e).__name__}: {e}'}")

    def _share_cores(self):
        """Split the cores between the live runs: each process's torch threads would otherwise busy-wait
        for cores the others hold (bench/concurrent_runs.py: two runs of two threads on two cores train
        8x slower than two runs of one thread)."""
        with self._lock:
            live = [r.inner for runs in self._runs.values() for r in runs.values()
                    if isinstance(r.inner, ProcessRun) and not r.inner.state.finished]
        for process in live:
            share = max(1, (self.cores or process.cores) // len(live))
            if process.threads != share:
                with contextlib.suppress(LabError):  # ended meanwhile: the next round counts without it
                    process.set_threads(share)

    def _release(self, run: PooledRun):
        """A finished (or stopped) run: save it, end its process, keep it as a recorded run."""
        with run.lock:
            if isinstance(run.inner, ProcessRun):
                self._save_and_end(run)

    def _save_and_end(self, run: PooledRun):
        process = run.inner
        process.halt()  # a live run stops between two steps; a finished one is still already
        try:
            if process.step_count:
                process.save(run.path, resumable=True, target_steps=run.target, command="dashboard")
        except LabError as e:
            run.control.note(f"could not be saved: {e}")
        run.last_threads = process.threads
        process.release()
        with contextlib.suppress(LabError, OSError):
            bundle = self.load(run.path)
            run.inner = RecordedRun(bundle, run.data, state=run.state, error=run.error)
            if run.state in (RunState.DONE, RunState.STOPPED):  # its process released: read from its checkpoint
                run.control.move(RunState.RECORDED)
            return
        run.inner = None
        run.control.note(f"{run.error or 'its process ended'}; nothing was saved yet to resume from: train it again")

    def _interrupt(self, run: PooledRun, why: str):
        """Save a live run, end its process, and mark it to be resumed later."""
        with run.lock:
            process = run.inner
            if not isinstance(process, ProcessRun):
                return
            if run.state.finished:  # it ended meanwhile: keep it as it ended
                self._save_and_end(run)
                return
            with contextlib.suppress(LabError):
                process.pause()
                process.save(run.path, resumable=True, target_steps=run.target, command="dashboard")
            step, run.last_threads = process.step_count, process.threads
            process.release()
            run.inner = None
            run.control.move(RunState.INTERRUPTED, f"interrupted: {why}; resume it to go on from step {step:,}")

    def _read_back(self, owner: str) -> dict[str, PooledRun]:
        """The runs saved under FOLDER/OWNER by an earlier server: finished ones recorded, others interrupted."""
        found = {}
        folder = self.folder / owner
        for meta in sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []:
            name = meta.stem
            try:
                bundle = self.load(meta)
            except CheckpointError as e:
                found[name] = PooledRun(self, owner, name, meta.with_suffix(""), None, 0, None, RunState.FAILED,
                                        f"its checkpoint cannot be read: {e}")
                continue
            target = int(bundle.meta.get("target_steps") or bundle.step)
            data = None
            with contextlib.suppress(LabError):
                data = datasets.load(bundle.config.data)
            if bundle.step < target and bundle.meta.get("training") and not bundle.meta["training"].get("diverged"):
                run = PooledRun(self, owner, name, meta.with_suffix(""), bundle.config, target, data,
                                RunState.INTERRUPTED, f"interrupted: the server stopped at step {bundle.step:,} of "
                                                      f"{target:,}; resume it to go on")
            else:
                run = PooledRun(self, owner, name, meta.with_suffix(""), bundle.config, target, data,
                                RunState.RECORDED)
                run.inner = RecordedRun(bundle, data)
            found[name] = run
        return found
