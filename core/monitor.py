"""Your own training loop, watched by the lab: a few lines that record the lab's live rows for any model
that follows core.protocol, into a run folder the dashboard opens live ("Watch a run folder", Train page).

    from core.monitor import Monitor
    monitor = Monitor(model, held_out_x, every=100, name="my-run")     # writes ~/vaelab-runs/my-run
    for step, x in enumerate(loader, 1):
        loss = ...; loss.backward(); optimizer.step()
        monitor.step(step, loss=loss.item(), kl=kl.item())      # the terms you want on the curves
    monitor.close()

Every `every` steps it measures, on the held-out examples you gave it, what the lab's own runs show live
(KL per dimension, active units, the MI with its ceiling; in every 5th row and the last, how much the
decoder relies on each dimension and the collapse verdict), keeps the weights at that step (core.snapshots'
schedule, within a budget) and rewrites the run folder, atomically, at most every 5 seconds and at close():

    OUT/run.safetensors, OUT/run.json   a checkpoint in the lab's format (core.checkpoint): your model's
                                        weights and kept steps; the terms you passed as the history, the
                                        live rows; "model" names your factory when you give one
    OUT/held_out.safetensors            the held-out examples the rows were measured on (written once)
    OUT/pictures.png                    reconstructions and prior samples at fixed codes, when x are images

The measurements run without gradients, with the model in eval mode (and put back as it was), and draw from
a stream of their own, so your loop's random numbers and results are the ones it would have without them.
What they cost at every = 100 is measured by bench/monitor.py (docs/benchmarks.md): 3 to 5% of a step of
pytorch/examples' VAE or of a GRU over words, on one CPU thread.
For PyTorch Lightning, `lightning_callback(monitor)` is a Callback that calls it after each training batch.
"""
from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
import uuid
import warnings
from pathlib import Path

import torch

from . import checkpoint, limits, safefs, settings, snapshots
from . import weights as weights_io
from .bundle import Bundle, Ref
from .config import RunConfig, finite_or_none
from .data import DataInfo, DataSpec, Dataset
from .diagnostics import LIVE
from .diagnostics.collapse import collapse
from .errors import ConfigError, LabError
from .objectives import build
from .protocol import UserVAE
from .rng import seeded
from .settings import WATCH_ROOT

RUN = "run"                     # OUT/run.json and OUT/run.safetensors
HELD_OUT = "held_out.safetensors"
PICTURES = "pictures.png"
VERDICT_IMAGES = 100            # the collapse verdict's examples (its decoder pass runs d + 2 times on them)
VERDICT_EVERY = 5               # the verdict in every 5th row (and the last): its d + 2 decoder passes are most
                                # of a measurement's cost (bench/monitor.py)
SAVE_SECONDS = 5.0              # the run folder rewritten at most this often (and at the first row and the last)


class Monitor:
    def __init__(self, model: torch.nn.Module, x: torch.Tensor, every: int = 100, name: str | None = None,
                 out: str | os.PathLike | None = None, factory: str | None = None,
                 snapshot_mb: float = snapshots.BUDGET_MB, n: int = 500, seed: int = 0, as_text=None,
                 overwrite: bool = False):
        """model: your module, following core.protocol (encode, decode or log_likelihood, prior, latent_dim);
        x: held-out examples as your loop feeds them (images N x C x H x W, or token ids, ...), the first n
        kept; out: the run folder (default NAME in the first watch root, ~/vaelab-runs, where the dashboard
        looks; NAME: the time; a folder holding another run gets -2, -3, ... unless `overwrite`); factory:
        "path/to/file.py:build" or "package.module:build", which builds the model (weights aside), so that the
        dashboard's other pages and `vaelab diagnose OUT` can rebuild it; as_text: for data that are not
        images (token ids), a function from a batch of x to strings, so that each live row carries the words
        the model draws at fixed codes and its reconstructions of the first held-out examples."""
        if not isinstance(every, int) or every < 1:
            raise ConfigError(f"every must be a whole number of steps >= 1, not {every!r}")
        if not isinstance(x, torch.Tensor) or x.dim() < 2 or len(x) < 2:
            raise ConfigError("x must be a tensor of at least two held-out examples, one per row")
        limits.check("batch", min(n, len(x)), "held-out examples")
        self.model, self.every, self.seed, self.as_text = model, every, seed, as_text
        name = name or time.strftime("run-%Y%m%d-%H%M%S")
        self.out = Path(out).expanduser() if out is not None else watch_root() / name
        if not overwrite:
            self.out = free_folder(self.out)
        self.x = x[:n].detach()
        self.stopped: str | None = None  # why it stopped measuring (the loop diverged)
        with self._aside(seed):  # the protocol's check runs the model: not on the loop's stream, not in train mode
            try:
                self.network = UserVAE(model, self.x[:4], name)
            except RuntimeError as e:  # a shape mismatch inside the user's layers on the first examples
                raise ConfigError(f"running {name} on a batch of {tuple(self.x.shape[1:])} examples failed: "
                                  f"{str(e).splitlines()[0][:200]}") from None
            shown = {"held_out_text": [str(t)[:200] for t in as_text(self.x[:8])]} if as_text else {}
        self.draws = self.network.images or as_text is not None
        if self.network.family == "log_likelihood" and not callable(getattr(model, "sample", None)):
            self.draws = False  # no sample(z): no pictures, no words (said on the page)
        self.data = held_out_data(self.x.cpu(), self.out.name)
        self.objective = build("vae")
        config = RunConfig(data=self.data.spec, model=self.network.cfg)
        self.meta = {"command": "core.monitor", "monitor": {"every": every, "held_out": len(self.x), **shown},
                     **({"model": absolute(factory)} if factory else {})}
        self.bundle = Bundle(self.network, self.objective, config, Ref(uuid.uuid4().hex, 0), self.data.info,
                             None, [], [], {})
        self.kept, self.saved = (snapshots.EVERY, {}), time.monotonic()
        self.snapshot_mb = float(snapshot_mb)
        self.out.mkdir(parents=True, exist_ok=True)
        for stale in (PICTURES, f"{RUN}.json", f"{RUN}.safetensors"):  # an earlier run's, when overwriting
            (self.out / stale).unlink(missing_ok=True)
        checkpoint.write_atomic(self.out / HELD_OUT, weights_io.to_bytes({"x": self.x.cpu().contiguous()}))

    @property
    def history(self) -> list[dict]:
        return self.bundle.history

    @property
    def live(self) -> list[dict]:
        return self.bundle.live

    @contextlib.contextmanager
    def _aside(self, seed: int):
        """Run the model as a measurement must: eval mode (put back after), no gradients, and a random stream
        of its own (seeded), so the loop's own draws and batch-norm statistics are as they would be."""
        training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), seeded(self._device(), seed):
                yield
        finally:
            self.model.train(training)

    def _device(self) -> torch.device:
        return next(self.model.parameters(), torch.zeros(())).device

    def step(self, step: int, **terms: float):
        """Record this step's terms (numbers: the loss, its reconstruction and KL, ...; the loss defaults to
        recon + kl); every `every` steps, measure the live row and rewrite the run folder. A non-finite loss
        stops the measuring (the folder keeps the last good step and says where it stopped)."""
        if self.stopped:
            return
        terms = {k: float(v) for k, v in terms.items()}
        given = "loss" in terms
        loss = terms.pop("loss") if given else terms.get("recon", math.nan) + terms.get("kl", math.nan)
        if not math.isfinite(loss):
            if not given and not {"recon", "kl"} <= set(terms):
                raise ConfigError("monitor.step(step, loss=...): give the loss (or recon= and kl=, which it sums)")
            return self._stop(step, f"the loss is {loss} at step {step:,}")
        self.bundle.history.append(finite_or_none({"step": int(step), "loss": loss, **terms}))
        if step % self.every == 0:
            try:
                self.measure(step)
            except Exception as e:  # a monitor never ends the loop it watches: it says why and stops measuring
                self._stop(step, f"measuring step {step:,} failed: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")

    def _stop(self, step: int, why: str):
        """Stop measuring, and say so in the folder: written a last time with the weights of the last good step
        where they are still finite, else its last whole save kept as it is."""
        self.stopped = why
        warnings.warn(f"core.monitor stops measuring {self.out.name}: {why}", stacklevel=3)
        self.meta |= {"stopped": why, "closed": True}
        try:
            if self.history and not weights_io.non_finite(weights_io.state_tensors(self.network, self.objective)):
                self.bundle.ref = Ref(self.bundle.ref.id, self.history[-1]["step"])
                self.save()
            else:
                raise LabError("its weights are not finite")
        except Exception:  # the model itself fails (or its weights are gone): the last whole save, annotated
            with contextlib.suppress(LabError, OSError):
                if checkpoint.paths(self.out / RUN)[1].exists():
                    checkpoint.annotate(self.out / RUN, check=False, stopped=why, closed=True)

    def measure(self, step: int, last: bool = False) -> dict | None:
        """The live row at this step (appended to self.live), the kept weights, and the run folder rewritten
        (when SAVE_SECONDS have passed since it last was; `last`: the verdict and the folder, whatever the time)."""
        self.bundle.ref = Ref(self.bundle.ref.id, int(step))
        tensors = weights_io.state_tensors(self.network, self.objective)  # one copy a row: checked, then kept
        if weights_io.non_finite(tensors):
            return self._stop(step, f"the weights hold NaN or inf at step {step:,}")
        with self._aside(self.seed + step):
            row = {"step": int(step)}
            q = self.bundle.posterior(self.x.to(self._device())).for_live()
            for _, live in LIVE.items():
                row.update(live(q))
            if last or len(self.bundle.live) % VERDICT_EVERY == 0:
                report = collapse(self.bundle, self.data, n=min(VERDICT_IMAGES, len(self.x)))
                row["verdicts"] = {v: report.count(v) for v in ("active", "unused by decoder", "collapsed")}
                row["zeroing_cost"] = report.zeroing_cost
            if self.draws and not self.network.images:
                row |= self._texts()
            self.bundle.live.append(finite_or_none(row))
        self._keep(step, tensors)
        if last or len(self.bundle.live) == 1 or time.monotonic() - self.saved >= SAVE_SECONDS:
            self.save()
        return self.bundle.live[-1]

    def _keep(self, step: int, tensors: dict):
        every, kept = self.kept
        if self.snapshot_mb and snapshots.due(step, every):
            tensors = snapshots.compact(tensors)
            kept[step] = tensors
            steps, every = snapshots.thin(list(kept), every, snapshots.limit(self.snapshot_mb, snapshots.nbytes(tensors)))
            self.kept = every, {s: kept[s] for s in steps}

    def _fixed_codes(self, n: int) -> torch.Tensor:
        with seeded(self._device(), self.seed):  # the same codes every time: a picture changes where the model does
            return self.network.prior().sample((n,))

    def _pictures(self):
        from torchvision.utils import save_image
        n = min(8, len(self.x))
        recon = self.bundle.reconstruct(self.x[:n])
        samples = self.network.mean_image(self._fixed_codes(n)).cpu()
        grid = torch.cat([self.x[:n].cpu(), recon, samples]).clamp(0, 1)
        fd, tmp = tempfile.mkstemp(dir=self.out, prefix=".pictures.", suffix=".png")
        os.close(fd)
        save_image(grid, tmp, nrow=n, padding=1)
        os.replace(tmp, self.out / PICTURES)

    def _texts(self) -> dict:
        """The words (or whatever as_text makes of x) drawn at fixed prior codes, and of the first held-out
        examples' posterior means: what a picture is for images."""
        n = min(8, len(self.x))
        mean = self.bundle.posterior(self.x[:n].to(self._device())).mean
        return {"samples": [str(t)[:200] for t in self.as_text(self.network.decode(self._fixed_codes(n)).sample().cpu())],
                "reconstructions": [str(t)[:200] for t in self.as_text(self.network.decode(mean).sample().cpu())]}

    def save(self):
        """The run folder rewritten: the checkpoint of the latest step, with its rows and kept steps, and the
        pictures of the model as it is now (when x are images)."""
        self.saved = time.monotonic()
        if self.draws and self.network.images:
            with self._aside(self.seed + self.bundle.step):
                self._pictures()
        # thinned as a sidecar keeps it (every step to 1,000, then fewer): a long run's save stays cheap
        self.bundle.history[:] = checkpoint.thin_history(self.bundle.history)
        every, kept = self.kept
        earlier = {s: t for s, t in kept.items() if s != self.bundle.step}
        checkpoint.save(self.out / RUN, self.bundle, snapshots=(earlier, {"steps": sorted(kept), "every": every,
                                                                          "budget_mb": self.snapshot_mb}),
                        sync=False, **self.meta)  # every few seconds: not worth a wait for the disk each time

    def close(self):
        """The last step recorded, measured whole (the verdict too), and the folder written a last time."""
        if not self.history or self.stopped:
            return
        self.meta["closed"] = True  # the watch view says "finished" and stops redrawing
        step = self.history[-1]["step"]
        if self.live and self.live[-1]["step"] == step:
            if "verdicts" in self.live[-1]:
                self.save()
                return
            self.bundle.live.pop()  # measured again with its verdict: the same numbers, from the same stream
        self.measure(step, last=True)


def watch_root() -> Path:
    """Where a run folder goes unless told: the first of the operator's watch roots (default ~/vaelab-runs)."""
    roots = settings.get().watch_roots
    return roots[0] if roots else WATCH_ROOT


def free_folder(out: Path) -> Path:
    """out, or out-2, out-3, ...: the first that holds no other run (a run folder is never overwritten unasked)."""
    free = checkpoint.unused_name(out, lambda p: (p / HELD_OUT).exists() or (p / f"{RUN}.json").exists())
    if free != out:
        warnings.warn(f"{out} holds another run: this one goes to {free} (overwrite=True replaces it)", stacklevel=3)
    return free


def absolute(factory: str) -> str:
    """A factory as the run folder records it: a file's path made absolute, so it reads the same from anywhere."""
    where, _, attr = factory.rpartition(":")
    return f"{Path(where).expanduser().resolve()}:{attr}" if where.endswith(".py") else factory


def load_run(folder, step: int | None = None, device="cpu") -> tuple[Bundle, Dataset]:
    """(the model value at `step`, one of its kept steps (None: the latest), the held-out data) of a run folder
    that core.monitor wrote. Rebuilding the model imports the code its factory names: the caller trusts it."""
    bundles, data = load_steps(folder, [step], device)
    return bundles[0], data


def load_steps(folder, steps: list[int | None] | None = None, device="cpu") -> tuple[list[Bundle], Dataset]:
    """The model at each of `steps` (None: its latest; default: every kept step, oldest first), from one read
    of the folder, and its held-out data. Any problem is one CheckpointError naming the folder."""
    from .errors import CheckpointError
    from .protocol import import_factory
    from safetensors.torch import load as load_tensors

    folder = Path(folder)
    meta, tensors = checkpoint.read(folder / RUN)
    factory = meta.get("model")
    if meta.get("command") != "core.monitor":
        raise CheckpointError(f"{folder}: not a run folder written by core.monitor")
    if not isinstance(factory, str):
        raise CheckpointError(f"{folder}: the run names no factory to rebuild its model with (give the Monitor "
                              f"factory='file.py:build'); its rows are all that can be shown")
    try:
        x = load_tensors(safefs.read_regular(folder / HELD_OUT, limits.maximum("weights_bytes")))["x"]
    except Exception as e:  # missing, too large, not safetensors, or without its "x"
        raise CheckpointError(f"{folder / HELD_OUT}: cannot be read ({e})") from None
    data = held_out_data(x, folder.name)
    latest, kept = int(meta.get("step") or 0), snapshots.unpack(tensors)
    steps = snapshots.steps(meta) if steps is None else steps
    bundles = []
    for step in steps:
        at = latest if step is None else step
        if at != latest and at not in kept:
            raise CheckpointError(f"{folder}: no weights kept at step {at:,}")
        state, _ = weights_io.states(tensors if at == latest else snapshots.widen(kept[at]))
        state = {k.removeprefix("module."): v for k, v in state.items() if k.startswith("module.")}
        try:
            module = import_factory(factory)()
            if not isinstance(module, torch.nn.Module):
                raise TypeError(f"it returned a {type(module).__name__}, not a torch.nn.Module")
            module.load_state_dict(state)
            network = UserVAE(module.to(device).eval(), x[:4].to(device), factory)
        except LabError as e:
            raise CheckpointError(f"{folder}: {e}") from None
        except Exception as e:  # the user's code: its own error, in one line
            raise CheckpointError(f"{folder}: rebuilding its model with {factory} failed: {type(e).__name__}: "
                                  f"{str(e).splitlines()[0][:200] if str(e) else ''}") from None
        history = [r for r in meta.get("history", []) if r["step"] <= at]
        live = [r for r in meta.get("live", []) if r["step"] <= at]
        config = RunConfig(data=data.spec, model=network.cfg)
        bundles.append(Bundle(network, build("vae").to(device), config, Ref(meta["weights_sha256"], at), data.info,
                              None, history, live, meta))
    return bundles, data


def held_out_data(x: torch.Tensor, name: str) -> Dataset:
    """The held-out examples as a dataset the diagnostics read (its test split; no labels, no training split)."""
    shape = tuple(x.shape[1:])
    images = len(shape) == 3 and shape[0] in (1, 3)
    binary = bool(((x == 0) | (x == 1)).all())
    info = DataInfo(name, shape if images else (1, 1, x[0].numel()), 0, "bernoulli" if binary else "gaussian",
                    source="held-out examples given to core.monitor")
    labels = torch.zeros(len(x), dtype=torch.long)
    return Dataset(info, x[:0], labels[:0], x, labels, DataSpec(name))


def lightning_callback(monitor: Monitor):
    """A PyTorch Lightning Callback that hands the monitor each training step and what the module logged
    (trainer.callback_metrics: self.log("loss", ...) in training_step)."""
    try:
        from lightning.pytorch import Callback
    except ImportError:
        from pytorch_lightning import Callback

    class MonitorCallback(Callback):
        last = -1

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == self.last:  # accumulating gradients: no optimizer step since the last batch
                return
            self.last = trainer.global_step
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.as_tensor(v).numel() == 1}
            if isinstance(outputs, dict) and "loss" in outputs:
                metrics.setdefault("loss", float(outputs["loss"]))
            monitor.step(trainer.global_step, **metrics)

        def on_train_end(self, trainer, pl_module):
            monitor.close()

    return MonitorCallback()
