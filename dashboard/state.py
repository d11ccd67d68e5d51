"""What the pages share: the runs of this browser session, cached datasets and checkpoints, and the
model picker. Runs belong to a session token kept in the URL (?session=...), so two users never share
one, and a reload or a restarted server finds its runs again (core.pool keeps them in runs/)."""
from __future__ import annotations

import contextlib
import importlib
import re
import threading
import uuid
from enum import Enum
from pathlib import Path

import streamlit as st

from core import checkpoint, explore, files, monitor, report, safefs, settings, snapshots
from core import data as datasets
from core.bundle import Bundle
from core.control import RecordedRun
from core.errors import LabError
from core.pool import GRACE, OWNER, SAVE_EVERY, TRAINING_NICE, Pool, PooledRun



class Kind(str, Enum):
    """Where a model to look at comes from; its label (in the pickers and the URL) is "KIND: NAME"."""
    RUN = "run"      # a run of this session (NAME: the run's name)
    FILE = "file"    # a checkpoint file (NAME: its path in checkpoints/, or saved/NAME for this session's)
    SWEEP = "sweep"  # a sweep trial (NAME: SWEEP/TRIAL)
    WATCH = "watch"  # a run folder of a user's own training loop (core.monitor), in a watch root (NAME: its name)

    def label(self, name: str) -> str:
        return f"{self.value}: {name}"


def parse_label(text: str) -> tuple[Kind, str] | None:
    """A label from the URL or a picker, as (kind, name); None for text that is no label."""
    kind, sep, name = str(text).partition(": ")
    return (Kind(kind), name) if sep and kind in {k.value for k in Kind} and name else None


def shown_as(label: str) -> str:
    """A model's label as a picker shows it: a checkpoint file by its name, a run or a sweep trial saying so."""
    parsed = parse_label(label)
    if parsed is None:
        return label
    kind, name = parsed
    return {Kind.FILE: name, Kind.RUN: f"{name} (training here)", Kind.SWEEP: f"{name} (sweep trial)",
            Kind.WATCH: f"{name} (your loop)"}[kind]


FIRST_MODEL = Kind.FILE.label("mnist-vae")  # what Explore and Latent map open first when this session has no run


PRESENT = "present"  # the presentation-mode toggle's key; the link keeps it (?present=1)
PRESENT_FONT = 20      # chart type, in px, that reads from the back of a room on a 1280x720 projector
# A Vega-Lite chart's type in presentation mode (its own config: Streamlit's chart theme would set smaller).
PRESENT_VEGA = {"axis": {"labelFontSize": PRESENT_FONT - 2, "titleFontSize": PRESENT_FONT},
                "legend": {"labelFontSize": PRESENT_FONT - 2, "titleFontSize": PRESENT_FONT, "labelLimit": 0},
                "title": {"fontSize": PRESENT_FONT + 2}, "text": {"fontSize": PRESENT_FONT - 2}}


def presenting() -> bool:
    return bool(st.session_state.get(PRESENT))


def chart(fig, **kw):
    """A Plotly figure across its column; in presentation mode with a projector's type sizes and the
    height to fit them (the axes make room for their larger labels)."""
    if presenting():
        # Streamlit's chart theme sets the axes' and legend's own sizes: the layout's font alone leaves them small
        big = dict(size=PRESENT_FONT)
        fig.update_layout(font_size=PRESENT_FONT, height=int((fig.layout.height or 400) * 1.4), legend_font=big)
        fig.update_xaxes(automargin=True, tickfont=big, title_font=big)
        fig.update_yaxes(automargin=True, tickfont=big, title_font=big)
    return st.plotly_chart(fig, width="stretch", **kw)


def vega_spec_chart(data, spec: dict, **kw):
    """A Vega-Lite spec drawn over its data, across its column: while the spec stays the same, new data
    replaces the old in the same view (dashboard/live_charts.py). In presentation mode with a projector's
    type sizes."""
    spec = {**spec, "config": {"legend": {"labelLimit": 0}}}  # a legend's names whole, never "mnist-kl-annea…"
    if presenting():
        spec["config"], spec["height"] = PRESENT_VEGA, int(spec.get("height", 300) * 1.4)
        kw.setdefault("theme", None)
    return st.vega_lite_chart(data, spec, width="stretch", **kw)


def vega_chart(fig, **kw):
    """An Altair chart across its column; in presentation mode with a projector's type sizes."""
    if presenting():
        fig = fig.configure(**PRESENT_VEGA)
        kw.setdefault("theme", None)
    return st.altair_chart(fig, width="stretch", **kw)


def checkpoint_dir() -> Path:
    """Where checkpoints are listed and saved: $VAELAB_CHECKPOINTS, or checkpoints/ in the project."""
    return settings.get().checkpoints


# Widgets whose values outlive a visit to another page: the run setup and the view settings (not the
# choices that depend on which model is open). Streamlit forgets a widget's value when its page is not
# drawn; writing the value back as a plain session value on every run keeps it. These widgets take their
# starting values from default() rather than from a value argument, so the two never disagree.
KEPT = {"lesson", "dataset", "binarize", "arch", "hidden", "latent", "objectives", "steps", "lr", "batch", "seed",
        "device", "method", "n", "colour", "perplexity", "neighbors", "sigma", "reach", "traverse-steps", "hide",
        "between-steps", "refresh", "one-scale", "watch"}


def default(key: str, value) -> str:
    """A widget's starting value, set once in the session (so a kept value is never overridden); returns the key."""
    st.session_state.setdefault(key, value)
    return key


def keep_widget_values():
    for key in list(st.session_state):
        if isinstance(key, str) and (key in KEPT or key.startswith("knob-")):
            st.session_state[key] = st.session_state[key]


def runs_dir() -> Path:
    """Where the dashboard's runs checkpoint as they train: $VAELAB_RUNS, or runs/ in the project
    (apart from the shipped checkpoints/)."""
    return settings.get().runs


def pool() -> Pool:
    """This server's training processes: at most $VAELAB_MAX_RUNS at once (default: the cores), each run
    checkpointed every $VAELAB_SAVE_EVERY, a session's runs saved and ended when its pages have been gone
    for $VAELAB_GRACE seconds (defaults: core.pool.SAVE_EVERY, GRACE)."""
    given = settings.get()
    nice = TRAINING_NICE if given.training_nice is None else given.training_nice
    return _pool(str(given.runs), given.max_runs, given.save_every or SAVE_EVERY, given.grace or GRACE, nice)


@st.cache_resource
def _pool(folder: str, limit: int | None, save_every: str, grace: float, nice: int) -> Pool:
    return Pool(Path(folder), limit=limit, save_every=save_every, grace=grace, nice=nice)


def owner() -> str:
    """This browser session's token: the one it has; else the URL's, when valid and no other open session
    holds it (a reload, the first visit after a restart; a link shared from an open tab gets its own);
    else a new one. Written back to the URL so the next visit finds its runs."""
    token = st.session_state.get("owner")
    if not token:
        token = st.query_params.get("session", "")
        if not OWNER.fullmatch(token or "") or not pool().claim(token, *holder()):
            token = uuid.uuid4().hex[:16]
            pool().claim(token, *holder())
        st.session_state["owner"] = token
    if st.query_params.get("session") != token:
        st.query_params["session"] = token
    return token


def holder():
    """(this browser session's id, a test of whether a session is still open) for Pool.claim."""
    from streamlit import runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx
    ctx = get_script_run_ctx()
    alive = runtime.get_instance().is_active_session if runtime.exists() else (lambda session: False)
    return (ctx.session_id if ctx else "none"), alive


def runs() -> dict[str, PooledRun]:
    """This session's training runs by name, oldest first."""
    return pool().runs(owner())


@st.cache_resource(show_spinner="Loading the dataset ...", max_entries=8)
def _load_data(spec: datasets.DataSpec, _alive=None, _label=None, _inside=None) -> datasets.Dataset:
    budget = safefs.Budget(alive=_alive, inside=_inside, label=_label or "the dataset") if _alive else None
    return datasets.load(spec, budget=budget, label=_label)


def load_data(spec: datasets.DataSpec, label: str | None = None) -> datasets.Dataset:
    """A dataset, read once per server. Your own files are read only from where this session may read
    (allowed_path), within the time and size budgets, and the read stops if this page is closed; messages
    name them by `label` (what the user typed or uploaded), never by where the server keeps them."""
    if spec.name in datasets.DATASETS or not files.is_path(spec.name):
        return _load_data(spec)  # a built-in dataset: nothing of the user's to bound
    scope = _scope()
    if _within(spec.name, scope) is None:
        raise LabError(f"{label or Path(spec.name).name}: not found, or not in a folder this server lets you read")
    return _load_data(spec, session_alive(), label, lambda path: _within(str(path), scope) is not None)


load_data.clear = _load_data.clear  # forget every dataset read (after the files changed)


def try_data(spec: datasets.DataSpec) -> tuple[datasets.Dataset | None, str | None]:
    """(the dataset, None), or (None, why not): a model whose dataset is missing still decodes."""
    try:
        return load_data(spec), None
    except LabError as e:
        return None, str(e)


def session_alive():
    """A test of whether this page is still open, for work that should stop when it is closed."""
    session, alive = holder()
    return lambda: alive(session) if session != "none" else True


def data_roots() -> list[Path]:
    """The folders the operator lets users read datasets from ($VAELAB_DATA_ROOTS; none: the server-path
    field is off). Nobody's uploads are ever among them."""
    return safefs.roots_from_env()


def uploads() -> Path:
    """This session's own uploads folder in the data cache."""
    return files.uploads_dir(owner())


def _scope() -> tuple[list[Path], list[Path], Path]:
    """Where this session may read datasets: the operator's roots, less everybody's uploads, plus its own."""
    return data_roots(), [files.uploads_dir().resolve()], uploads().resolve()


def _within(text: str, scope) -> Path | None:
    roots, others, mine = scope
    return safefs.within(text, roots, excluded=others) or safefs.within(text, [mine])


def allowed_path(text: str) -> Path | None:
    """A dataset path this session may read: inside an operator's root (outside every session's uploads), or
    inside its own uploads; resolved. None when it is not there or not allowed: the two read the same. Links
    inside a dataset are followed only to such places too (load_data)."""
    return _within(text, _scope())


@st.cache_resource(show_spinner="Loading the run's kept steps ...", max_entries=8)
def _load_steps(path: str, mtime: float) -> list[Bundle]:
    return checkpoint.load_steps(path)


@st.cache_resource(show_spinner="Loading the checkpoint ...", max_entries=64)
def _load_checkpoint(path: str, mtime: float, step: int | None) -> Bundle:
    return checkpoint.load(path, step=step)


def load_checkpoint(path, step: int | None = None) -> Bundle:
    """A checkpoint (at one of its kept steps; None: its last), read once per version of the file (a
    re-saved file is read again)."""
    weights, meta = checkpoint.paths(path)
    mtime = max(p.stat().st_mtime for p in (weights, meta) if p.exists()) if meta.exists() else 0.0
    return _load_checkpoint(str(meta), mtime, step)


SAVED = "runs"  # checkpoints/runs/SESSION/: where Save writes, one folder per session


def saved_dir() -> Path:
    """Where this session's Save writes: checkpoints/runs/SESSION (no other session lists or overwrites it)."""
    return checkpoint_dir() / SAVED / owner()


def checkpoint_files() -> list[Path]:
    """Saved checkpoints: the shipped ones and this session's saved runs, not other sessions'. The live runs'
    own files (runs/, even inside checkpoints/) are listed as runs, and a sweep's trials (dozens of them) on
    the Sweeps page, which opens any of them here."""
    skip = [runs_dir().resolve(), *(d.resolve() for d in sweep_dirs()), (checkpoint_dir() / SAVED).resolve()]
    found = [p for p in _walk_checkpoints(checkpoint_dir()) if not any(p.resolve().is_relative_to(d) for d in skip)]
    if saved_dir().is_dir():
        found += _walk_checkpoints(saved_dir())
    return sorted(found)


def file_label(path: Path) -> str:
    """'file: mnist-vae' for a shipped checkpoint, 'file: saved/NAME' for one this session saved."""
    mine = saved_dir()
    if path.parent == mine or mine in path.parents:
        return Kind.FILE.label(f"saved/{path.relative_to(mine).with_suffix('')}")
    return Kind.FILE.label(str(path.relative_to(checkpoint_dir()).with_suffix("")))


def _walk_checkpoints(folder: Path) -> list[Path]:
    budget = safefs.Budget(seconds=10, label="the checkpoints folder")
    try:
        return [p for p in safefs.walk(folder, budget, depth=4)
                if p.suffix == ".json" and p.with_suffix(".safetensors").exists()]
    except LabError:
        return []


def sweep_dirs() -> list[Path]:
    """Where sweeps are found: the shipped ones (checkpoints/sweeps/) and $VAELAB_SWEEPS (default sweeps/,
    where `vaelab sweep` writes)."""
    return [checkpoint_dir() / "sweeps", settings.get().sweeps]


def sweep_folders() -> dict[str, Path]:
    """{name: folder} of every sweep there (a folder with a results table)."""
    found = {}
    for root in sweep_dirs():
        for folder in sorted(root.glob("*/results.csv")) if root.is_dir() else []:
            found.setdefault(folder.parent.name, folder.parent)
    return found


WATCHED_MOST = 200  # run folders a watch root lists, newest first


def watched_folders() -> dict[str, Path]:
    """{name: folder} of the run folders core.monitor wrote in the operator's watch roots ($VAELAB_WATCH_ROOTS,
    default ~/vaelab-runs), newest first; the first root that has a name wins. Each root's listing is bounded."""
    found = {}
    for root in safefs.roots_from_env("watch_roots"):
        budget = safefs.Budget(seconds=5, label="a watch root")
        try:
            folders = [p.parent for p in safefs.walk(root, budget, depth=2) if p.name == f"{monitor.RUN}.json"]
        except LabError:
            continue
        folders.sort(key=mtime, reverse=True)
        for folder in folders[:WATCHED_MOST]:
            found.setdefault(folder.name, folder)
    return found


def mtime(path: Path) -> float:
    """A file's or folder's modification time; 0 for one gone since it was listed (a loop may delete it)."""
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def watched_sidecar(folder: Path) -> dict:
    """A watched run's sidecar, read again only when the file changed (its loop rewrites it every few steps);
    CheckpointError for one that is gone or malformed."""
    meta = checkpoint.paths(folder / monitor.RUN)[1]
    return _watched_sidecar(str(meta), mtime(meta))


def rebuildable(folder: Path) -> bool:
    """Whether a watched run names the factory that rebuilds its model (else only its rows can be shown)."""
    try:
        return isinstance(watched_sidecar(folder).get("model"), str)
    except (LabError, OSError, TypeError, ValueError):  # gone, or a sidecar that is not one
        return False


@st.cache_data(show_spinner=False, max_entries=16)
def _watched_sidecar(path: str, mtime: float) -> dict:
    return checkpoint.read_sidecar(Path(path))


@st.cache_resource(show_spinner="Rebuilding the model of your loop ...", max_entries=16)
def _load_run(folder: str, mtimes: tuple, step: int | None):
    return monitor.load_run(folder, step)


@st.cache_resource(show_spinner="Rebuilding the model of your loop at its kept steps ...", max_entries=4)
def _load_run_steps(folder: str, mtimes: tuple):
    return monitor.load_steps(folder)


def _versions(folder: Path) -> tuple:
    """What a watched run's cached models are keyed on: its files' times (weights, sidecar, held-out data)."""
    weights, meta = checkpoint.paths(folder / monitor.RUN)
    return mtime(weights), mtime(meta), mtime(folder / monitor.HELD_OUT)


def load_run(folder: Path, step: int | None = None):
    """(bundle, held-out data) of a watched run at one of its kept steps, once per version of its files."""
    return _load_run(str(folder), _versions(folder), step)


def trial_label(sweep: str, trial: str) -> str:
    return Kind.SWEEP.label(f"{sweep}/{trial}")


def trial_source(label: str) -> "Source | None":
    """The Source behind a 'sweep: NAME/TRIAL' label, if that trial's checkpoint is there."""
    parsed = parse_label(label)
    if parsed is None or parsed[0] != Kind.SWEEP:
        return None
    name, _, trial = parsed[1].partition("/")
    folder = sweep_folders().get(name)
    if folder is None or not re.fullmatch(r"[A-Za-z0-9_.,+=-]{1,100}", trial) or trial.startswith("."):
        return None  # a trial's name is a plain, short file name (core.sweep.short_id)
    path = folder / "trials" / f"{trial}.json"
    return Source(label, path=path) if path.exists() and path.with_suffix(".safetensors").exists() else None


def to_image(images, spec: datasets.DataSpec, data: datasets.Dataset | None):
    """Model space to displayable pixels. Only mean-normalized data needs its dataset for that."""
    if data is not None:
        return data.to_image(images)
    if spec.normalize != "none":
        raise LabError(f"showing pictures of a {spec.normalize}-normalized model needs its dataset {spec.name!r}")
    return images.clamp(0, 1)


class Source:
    """A model to look at: a run of this session (its latest weights) or a checkpoint file. The label is
    for display only; what a model is, is its bundle's ref."""

    def __init__(self, label: str, run: PooledRun | None = None, path: Path | None = None):
        self.label, self.run, self.path = label, run, path

    @property
    def name(self) -> str:
        """The label without its kind: a run's name, a file's path in checkpoints/, SWEEP/TRIAL."""
        parsed = parse_label(self.label)
        return parsed[1] if parsed else self.label

    def open(self, step: int | None = None) -> tuple[Bundle, datasets.Dataset | None, str | None]:
        """(the model at `step`, one of steps(); None: its latest), its dataset or None, why the dataset
        is missing; raises LabError with a message fit for the page when the model cannot be opened."""
        if self.run is not None:
            if step is None or step >= self.run.step_count:
                return self.run.snapshot(), self.run.data, None
            return load_checkpoint(self.run.path, step), self.run.data, None  # its kept steps, as last saved
        if self.watched:
            return (*load_run(self.path, step), None)
        bundle = load_checkpoint(self.path, step)
        return (bundle, *try_data(bundle.config.data))

    def bundles(self) -> list[Bundle]:
        """The model at every step of steps(), oldest first (a file's from one read)."""
        if self.watched:  # every kept step from one read, as for a checkpoint file
            return _load_run_steps(str(self.path), _versions(self.path))[0]
        if self.run is None:
            weights, meta = checkpoint.paths(self.path)
            return _load_steps(str(meta), max(weights.stat().st_mtime, meta.stat().st_mtime))
        return [self.open(step)[0] for step in self.steps()]

    def steps(self) -> list[int]:
        """The steps whose weights can be shown: the kept ones and the latest. A run's kept steps are those
        of its last periodic checkpoint (every few seconds, in runs/), and its latest is the one training now."""
        if self.watched:
            return sorted({*snapshots.steps(watched_sidecar(self.path)), watched_sidecar(self.path).get("step") or 0})
        if self.run is None:
            return load_checkpoint(self.path).steps
        kept = []
        with contextlib.suppress(LabError, OSError):
            if checkpoint.paths(self.run.path)[1].exists():
                kept = [s for s in snapshots.steps(checkpoint.read_sidecar(checkpoint.paths(self.run.path)[1]))
                        if s < self.run.step_count]
        return sorted({*kept, self.run.step_count})

    @property
    def watched(self) -> bool:
        return self.label.startswith(Kind.WATCH.value + ": ")

    def history(self) -> list[dict]:
        if self.watched:
            return watched_sidecar(self.path).get("history", [])
        return list(self.run.history) if self.run is not None else load_checkpoint(self.path).history

    def recorded(self, data):
        """The diagnostics stored in the checkpoint when it was made, if they were measured on this data."""
        return None if self.path is None or self.watched else report.recorded(load_checkpoint(self.path), data)


def recorded_run(path: Path) -> RecordedRun:
    """A shipped or saved checkpoint as a finished run (core.control.RecordedRun), with its dataset if here."""
    bundle = load_checkpoint(path)
    run = RecordedRun(bundle, *try_data(bundle.config.data))
    run.path = path  # where its kept steps are read from
    return run


def shipped(name: str) -> Path | None:
    """The sidecar of a checkpoint by name (checkpoints/NAME.json), if it is there."""
    path = checkpoint_dir() / f"{name}.json"
    return path if path.exists() and path.with_suffix(".safetensors").exists() else None


def sources() -> list[Source]:
    """This session's runs, the saved checkpoints, and the sweep trials the link names (?model=, ?compare=)."""
    found = [Source(Kind.RUN.label(name), run=t) for name, t in runs().items()]
    found += [Source(file_label(p), path=p) for p in checkpoint_files()]
    found += [Source(Kind.WATCH.label(name), path=folder) for name, folder in watched_folders().items()
              if rebuildable(folder)]
    wanted = [st.query_params.get("model", ""), *st.query_params.get_all("compare")]
    found += [s for label in dict.fromkeys(wanted) if (s := trial_source(label))]
    return found


STEP = "step"  # the step slider's value, the same on every page and in the URL (?step=600)
WANTED = "wanted-step"  # this session's step ("latest": follow the run), shared by every page's slider


def wanted_step() -> int | None:
    """The step this session (or, on its first visit, the link) asks for; None: the latest."""
    text = str(st.session_state.get(WANTED) or st.query_params.get(STEP) or "")
    return int(text) if re.fullmatch(r"[0-9]{1,12}", text) else None  # not str.isdigit: '²' is a digit to it


def _slid(key: str, latest: int):
    st.session_state[WANTED] = "latest" if st.session_state[key] == latest else str(st.session_state[key])


def pick_step(steps: list[int], key: str = "step-slider", label: str = "Step") -> int | None:
    """The step slider: one position for every page, kept in the URL so a link opens "this run at step
    600". A step this run did not keep goes to the nearest it did. Returns the step, or None for the
    latest (which follows a run while it trains)."""
    if len(steps) < 2:
        st.query_params.pop(STEP, None)
        return None
    wanted = wanted_step()
    # Set before the widget on every run: each page's slider is its own widget, and the session's step
    # (moved on any page, or the link's) is the one to show.
    st.session_state[key] = steps[-1] if wanted is None else snapshots.nearest(steps, wanted)
    step = st.select_slider(label, steps, key=key, format_func=lambda s: f"{s:,}", on_change=_slid,
                            args=(key, steps[-1]),
                            help=f"The {len(steps)} steps of this run whose weights were kept (dense early, sparse "
                                 "later). Every view below shows the model as it was then; the link keeps it (?step=).")
    if step == steps[-1]:
        st.query_params.pop(STEP, None)
        return None
    st.query_params[STEP] = str(step)
    return step


def pick_model(key: str = "source", pictures: bool = True):
    """A model picker and the step slider; returns (source, bundle at that step, data, why the data is
    missing), or says why not and stops the page. data is None when the model's dataset is not here:
    decoder-only views still work. pictures: the page draws the decoder's pictures, so a model whose data are
    not images (a user's text model) is told so and the page stops."""
    options = sources()
    if not options:
        st.info("No model yet. Train one on the **Train** page, or save a checkpoint into `checkpoints/`.")
        st.stop()
    labels = [s.label for s in options]
    wanted = st.query_params.get("model")
    if wanted not in labels and not any(run.step_count for run in runs().values()):
        wanted = FIRST_MODEL  # the shipped MNIST VAE, when it is there (and no run of this session has weights)
    index = labels.index(wanted) if wanted in labels else 0
    label = st.selectbox("Model", labels, index=index, key=key, format_func=shown_as,
                         help="A run of this session (its latest weights, even while it trains) or a saved checkpoint.")
    st.query_params["model"] = label
    source = options[labels.index(label)]
    try:
        bundle, data, missing = source.open(pick_step(source.steps()))
    except LabError as e:
        st.error(f"Cannot open {label}: {e}")
        st.stop()
    if pictures and not getattr(bundle.network, "images", True):
        st.info(f"{shown_as(label)} models data that are not images ({bundle.network.name or 'a model of yours'}), "
                f"so this page, which draws pictures of its decoder, has none to show. Compare measures it; the "
                "Train page's watch view shows what its loop writes.")
        st.stop()
    return source, bundle, data, missing


def model_state(bundle: Bundle, name: str) -> str:
    """The session-state key of a piece of page state that belongs to one model (its id, not its label):
    a code made for one model never reaches another."""
    return f"{name}@{bundle.ref.id}"


@st.cache_resource
def preload() -> threading.Thread:
    """Once per server process, in the background: import what the first map needs (scikit-learn alone
    takes seconds), so the Latent map's first PCA does not wait for it."""
    thread = threading.Thread(target=importlib.import_module, args=("sklearn.decomposition",), daemon=True,
                              name="vaelab-preload")
    thread.start()
    return thread


@st.cache_resource
def warm_up(approximate: bool) -> threading.Thread:
    """Once per server process and UMAP path: compile UMAP's kernels in a background thread, so the first
    map takes seconds rather than a minute; `approximate` when this dataset's maps can be large enough
    for nearest-neighbour descent. At the server's own priority: numba compiles under one lock, so a map
    asked for meanwhile waits for this thread, and a lowered priority starves it when training keeps the
    cores busy (bench/umap_warm_up.py: 239 s at nice 19 against 46 s)."""
    thread = threading.Thread(target=explore.warm_up_umap, args=(approximate,), daemon=True,
                              name="vaelab-umap-warm-up")
    thread.start()
    return thread
