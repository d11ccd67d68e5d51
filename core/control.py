"""Runs: one state machine, and the small protocol every kind of run follows.

A run is a trainer (core.engine.Trainer, the stepper) under a Controller that owns its state. Three
kinds of run implement the same protocol, so the pages never ask which one they hold:

    LocalRun(config)        the trainer stepped in a background thread of this process
    ProcessRun(config)      the trainer in a child process (core.remote), controlled over a pipe
    RecordedRun(bundle)     a finished run read from a checkpoint: its history, live rows and weights

    run.state, run.error, run.history, run.live, run.step_count, run.seconds, run.epoch, run.batch_size
    run.start(steps), run.pause(), run.resume(), run.stop(), run.join(timeout)
    run.set_beta(b), run.set_lr(lr), run.beta, run.lr, run.snapshot() -> Bundle, run.save(path)

States and the moves between them:

    ready --start--> running --pause--> paused --resume--> running
    running --(target reached)--> done      running --(non-finite step)--> diverged
    ready/running/paused --(any other error)--> failed
    ready/running/paused --stop--> stopped
    done/stopped --start--> running         recorded: read-only, never moves
"""
from __future__ import annotations

import threading
from enum import Enum

from .engine import Diverged, Trainer
from .errors import LabError


class RunState(str, Enum):
    READY = "ready"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    DONE = "done"
    DIVERGED = "diverged"
    FAILED = "failed"
    RECORDED = "recorded"
    QUEUED = "queued"            # waiting for a training process (core.pool)
    INTERRUPTED = "interrupted"  # saved mid-run, no process: it can be resumed (core.pool)

    def __str__(self):
        return self.value

    @property
    def finished(self) -> bool:
        return self in (RunState.STOPPED, RunState.DONE, RunState.DIVERGED, RunState.FAILED, RunState.RECORDED,
                        RunState.INTERRUPTED)


MOVES = {
    RunState.READY: {RunState.RUNNING, RunState.STOPPED, RunState.FAILED},
    RunState.RUNNING: {RunState.PAUSED, RunState.STOPPED, RunState.DONE, RunState.DIVERGED, RunState.FAILED},
    RunState.PAUSED: {RunState.RUNNING, RunState.STOPPED, RunState.FAILED},
    RunState.DONE: {RunState.RUNNING},
    RunState.STOPPED: {RunState.RUNNING},
    RunState.DIVERGED: set(),
    RunState.FAILED: set(),
    RunState.RECORDED: set(),
    RunState.QUEUED: set(),
    RunState.INTERRUPTED: set(),
}


CHUNK = 5  # steps a run takes between looks at its controls


class RunError(LabError):
    """A control that the run's state does not allow (start a diverged run, train a recorded one)."""


class Controller:
    """The state of one run and the only code that changes it. Commands (start, pause, resume, stop) come
    from the user; the stepping loop calls `advance`, which takes the steps the state allows and records
    how they ended (`diverged`, `failed`). Thread-safe: the page's thread commands while the stepping thread steps."""

    def __init__(self):
        self.state = RunState.READY
        self.error: str | None = None
        self.target: int | None = None  # stop at this step count; None: until stopped
        self._lock = threading.Lock()
        self.changed = threading.Condition(self._lock)

    def _move(self, state: RunState):
        if state not in MOVES[self.state]:
            raise RunError(f"a {self.state} run cannot become {state}")
        self.state = state
        self.changed.notify_all()

    def start(self, step_count: int, steps: int | None = None):
        with self._lock:
            if self.state in (RunState.DIVERGED, RunState.FAILED):
                raise RunError(self.error or f"this run has {self.state}")
            if self.state == RunState.RECORDED:
                raise RunError("a recorded run cannot train")
            self.target = None if steps is None else step_count + steps
            if self.state != RunState.RUNNING:
                self._move(RunState.RUNNING)

    def pause(self):
        with self._lock:
            if self.state == RunState.RUNNING:
                self._move(RunState.PAUSED)

    def resume(self):
        with self._lock:
            if self.state == RunState.PAUSED:
                self._move(RunState.RUNNING)

    def stop(self):
        with self._lock:
            if self.state in (RunState.READY, RunState.RUNNING, RunState.PAUSED):
                self._move(RunState.STOPPED)

    def steps_now(self, step_count: int, chunk: int) -> int:
        """How many steps the loop may take now (0 unless running); a reached target makes the run done."""
        with self._lock:
            if self.state != RunState.RUNNING:
                return 0
            if self.target is not None and step_count >= self.target:
                self._move(RunState.DONE)
                return 0
            return chunk if self.target is None else min(chunk, self.target - step_count)

    def advance(self, trainer: Trainer, chunk: int = CHUNK) -> int:
        """Take the steps the state allows now, at most chunk; a step that diverges or fails ends the run
        with its message, which reaches the page rather than vanishing with a thread or process. Returns
        how many steps were asked for (0: nothing to do now)."""
        n = self.steps_now(trainer.step_count, chunk)
        if n:
            try:
                trainer.step(n)
            except Diverged as e:
                self.diverged(str(e))
            except Exception as e:
                self.failed(failure_message(e))
        return n

    def diverged(self, message: str):
        with self._lock:
            self.error = message
            self._move(RunState.DIVERGED)

    def failed(self, message: str):
        """An error that ends the run; after a stop or the end of the run it is only noted."""
        with self._lock:
            self.error = message
            if RunState.FAILED in MOVES[self.state]:
                self._move(RunState.FAILED)

    def wait_finished(self, timeout: float | None = None) -> bool:
        with self._lock:
            return self.changed.wait_for(lambda: self.state.finished, timeout)


def failure_message(error: BaseException) -> str:
    """What a page shows for an unexpected error in training: its type and text, never a traceback."""
    return f"training stopped: {type(error).__name__}: {error}"


class LocalRun:
    """A Trainer stepped in a background thread of this process (the CLI's and the tests' way; the
    dashboard uses ProcessRun so that page reruns do not share the training thread's GIL)."""

    def __init__(self, config=None, data=None, trainer=None, **trainer_options):
        self.trainer = trainer if trainer is not None else Trainer(config, data, **trainer_options)
        self.control = Controller()
        self._thread: threading.Thread | None = None

    # what the protocol reads
    state = property(lambda self: self.control.state)
    error = property(lambda self: self.control.error)
    history = property(lambda self: self.trainer.history)
    live = property(lambda self: self.trainer.live)
    step_count = property(lambda self: self.trainer.step_count)
    seconds = property(lambda self: self.trainer.seconds)
    epoch = property(lambda self: self.trainer.epoch)
    batch_size = property(lambda self: self.trainer.batch_size)
    config = property(lambda self: self.trainer.config)
    data = property(lambda self: self.trainer.data)
    device = property(lambda self: self.trainer.device)
    beta = property(lambda self: self.trainer.objective.beta)
    lr = property(lambda self: self.trainer.lr)
    latent_dim = property(lambda self: self.trainer.model.latent_dim)
    threads = None

    def start(self, steps: int | None = None):
        self.control.start(self.trainer.step_count, steps)
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, daemon=True, name="vaelab-trainer")
            self._thread.start()

    def _loop(self):
        while not self.control.state.finished:
            if not self.control.advance(self.trainer):
                with self.control.changed:
                    self.control.changed.wait(timeout=0.1)

    def pause(self):
        self.control.pause()

    def resume(self):
        self.control.resume()

    def stop(self):
        self.control.stop()
        if self._thread is not None:
            self._thread.join()

    def join(self, timeout: float | None = None):
        self.control.wait_finished(timeout)
        if self._thread is not None and self.control.state.finished:
            self._thread.join(timeout)

    def set_beta(self, beta: float):
        self.trainer.set_beta(beta)

    def set_lr(self, lr: float):
        self.trainer.set_lr(lr)

    def snapshot(self):
        return self.trainer.snapshot()

    def save(self, path, **extra):
        return self.trainer.save(path, **extra)


class RecordedRun:
    """A finished run read from a checkpoint (a model value with its history): shown like any other run,
    with nothing to control."""

    state, error, threads = RunState.RECORDED, None, None

    def __init__(self, bundle, data=None, data_error: str | None = None):
        """data: its dataset, where it is here (pictures of test images need it); data_error: why not."""
        self.bundle, self.data, self.data_error = bundle, data, data_error
        self.history, self.live, self.step_count = bundle.history, bundle.live, bundle.step
        self.config, self.batch_size = bundle.config, bundle.config.batch_size
        self.command = bundle.meta.get("command")

    beta = property(lambda self: self.bundle.objective.beta)
    # The rate it last trained at (the history logs a rate changed mid-run), else the one it started with.
    lr = property(lambda self: (self.history[-1].get("lr") if self.history else None) or self.bundle.config.lr)
    latent_dim = property(lambda self: self.bundle.latent_dim)
    # Its training clock when it was saved (pauses excluded): the rate it trained at stays on its page.
    seconds = property(lambda self: (self.history[-1].get("seconds") or 0.0) if self.history else 0.0)

    @property
    def epoch(self) -> float | None:
        """Epochs of the data it was trained on (the sidecar's training-set size), whatever data is here now."""
        return self.bundle.epoch

    def _refuse(self, *args, **kwargs):
        raise RunError("a recorded run cannot train; start a new run from the sidebar")

    start = pause = resume = set_beta = set_lr = _refuse

    def stop(self):
        return None

    def join(self, timeout: float | None = None):
        return None

    def snapshot(self):
        return self.bundle
