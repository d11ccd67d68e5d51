"""A run whose trainer lives in a child process, behind the run protocol of core.control.

The dashboard trains this way: a training thread inside the web server would share its GIL with every
page rerun and slow down. The child steps a core.engine.Trainer under its own Controller; the parent
mirrors the history, the live diagnostics and the state from the messages the child sends about five
times a second, and asks for the weights (safetensors bytes, core.weights: nothing is unpickled) when it
needs a snapshot. Errors cross the pipe as (type name, message) and are raised again as that type.

    run = ProcessRun(RunConfig(...))
    run.start(steps=2000); run.set_beta(8.0); run.pause(); run.resume()
    bundle = run.snapshot(); run.save("checkpoints/runs/x"); run.stop()
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import threading
import time
from dataclasses import replace
from enum import Enum
from pathlib import Path

import torch

from . import data as datasets
from . import weights
from .bundle import Bundle, Ref
from .config import LIVE_EVERY, RunConfig, check_lr, epochs
from .control import Controller, RunError, RunState, drive
from .engine import Diverged, Trainer
from .errors import CheckpointError, ConfigError, DataError, LabError
from .objectives.base import BETA

REPORT_EVERY = 0.2  # seconds between the child's progress messages


class Command(str, Enum):
    """What the parent asks of the child; each crosses the pipe as (its value, an argument)."""
    START = "start"      # train (argument: how many steps, or None: until stopped)
    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"
    BETA = "beta"        # set the KL weight
    LR = "lr"            # set the learning rate
    THREADS = "threads"  # torch threads from the next step
    WEIGHTS = "weights"  # the weights now, as safetensors bytes
    SAVE = "save"        # write a checkpoint (argument: path, resumable, sidecar fields)
    CLOSE = "close"      # end the process between two steps


class Reply(str, Enum):
    """What the child sends; each crosses the pipe as (its value, a dict)."""
    READY = "ready"        # the trainer is built: its config, device, counts
    FAILED = "failed"      # it could not be built: the error
    PROGRESS = "progress"  # new history and live rows, the state
    ACK = "ack"            # a control was applied: the state now
    ERROR = "error"        # a command was refused: the error
    WEIGHTS = "weights"
    SAVED = "saved"
    ENDED = "ended"        # (the parent's own, when the pipe closes: every waiting request fails)


CONTROLS = (Command.START, Command.PAUSE, Command.RESUME, Command.STOP, Command.BETA, Command.LR, Command.THREADS)
ERRORS = {cls.__name__: cls for cls in (LabError, ConfigError, DataError, CheckpointError, Diverged, RunError)}


def error_payload(error: BaseException) -> dict:
    return {"type": type(error).__name__, "message": str(error)}


def raise_payload(payload: dict):
    """Raise the child's error as its own type (any error of ours), or as a LabError naming the type."""
    cls = ERRORS.get(payload["type"])
    raise cls(payload["message"]) if cls else LabError(f"{payload['type']}: {payload['message']}")


def start_context():
    """How training processes start: from a fork server that has imported torch and this package once
    (a new process is then up in about a second rather than four), where the platform has one; else a
    fresh interpreter (spawn). Never a plain fork of the caller: a forked torch with threads can hang."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(["core.remote"])  # not the caller's __main__ (the dashboard's app)
    return context


def adopt_environment(environ: dict):
    """In a process from the fork server: take the parent's environment of now (the server keeps the one
    it started with, and a setting changed since, $VAELAB_DATA say, must reach the child)."""
    os.environ.clear()
    os.environ.update(environ)


def _serve(config: RunConfig | None, live_every: int, conn, resume_from=None, autosave=None, branch=None,
           environ=None, nice: int = 0):
    """The child: a Trainer stepped in small chunks between commands from the parent; a new run, the one
    saved at resume_from, or a branch (path, settings, lr) of a saved one. autosave: (path, every, sidecar
    fields) for Trainer.autosave. environ: the parent's environment now (the fork server holds the one it
    started with). nice: how much to lower this process's priority (the pages stay quick while it trains)."""
    if environ is not None:
        adopt_environment(environ)
    if nice:
        os.nice(nice)
    try:
        if resume_from:
            trainer = Trainer.load(resume_from)
        elif branch:
            trainer = Trainer.branch(branch[0], settings=branch[1], lr=branch[2], live_every=live_every)
        else:
            trainer = Trainer(config, live_every=live_every)
        if autosave:
            trainer.autosave(autosave[0], autosave[1], **autosave[2])
    except Exception as e:  # a bad config or missing data: the parent raises it, typed
        conn.send((Reply.FAILED.value, error_payload(e)))
        return
    control = Controller()
    conn.send((Reply.READY.value, {"config": trainer.config.to_dict(), "device": str(trainer.device), "run_id": trainer.run_id,
                         "batch_size": trainer.batch_size, "n_train": len(trainer.train_x),
                         "threads": torch.get_num_threads(), "beta": trainer.objective.beta, "lr": trainer.lr,
                         "step": trainer.step_count, "seconds": trainer.seconds}))
    sent, last, closed = {"rows": 0, "live": 0, "state": None}, [0.0], [False]
    # A resumed run's rows before this process reach the parent in the first report, with the new ones.

    def report():
        """Send the rows and live diagnostics not sent yet, and the state."""
        conn.send((Reply.PROGRESS.value, {"rows": trainer.history[sent["rows"]:], "live": trainer.live[sent["live"]:],
                                "state": control.state.value, "error": control.error, "step": trainer.step_count,
                                "seconds": trainer.seconds, "beta": trainer.objective.beta, "lr": trainer.lr}))
        sent.update(rows=len(trainer.history), live=len(trainer.live), state=control.state)
        last[0] = time.monotonic()

    def obey(command: Command, arg):
        if command == Command.START:
            control.start(trainer.step_count, arg)
        elif command == Command.PAUSE:
            control.pause()
        elif command == Command.RESUME:
            control.resume()
        elif command == Command.STOP:
            control.stop()
        elif command == Command.BETA:
            trainer.set_beta(arg)
        elif command == Command.LR:
            trainer.set_lr(arg)
        elif command == Command.THREADS:
            torch.set_num_threads(arg)

    def between():
        """Between two chunks of steps: report what changed, then answer the parent's commands."""
        changed = sent["state"] != control.state or sent["rows"] < len(trainer.history)
        if changed and (time.monotonic() - last[0] > REPORT_EVERY or control.state != RunState.RUNNING):
            report()
        while conn.poll(0 if control.state == RunState.RUNNING else 0.1):
            text, arg = conn.recv()
            command = Command(text)
            if command in CONTROLS:
                try:
                    obey(command, arg)
                    reply = (Reply.ACK.value, {"state": control.state.value, "beta": trainer.objective.beta, "lr": trainer.lr,
                                     "threads": torch.get_num_threads()})
                except LabError as e:
                    reply = (Reply.ERROR.value, error_payload(e))
                report()  # everything up to now arrives before the confirmation
                conn.send(reply)
            elif command == Command.WEIGHTS:
                report()  # the rows up to this step arrive before the weights
                tensors = weights.state_tensors(trainer.model, trainer.objective)
                conn.send((Reply.WEIGHTS.value, {"blob": weights.to_bytes(tensors), "step": trainer.step_count,
                                       "settings": trainer.objective.settings()}))
            elif command == Command.SAVE:
                try:
                    conn.send((Reply.SAVED.value, {"path": str(trainer.save(arg["path"], resumable=arg["resumable"],
                                                                  **arg["fields"]))}))
                except (LabError, OSError) as e:  # a full disk or a read-only folder: say so, train on
                    conn.send((Reply.ERROR.value, error_payload(e)))
            elif command == Command.CLOSE:
                closed[0] = True
                return

    try:
        # The one training loop (core.control.drive); a failing step ends the run, and the process lives on
        # to say why, until the parent closes it.
        drive(trainer, control, between=between, until=lambda: closed[0], idle=0)
    except (EOFError, OSError):  # the parent is gone
        return


class ProcessRun:
    """The run protocol of core.control, with the trainer in a child process."""

    def __init__(self, config: RunConfig, data: datasets.Dataset | None = None, live_every: int = LIVE_EVERY,
                 resume_from=None, autosave=None, branch=None, control: Controller | None = None, nice: int = 0):
        """resume_from: a resumable checkpoint to continue (config is then its run's); branch: (a checkpoint,
        changed knobs, learning rate or None) to start a branch of (Trainer.branch); autosave: (path, every,
        sidecar fields), a periodic resumable checkpoint written by the child (Trainer.autosave). control:
        the controller this process's state goes to (a pooled run's, core.pool), else one of its own; it
        follows the child's, which alone steps. nice: lowers the child's priority (os.nice)."""
        self.control = control if control is not None else Controller(RunState.STARTING)
        self._released = False
        self.data = data if data is not None else datasets.load(config.data)
        context = start_context()
        self._conn, child = context.Pipe()
        resume_from = None if resume_from is None else str(resume_from)
        autosave = None if autosave is None else (str(autosave[0]), *autosave[1:])
        branch = None if branch is None else (str(branch[0]), *branch[1:])
        self._process = context.Process(target=_serve, daemon=True, name="vaelab-trainer",
                                        args=(config, live_every, child, resume_from, autosave, branch, dict(os.environ), nice))
        self._process.start()
        child.close()
        try:
            kind, hello = self._conn.recv()
        except (EOFError, OSError):
            self._process.join(timeout=5)
            raise LabError(f"the training process ended before it started (exit code {self._process.exitcode})") from None
        if Reply(kind) == Reply.FAILED:
            self._process.join(timeout=5)
            raise_payload(hello)
        if self.control.state == RunState.STARTING:
            self.control.move(RunState.READY)
        self.config = RunConfig.from_dict(hello["config"])
        self.device = torch.device(hello["device"])
        self.run_id = hello["run_id"]
        self.batch_size, self.n_train = hello["batch_size"], hello["n_train"]
        self.cores = self.threads = hello["threads"]  # torch threads in the child: all it found, and now
        self.history, self.live = [], []
        self.step_count, self.seconds = hello["step"], hello["seconds"]
        self.beta, self.lr = hello["beta"], hello["lr"]
        self.latent_dim = self.config.model.latent_dim
        self._replies = queue.Queue()
        self._request = threading.Lock()
        self._finished = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True, name="vaelab-trainer-reader")
        self._reader.start()

    state = property(lambda self: self.control.state)
    error = property(lambda self: self.control.error)

    def _read(self):
        while True:
            try:
                kind, message = self._conn.recv()
            except (EOFError, OSError):
                if not self.state.finished and not self._released:
                    self._process.join(timeout=5)
                    self.control.failed(f"training stopped: the training process ended unexpectedly at step "
                                        f"{self.step_count} (exit code {self._process.exitcode})")
                self._replies.put((Reply.ENDED, None))  # a request waiting for an answer fails at once
                self._finished.set()
                return
            if Reply(kind) != Reply.PROGRESS:
                self._replies.put((Reply(kind), message))
                continue
            self.history.extend(message["rows"])
            self.live.extend(message["live"])
            self.step_count, self.seconds = message["step"], message["seconds"]
            self.beta, self.lr = message["beta"], message["lr"]
            self._follow(message["state"], message["error"])
            if self.state.finished:
                self._finished.set()

    def _follow(self, state: str, error: str | None):
        """The child's state, as its controller reports it (core.control.Controller.follow)."""
        with contextlib.suppress(RunError):  # a report that crossed a stop or an interruption made here
            self.control.follow(RunState(state), error)

    def _send(self, command: Command, arg=None):
        try:
            self._conn.send((command.value, arg))
        except (EOFError, OSError):
            raise LabError(self.error or "the training process has ended") from None

    def _ask(self, command, arg=None, timeout: float = 120):
        with self._request:
            self._send(command, arg)
            try:
                kind, message = self._replies.get(timeout=timeout)
            except queue.Empty:
                raise LabError(f"the training process did not answer {command.value!r}") from None
        if kind == Reply.ENDED:
            self._replies.put((kind, message))  # and so does every later one
            raise LabError(self.error or "the training process has ended")
        if kind == Reply.ERROR:
            raise_payload(message)
        return message

    @property
    def epoch(self) -> float:
        return epochs(self.step_count, self.batch_size, self.n_train)

    def _control(self, command, arg=None):
        """Send a control and wait for the child to confirm it, so the state reads true on return."""
        ack = self._ask(command, arg)
        self.beta, self.lr, self.threads = ack["beta"], ack["lr"], ack["threads"]
        self._follow(ack["state"], self.error)

    def start(self, steps: int | None = None):
        self._finished.clear()
        self._control(Command.START, steps)

    def pause(self):
        self._control(Command.PAUSE)

    def resume(self):
        self._control(Command.RESUME)

    def halt(self):
        """Stop training (the child's controller stops it between two steps); the process stays, to save."""
        if self._process.is_alive():
            with contextlib.suppress(LabError):
                self._control(Command.STOP)
        self.control.stop()  # where the child could not say so itself

    def release(self):
        """End the child process, between two steps, leaving the run's state as it is (the pool's, once it
        has saved the run: recorded, or interrupted)."""
        self._released = True  # its end is asked for: not a failure
        if self._process.is_alive():
            with contextlib.suppress(LabError):
                self._send(Command.CLOSE)
            self._process.join(timeout=30)
        self._finished.set()

    def stop(self):
        """Stop training and end the child process."""
        self.halt()
        self.release()

    def join(self, timeout: float | None = None):
        self._finished.wait(timeout)

    def set_beta(self, beta: float):
        self._control(Command.BETA, BETA.check("beta", beta))  # checked here, where the error can be shown

    def set_lr(self, lr: float):
        self._control(Command.LR, check_lr(lr))

    def set_threads(self, threads: int):
        """How many torch threads the child trains with from its next step (runs sharing the cores)."""
        self._control(Command.THREADS, max(1, int(threads)))

    def snapshot(self) -> Bundle:
        """The child's model as it is now: weights (with the objective's: a flow's layers), config, the
        history up to that step, identified as (run_id, step)."""
        reply = self._ask(Command.WEIGHTS)
        step = reply["step"]
        config = replace(self.config, settings=reply["settings"])
        network, objective = weights.build_from(config, weights.from_bytes(reply["blob"]))
        return Bundle(network, objective, config, Ref(self.run_id, step), self.data.info, self.n_train,
                      [r for r in self.history if r["step"] <= step], [r for r in self.live if r["step"] <= step])

    def save(self, path, resumable: bool = False, **fields):
        """Write a checkpoint from the child (with its training state when resumable, and any extra sidecar
        fields); returns the sidecar's path."""
        return Path(self._ask(Command.SAVE, {"path": str(path), "resumable": resumable, "fields": fields})["path"])

    def __del__(self):
        if getattr(self, "_process", None) is not None and self._process.is_alive():
            self._process.kill()
