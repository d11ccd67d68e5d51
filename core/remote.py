"""A Trainer in a child process, behind the Trainer's own interface.

The dashboard trains this way: a training thread inside the web server would share its GIL with every
page rerun and slow down. The child runs core.engine.Trainer; the parent keeps the history, the live
diagnostics and the state current from the messages the child sends about five times a second, and asks
for the weights (as safetensors bytes: nothing is unpickled) when it needs a snapshot.

    trainer = ProcessTrainer(RunConfig(...))
    trainer.start(steps=2000); trainer.set_beta(8.0); trainer.pause(); trainer.resume()
    model = trainer.snapshot(); trainer.save("checkpoints/runs/x"); trainer.stop()
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import queue
import threading
import time
from pathlib import Path

import torch
from safetensors.torch import load as tensors_from_bytes, save as tensors_to_bytes

from . import data as datasets
from .engine import Diverged, RunConfig, Trainer, build_model, check_lr
from .errors import ConfigError, LabError
from .objectives import build as build_objective

REPORT_EVERY = 0.2  # seconds between the child's progress messages


def _serve(config: RunConfig, live_every: int, conn):
    """The child: a Trainer stepped in small chunks between commands from the parent."""
    try:
        trainer = Trainer(config, live_every=live_every)
    except LabError as e:
        conn.send(("failed", f"{type(e).__name__}:{e}"))
        return
    conn.send(("ready", {"config": trainer.config.to_dict(), "device": str(trainer.device),
                         "batch_size": trainer.batch_size, "n_train": len(trainer.train_x),
                         "threads": torch.get_num_threads()}))
    target, sent, last = None, {"rows": 0, "live": 0, "state": None}, 0.0

    def report():
        """Send the rows and live diagnostics not sent yet, and the state."""
        conn.send(("progress", {"rows": trainer.history[sent["rows"]:], "live": trainer.live[sent["live"]:],
                                "state": trainer.state, "error": trainer.error, "step": trainer.step_count,
                                "seconds": trainer.seconds, "beta": trainer.objective.beta, "lr": trainer.lr}))
        sent.update(rows=len(trainer.history), live=len(trainer.live), state=trainer.state)

    while True:
        running = trainer.state == "running"
        try:
            while conn.poll(0 if running else 0.1):
                command, arg = conn.recv()
                if command == "start":
                    target, trainer.state = (None if arg is None else trainer.step_count + arg), "running"
                elif command == "pause" and trainer.state == "running":
                    trainer.state = "paused"
                elif command == "resume" and trainer.state == "paused":
                    trainer.state = "running"
                elif command == "stop" and trainer.state in ("running", "paused"):
                    trainer.state = "stopped"
                elif command == "beta":
                    trainer.set_beta(arg)
                elif command == "lr":
                    trainer.set_lr(arg)
                if command in ("start", "pause", "resume", "stop", "beta", "lr"):
                    report()  # everything up to now arrives before the confirmation
                    conn.send(("ack", {"state": trainer.state, "beta": trainer.objective.beta, "lr": trainer.lr}))
                elif command == "weights":
                    state = {f"model.{k}": v for k, v in trainer.model.state_dict().items()}
                    state |= {f"objective.{k}": v for k, v in trainer.objective.state_dict().items()}
                    conn.send(("weights", tensors_to_bytes({k: v.detach().cpu().contiguous() for k, v in state.items()})))
                elif command == "save":
                    try:
                        conn.send(("saved", {"path": str(trainer.save(arg))}))
                    except LabError as e:
                        conn.send(("saved", {"error": str(e)}))
                elif command == "close":
                    return
                last = 0.0  # report the change at once
        except (EOFError, OSError):  # the parent is gone
            return
        if trainer.state == "running":
            try:
                trainer.step(min(5, target - trainer.step_count) if target is not None else 5)
                if target is not None and trainer.step_count >= target:
                    trainer.state = "done"
            except Diverged:
                pass  # state and error are set
        changed = sent["state"] != trainer.state or sent["rows"] < len(trainer.history)
        if changed and (time.monotonic() - last > REPORT_EVERY or trainer.state != "running"):
            try:
                report()
            except (EOFError, OSError):
                return
            last = time.monotonic()


class ProcessTrainer:
    """core.engine.Trainer's interface (start, pause, resume, stop, join, set_beta, set_lr, snapshot, save,
    history, live, state, error, step_count, seconds, epoch), with the training in a child process."""

    def __init__(self, config: RunConfig, data: datasets.Dataset | None = None, live_every: int = 50):
        self.data = data if data is not None else datasets.load(config.data)
        context = mp.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(config, live_every, child), daemon=True,
                                        name="vaelab-trainer")
        self._process.start()
        child.close()
        kind, hello = self._conn.recv()
        if kind == "failed":
            name, message = hello.split(":", 1)
            raise (ConfigError if name == "ConfigError" else LabError)(message)
        self.config = RunConfig.from_dict(hello["config"])
        self.device = torch.device(hello["device"])
        self.batch_size, self._n_train = hello["batch_size"], hello["n_train"]
        self.threads = hello["threads"]  # torch threads training in the child
        self.objective = build_objective(self.config.objective, self.config.settings)
        self.model = self._skeleton()
        self.history, self.live = [], []
        self.state, self.error, self.step_count, self.seconds, self.lr = "ready", None, 0, 0.0, self.config.lr
        self._replies = queue.Queue()
        self._request = threading.Lock()
        self._finished = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True, name="vaelab-trainer-reader")
        self._reader.start()

    def _read(self):
        while True:
            try:
                kind, message = self._conn.recv()
            except (EOFError, OSError):
                if self.state in ("running", "paused"):
                    self.state, self.error = "stopped", "training stopped: the training process ended"
                self._finished.set()
                return
            if kind != "progress":
                self._replies.put(message)
                continue
            self.history.extend(message["rows"])
            self.live.extend(message["live"])
            self.step_count, self.seconds, self.error = message["step"], message["seconds"], message["error"]
            self.objective.beta, self.lr, self.state = message["beta"], message["lr"], message["state"]
            if self.state in ("done", "stopped", "diverged"):
                self._finished.set()

    def _send(self, command, arg=None):
        try:
            self._conn.send((command, arg))
        except (EOFError, OSError):
            raise LabError("the training process has ended") from None

    def _ask(self, command, arg=None, timeout: float = 120):
        with self._request:
            self._send(command, arg)
            try:
                return self._replies.get(timeout=timeout)
            except queue.Empty:
                raise LabError(f"the training process did not answer {command!r}") from None

    @property
    def epoch(self) -> float:
        return self.step_count * self.batch_size / self._n_train

    def _control(self, command, arg=None):
        """Send a control and wait for the child to confirm it, so the state reads true on return."""
        ack = self._ask(command, arg)
        self.state, self.objective.beta, self.lr = ack["state"], ack["beta"], ack["lr"]

    def start(self, steps: int | None = None):
        if self.state == "diverged":
            raise Diverged(self.error)
        self._finished.clear()
        self._control("start", steps)

    def pause(self):
        self._control("pause")

    def resume(self):
        self._control("resume")

    def stop(self):
        """Stop training and end the child process."""
        if self._process.is_alive():
            with contextlib.suppress(LabError):
                self._control("stop")
            with contextlib.suppress(LabError):
                self._send("close")
            self._process.join(timeout=30)
        self._finished.set()
        if self.state in ("ready", "running", "paused"):
            self.state = "stopped"

    def join(self, timeout: float | None = None):
        self._finished.wait(timeout)

    def set_beta(self, beta: float):
        self.objective.set_beta(beta)  # checks the value here, where the error can be shown
        self._control("beta", self.objective.beta)

    def set_lr(self, lr: float):
        self._control("lr", check_lr(lr))

    def _skeleton(self):
        """The model, built on the meta device: its shape without memory or random draws."""
        with torch.device("meta"):
            return build_model(self.config, self.data.info,
                               build_objective(self.config.objective, self.config.settings))[1]

    def snapshot(self):
        """A CPU copy of the child's current weights, in eval mode."""
        tensors = tensors_from_bytes(self._ask("weights"))
        model = self._skeleton()
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, assign=True)
        return model.eval()

    def save(self, path):
        """Write a checkpoint from the child; returns the sidecar's path."""
        result = self._ask("save", str(path))
        if "error" in result:
            raise LabError(result["error"])
        return Path(result["path"])

    def __del__(self):
        if getattr(self, "_process", None) is not None and self._process.is_alive():
            self._process.kill()
