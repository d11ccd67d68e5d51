"""What the pages share: the runs of this browser session, cached datasets and checkpoints, and the
model picker. Each browser session has its own runs (st.session_state), so two users never share one."""
from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import streamlit as st

from core import checkpoint, explore, report
from core import data as datasets
from core.remote import ProcessTrainer
from core.errors import LabError

ROOT = Path(__file__).resolve().parent.parent


FIRST_MODEL = "file: mnist-vae"  # what Explore and Latent map open first when this session has no run


def checkpoint_dir() -> Path:
    """Where checkpoints are listed and saved: $VAELAB_CHECKPOINTS, or checkpoints/ in the project."""
    return Path(os.environ.get("VAELAB_CHECKPOINTS", ROOT / "checkpoints"))


# Widgets whose values outlive a visit to another page: the run setup and the view settings (not the
# choices that depend on which model is open). Streamlit forgets a widget's value when its page is not
# drawn; writing the value back as a plain session value on every run keeps it. These widgets take their
# starting values from default() rather than from a value argument, so the two never disagree.
KEPT = {"lesson", "dataset", "binarize", "arch", "hidden", "latent", "objectives", "steps", "lr", "batch", "seed",
        "device", "method", "n", "colour", "perplexity", "neighbors", "sigma", "reach", "traverse-steps", "hide",
        "between-steps", "refresh"}


def default(key: str, value) -> str:
    """A widget's starting value, set once in the session (so a kept value is never overridden); returns the key."""
    st.session_state.setdefault(key, value)
    return key


def keep_widget_values():
    for key in list(st.session_state):
        if isinstance(key, str) and (key in KEPT or key.startswith("knob-")):
            st.session_state[key] = st.session_state[key]


def runs() -> dict[str, ProcessTrainer]:
    """This session's training runs by name, oldest first."""
    return st.session_state.setdefault("runs", {})


@st.cache_resource(show_spinner="Loading the dataset ...")
def load_data(spec: datasets.DataSpec) -> datasets.Dataset:
    return datasets.load(spec)


@st.cache_resource(show_spinner="Loading the checkpoint ...", max_entries=32)
def _load_checkpoint(path: str, mtime: float) -> checkpoint.Checkpoint:
    return checkpoint.load(path)


def load_checkpoint(path) -> checkpoint.Checkpoint:
    """A checkpoint, read once per version of the file (a re-saved file is read again)."""
    weights, meta = checkpoint.paths(path)
    mtime = max(p.stat().st_mtime for p in (weights, meta) if p.exists()) if meta.exists() else 0.0
    return _load_checkpoint(str(meta), mtime)


def checkpoint_files() -> list[Path]:
    return sorted(p for p in checkpoint_dir().rglob("*.json") if p.with_suffix(".safetensors").exists())


class Source:
    """A model to look at: a run of this session (its latest weights) or a checkpoint file."""

    def __init__(self, label: str, trainer: ProcessTrainer | None = None, path: Path | None = None):
        self.label, self.trainer, self.path = label, trainer, path

    def load(self):
        """(model, data, objective, step); raises LabError with a message fit for the page."""
        if self.trainer is not None:
            t = self.trainer
            return t.snapshot(), t.data, t.objective, t.step_count
        ck = load_checkpoint(self.path)
        return ck.model, load_data(ck.config.data), ck.objective, ck.step

    def history(self) -> list[dict]:
        return list(self.trainer.history) if self.trainer is not None else load_checkpoint(self.path).history

    def recorded(self, data) -> dict | None:
        """The diagnostics stored in the checkpoint when it was made, if they were measured on this data."""
        return None if self.path is None else report.recorded(load_checkpoint(self.path), data)


class Recorded:
    """A shipped or saved checkpoint shown as a finished run: its training history and live diagnostics
    from the sidecar, its weights for the pictures. Reads like a ProcessTrainer to the Train page."""

    state, error, seconds = "recorded", None, 0.0

    def __init__(self, path: Path):
        ck = load_checkpoint(path)
        self.model, self.objective = ck.model, ck.objective
        self.history, self.live, self.step_count = ck.history, ck.live, ck.step
        self.batch_size, self.data = ck.config.batch_size, load_data(ck.config.data)
        self.command = ck.meta.get("command")

    @property
    def epoch(self) -> float:
        return self.step_count * self.batch_size / len(self.data.train_x)

    def snapshot(self):
        return self.model


def shipped(name: str) -> Path | None:
    """The sidecar of a checkpoint by name (checkpoints/NAME.json), if it is there."""
    path = checkpoint_dir() / f"{name}.json"
    return path if path.exists() and path.with_suffix(".safetensors").exists() else None


def sources() -> list[Source]:
    found = [Source(f"run: {name}", trainer=t) for name, t in runs().items()]
    found += [Source(f"file: {p.relative_to(checkpoint_dir()).with_suffix('')}", path=p) for p in checkpoint_files()]
    return found


def pick_model(key: str = "source"):
    """A model picker; returns (source, model, data, objective, step), or says why not and stops the page."""
    options = sources()
    if not options:
        st.info("No model yet. Train one on the **Train** page, or save a checkpoint into `checkpoints/`.")
        st.stop()
    labels = [s.label for s in options]
    wanted = st.query_params.get("model")
    if wanted not in labels and not runs():
        wanted = FIRST_MODEL  # the shipped MNIST VAE, when it is there
    index = labels.index(wanted) if wanted in labels else 0
    label = st.selectbox("Model", labels, index=index, key=key,
                         help="A run of this session (its latest weights, even while it trains) or a saved checkpoint.")
    st.query_params["model"] = label
    source = options[labels.index(label)]
    try:
        model, data, objective, step = source.load()
    except LabError as e:
        st.error(f"Cannot open {label}: {e}")
        st.stop()
    return source, model, data, objective, step


@st.cache_resource
def warm_up() -> threading.Thread:
    """Once per server process: compile UMAP's kernels in a background thread at the lowest CPU
    priority, so the first map takes seconds rather than a minute and training keeps its cores."""
    def work():
        with contextlib.suppress(OSError, AttributeError):  # Linux lets a thread lower its own priority
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        explore.warm_up_umap()

    thread = threading.Thread(target=work, daemon=True, name="vaelab-umap-warm-up")
    thread.start()
    return thread
