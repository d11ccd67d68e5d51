"""A run's lifecycle: one table of states and moves, one controller that makes them, and the one loop
that trains.

Every kind of run goes through the same table, and nothing but a Controller changes a run's state:

    LocalRun(config)        the trainer stepped in a background thread of this process
    ProcessRun(config)      the trainer in a child process (core.remote); its controller follows the child's
    PooledRun               a run of the server's pool (core.pool): queued for a process, then a ProcessRun
    RecordedRun(bundle)     a finished run read from a checkpoint: its history, live rows and weights
    the CLI and sweep trials drive a Trainer with a Controller of their own (train_to)

Each implements the run protocol, so the pages never ask which one they hold:

    run.state, run.error, run.history, run.live, run.step_count, run.seconds, run.epoch, run.batch_size
    run.start(steps), run.pause(), run.resume(), run.stop(), run.join(timeout)
    run.set_beta(b), run.set_lr(lr), run.beta, run.lr, run.snapshot() -> Bundle, run.save(path)

The moves (anything else raises RunError):

    queued --(a process is free)--> starting --(trainer built)--> ready --start--> running
    running <--pause/resume--> paused
    running --(target reached)--> done          running --(non-finite step)--> diverged
    ready/starting/running/paused --(any other error)--> failed
    queued/ready/starting/running/paused --stop--> stopped
    running/paused --(saved, its process ended before the target)--> interrupted
    done/stopped --start--> running (train further)      interrupted/recorded/done/stopped --(queued again)--> queued
    done/stopped --(saved, its process released)--> recorded (read-only)
"""
from __future__ import annotations

import threading
from enum import Enum

from .engine import Diverged, Trainer
from .errors import LabError


class RunState(str, Enum):
    QUEUED = "queued"            # waiting for a training process (core.pool)
    STARTING = "starting"        # its process being spawned, its trainer built
    READY = "ready"              # built, not started
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"          # stopped by its user
    DONE = "done"                # reached its target step
    DIVERGED = "diverged"        # a step was not finite; the weights are the last good step's
    FAILED = "failed"            # any other error; `error` says which
    INTERRUPTED = "interrupted"  # saved mid-run, no process: it can be queued again and go on exactly
    RECORDED = "recorded"        # finished and saved: read from its checkpoint, nothing to control

    def __str__(self):
        return self.value

    @property
    def finished(self) -> bool:
        """No steps are taken in this state (until a user's command or the pool moves it again)."""
        return self in FINISHED


S = RunState
FINISHED = {S.STOPPED, S.DONE, S.DIVERGED, S.FAILED, S.INTERRUPTED, S.RECORDED}
MOVES = {
    S.QUEUED: {S.STARTING, S.STOPPED, S.FAILED, S.INTERRUPTED, S.RECORDED},  # the last two: back out of the queue
    S.STARTING: {S.READY, S.RUNNING, S.STOPPED, S.FAILED},
    S.READY: {S.RUNNING, S.STOPPED, S.FAILED},
    S.RUNNING: {S.PAUSED, S.STOPPED, S.DONE, S.DIVERGED, S.FAILED, S.INTERRUPTED},
    S.PAUSED: {S.RUNNING, S.STOPPED, S.FAILED, S.INTERRUPTED},
    S.DONE: {S.RUNNING, S.RECORDED, S.QUEUED},
    S.STOPPED: {S.RUNNING, S.RECORDED, S.QUEUED},
    S.DIVERGED: set(),
    S.FAILED: set(),
    S.INTERRUPTED: {S.QUEUED},
    S.RECORDED: {S.QUEUED},
}
del S


def reachable(start: RunState) -> set[RunState]:
    """The states the table leads to from `start` in any number of moves."""
    seen, todo = set(), [start]
    while todo:
        for state in MOVES[todo.pop()] - seen:
            seen.add(state)
            todo.append(state)
    return seen


REACHABLE = {state: reachable(state) for state in RunState}  # what a mirror may jump to between two reports
CHUNK = 5  # steps a run takes between looks at its controls


class RunError(LabError):
    """A control that the run's state does not allow (start a diverged run, train a recorded one)."""


class Controller:
    """The state of one run and the only code that changes it. Commands (start, pause, resume, stop) come
    from the user, the pool's moves (queued, starting, interrupted, recorded) from the server; the
    training loop calls `advance`, which takes the steps the state allows and records how they ended.
    Thread-safe: a page's thread commands while the training thread steps."""

    def __init__(self, state: RunState = RunState.READY, error: str | None = None):
        self.state, self.error = state, error
        self.target: int | None = None  # stop at this step count; None: until stopped
        self._lock = threading.Lock()
        self.changed = threading.Condition(self._lock)

    def _move(self, state: RunState, error: str | None = None):
        if state not in MOVES[self.state]:
            raise RunError(f"a {self.state} run cannot become {state}")
        self.state = state
        if error is not None:
            self.error = error
        self.changed.notify_all()

    def move(self, state: RunState, error: str | None = None):
        """A move of the table (the pool's: queued, starting, interrupted, recorded; a failure with its message)."""
        with self._lock:
            self._move(state, error)

    def note(self, error: str):
        """Say why, without a move (a finished run that could not be saved, say)."""
        with self._lock:
            self.error = error
            self.changed.notify_all()

    def follow(self, state: RunState, error: str | None = None):
        """Take the state of the controller this one mirrors (a child process's, known from its messages).
        Reports come a few times a second, so the states between two may be skipped, but never a state the
        table cannot lead to. A stop made here wins over a report that crossed it."""
        with self._lock:
            if self.state == RunState.STOPPED and state != RunState.STOPPED:
                return
            if state != self.state:
                if state not in REACHABLE[self.state]:
                    raise RunError(f"a {self.state} run cannot become {state}")
                self.state = state
                self.changed.notify_all()
            self.error = error

    # ------------------------------------------------------------ the user's commands

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
        """Go on after a pause (a run with no process is queued again by the pool instead: Pool.requeue)."""
        with self._lock:
            if self.state == RunState.PAUSED:
                self._move(RunState.RUNNING)

    def stop(self):
        with self._lock:
            if RunState.STOPPED in MOVES[self.state]:
                self._move(RunState.STOPPED)

    # ------------------------------------------------------------ the training loop's

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
        how many steps were asked for (0: nothing to do now). A Ctrl-C (KeyboardInterrupt) passes through:
        the caller saves the run and marks it interrupted."""
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
            self._move(RunState.DIVERGED, message)

    def failed(self, message: str):
        """An error that ends the run; after a stop or the end of the run it is only noted."""
        with self._lock:
            self.error = message
            if RunState.FAILED in MOVES[self.state]:
                self._move(RunState.FAILED)

    def wait(self, timeout: float):
        """Sleep until the state changes, at most timeout seconds (a paused loop's idle)."""
        with self._lock:
            self.changed.wait(timeout)

    def wait_finished(self, timeout: float | None = None) -> bool:
        with self._lock:
            return self.changed.wait_for(lambda: self.state.finished, timeout)


def failure_message(error: BaseException) -> str:
    """What a page shows for an unexpected error in training: its type and text, never a traceback."""
    return f"training stopped: {type(error).__name__}: {error}"


def drive(trainer: Trainer, control: Controller, between=None, until=None, chunk: int = CHUNK, idle: float = 0.1):
    """The one training loop. Takes the steps the controller allows, `chunk` at a time; between chunks
    calls between() (a pipe's commands, a progress bar, a tracker) and, while there is nothing to step,
    waits up to `idle` seconds for a change; returns once until() is true (default: the run is finished:
    done, stopped, diverged, failed)."""
    until = until or (lambda: control.state.finished)
    while not until():
        if between is not None:
            between()
        if not control.advance(trainer, chunk) and idle and not until():
            control.wait(idle)


def train_to(trainer: Trainer, total: int, after=None, chunk: int = 50) -> Controller:
    """Train in this thread to step `total` (the CLI's and a sweep trial's way), calling after() between
    chunks; returns the controller, whose state says how it ended (done, diverged, failed) and whose
    error says why. A Ctrl-C marks it interrupted and raises KeyboardInterrupt between two steps."""
    control = Controller()
    control.start(trainer.step_count, max(0, total - trainer.step_count))
    try:
        drive(trainer, control, between=after, chunk=chunk)
    except KeyboardInterrupt:
        control.move(RunState.INTERRUPTED, f"interrupted at step {trainer.step_count}")
        raise
    if after is not None:
        after()
    return control


class LocalRun:
    """A Trainer stepped in a background thread of this process (the tests' way; the dashboard uses
    ProcessRun so that page reruns do not share the training thread's GIL)."""

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
            self._thread = threading.Thread(target=drive, args=(self.trainer, self.control), daemon=True,
                                            name="vaelab-trainer")
            self._thread.start()

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
    with nothing to control. A run that ended diverged or failed keeps that state and its message."""

    threads = None

    def __init__(self, bundle, data=None, data_error: str | None = None, state: RunState = RunState.RECORDED,
                 error: str | None = None):
        """data: its dataset, where it is here (pictures of test images need it); data_error: why not."""
        self.bundle, self.data, self.data_error = bundle, data, data_error
        self.control = Controller(state, error)
        self.history, self.live, self.step_count = bundle.history, bundle.live, bundle.step
        self.config, self.batch_size = bundle.config, bundle.config.batch_size
        self.command = bundle.meta.get("command")

    state = property(lambda self: self.control.state)
    error = property(lambda self: self.control.error)
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
