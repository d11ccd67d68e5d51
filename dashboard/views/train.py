"""Train: set up one run or a race of several, and watch them learn."""
import time
from dataclasses import replace

import streamlit as st
import torch

from pathlib import Path

from core import checkpoint, data as datasets, explore, files, limits, monitor, options, pictures, recipe, safefs, snapshots, timeline, track
from core.config import PRESETS, RunConfig
from core.control import RunState
from core.engine import check_run, describe_device, pick_device
from core.errors import LabError
from core.objectives import OBJECTIVES
from core.pool import PooledRun
from core.posterior import Factorized
from dashboard import live_charts, plots
from dashboard.lessons import LESSONS, widget_values
from dashboard.state import (Kind, Source, allowed_path, data_roots, default, load_checkpoint, load_data, mtime, owner,
                             pick_step, pool, rebuildable, recorded_run, runs, saved_dir, shipped, to_image,
                             vega_spec_chart, watched_folders, watched_sidecar)

DASHBOARD = PRESETS["dashboard"]  # the smaller network a laptop trains live while people watch
HIDDEN = {f"small {DASHBOARD.hidden}": DASHBOARD.hidden, f"default {PRESETS['default'].hidden}": PRESETS["default"].hidden,
          "tiny (64,)": (64,)}


def option_widget(name: str, help: str | None = None):
    """The Train page's widget of a run option, drawn from the option table (core.options)."""
    option = options.OPTIONS[name]
    page, help = option.page, help or option.help
    key = default(page.key, option.initial if page.start is None else page.start)
    if name == "device":
        return st.selectbox(page.label, ["auto", "cpu", "cuda", "mps"], key=key, help=help)
    if option.choices:
        return st.selectbox(page.label, option.choices, key=key, help=help)
    if page.slider:
        return st.slider(page.label, page.low, page.high, step=page.step, key=key, help=help)
    if option.kind == "int":
        return st.number_input(page.label, int(page.low), int(page.high), step=int(page.step or 1), key=key, help=help)
    return st.number_input(page.label, float(page.low), float(page.high), format="%g", key=key, help=help)


def knob_widget(name, knob, key):
    if knob.choices:
        return st.selectbox(name, knob.choices, help=knob.help, key=default(key, knob.default))
    if isinstance(knob.default, int):
        upper = None if knob.upper is None else int(knob.upper)
        return st.number_input(name, min_value=int(knob.min or 0), max_value=upper, step=1, help=knob.help,
                               key=default(key, knob.default))
    return st.number_input(name, min_value=knob.min, max_value=knob.upper, help=knob.help,
                           key=default(key, float(knob.default)), format="%g")


OWN = "your own images ..."


def binarize_by_dataset():
    """Dynamic binarization suits the Bernoulli datasets, not Frey Faces' grey levels (nor, by default, yours)."""
    st.session_state["binarize"] = st.session_state.get("dataset") not in ("frey", OWN)


def own_images() -> tuple[str | None, int, str]:
    """The sidebar's "your own images": a path in a folder the operator allows (VAELAB_DATA_ROOTS) or an
    upload (unpacked into this session's own folder), the size and colour to make them. Returns (path or
    None, size, colour) and says what it found. Messages name what the user typed or uploaded, never where
    the server keeps it."""
    roots = data_roots()
    path = ""
    if roots:
        path = st.text_input("Folder or .npz on this server", key=default("own-path", ""), max_chars=1000,
                             placeholder="my-images", help="A folder with one sub-folder per class (or none), or an "
                             "npz with an array x (N images) and optionally y (labels), inside the folders this "
                             f"server shares: {', '.join(r.name + '/' for r in roots)}")
    upload = st.file_uploader("Upload a .zip or .npz" if not roots else "... or upload a .zip or .npz",
                              type=["zip", "npz"], key="own-upload",
                              help=f"At most {files.UPLOAD_LIMIT // 2**20} MiB; only this session can read it.")
    said = st.empty()  # what was found, or why not: under the fields that name the files
    size = st.number_input("Image size (pixels, 0: as they are)", 0, limits.maximum("image_side"), step=4,
                           key=default("own-size", 28),
                           help="Every image is resized to this many pixels square; with 0 they must be one size.")
    color = st.selectbox("Colour", files.COLORS, key=default("own-color", "auto"),
                         help="auto: RGB when any image has colour, else grey.")
    label = upload.name if upload is not None else path
    try:
        if upload is not None:
            real = uploaded(upload.name, upload.getvalue(), owner())
        elif path:
            real = allowed_path(path)
            if real is None:
                raise LabError(f"{path}: not found, or not in a folder this server lets you read")
        else:
            return None, int(size), color
        found = load_data(datasets.DataSpec(str(real), size=int(size), color=color), label=label)
    except LabError as e:
        said.error(str(e))  # core names the files by `label`, never by where the server keeps them
        return None, int(size), color
    info = found.info
    said.caption(f"{len(found.train_x) + len(found.test_x):,} images of {'x'.join(map(str, info.shape))} "
               f"({len(found.test_x):,} held out), {info.n_classes or 'no'} classes; {info.likelihood} likelihood")
    return info.name, int(size), color


@st.cache_data(show_spinner="Unpacking the upload ...", max_entries=8)
def uploaded(name: str, content: bytes, session: str) -> Path:
    return files.unpack_upload(name, content, session)


def apply_lesson():
    """Callback of the lesson picker: set the controls before they are drawn."""
    name = st.session_state.get("lesson")
    if name in LESSONS:
        st.session_state.update(widget_values(name))
        st.query_params["lesson"] = name
    else:
        st.query_params.pop("lesson", None)


def setup():
    """The sidebar: data, model, objectives with their knobs, budget. Returns the configs to start, or None."""
    with st.sidebar:
        if st.session_state.get("lesson", "none") == "none" and st.query_params.get("lesson") in LESSONS:
            st.session_state["lesson"] = st.query_params["lesson"]  # a shared link opens its lesson
            apply_lesson()
        st.selectbox("Lesson", ["none", *LESSONS], key=default("lesson", "none"), on_change=apply_lesson,
                     help="Set every control for a classic demonstration in one click.")
        watch_picker()
        st.header("Set up")
        names = datasets.DATASETS.names() + [OWN]
        dataset = st.selectbox("Dataset", names, key=default("dataset", "digits"), on_change=binarize_by_dataset,
                               help="digits ships with scikit-learn and works offline. MNIST without its files "
                                    "and without a network falls back to a 5,000-digit subset, and says so. "
                                    f"{OWN}: a folder or .npz on this server, or an upload.")
        size, color = 0, "auto"
        if dataset == OWN:
            dataset, size, color = own_images()
        binarize = st.toggle("Dynamic binarization", key=default("binarize", True),
                             help="A fresh Bernoulli draw of every pixel in every minibatch (Bernoulli decoders).")
        arch = st.radio("Network", ["mlp", "conv"], horizontal=True, key=default("arch", "mlp"))
        hidden = st.selectbox("MLP widths", list(HIDDEN), key=default("hidden", next(iter(HIDDEN))),
                              disabled=arch != "mlp")
        latent = option_widget("latent")
        pixelcnn = option_widget("pixelcnn_layers", help="0: the MLP or conv decoder alone. More: a PixelCNN of that "
                                 "many layers over the pixels, z entering each (binary images): a strong decoder, "
                                 "which can model the images without z")
        objectives = st.multiselect("Objectives", OBJECTIVES.names(), key=default("objectives", ["vae"]),
                                    max_selections=limits.maximum("race"),
                                    help="Pick several to race them: same data, network and seed, side by side.")
        settings = {}
        for name in objectives:
            cls = OBJECTIVES.get(name)
            if cls.knobs:
                with st.expander(f"{name} settings", expanded=len(objectives) == 1):
                    settings[name] = {k: knob_widget(k, knob, f"knob-{name}-{k}") for k, knob in cls.knobs.items()}
        steps = option_widget("steps")
        lr, batch, seed = option_widget("lr"), option_widget("batch_size"), option_widget("seed")
        device = option_widget("device", help=f"auto picks {describe_device(pick_device('auto'))} here.")
        start = st.button("Train" if len(objectives) < 2 else f"Race {len(objectives)} runs", type="primary",
                          width="stretch", disabled=not objectives,
                          on_click=lambda: st.session_state.update(watch=WATCH_NONE))  # show the run it starts
    if not start:
        return objectives, None
    if not dataset:
        st.error("Give a folder or .npz on the server, or upload a .zip or .npz, before training on your own images.")
        return objectives, None
    spec = datasets.DataSpec(dataset, "dynamic" if binarize else "none", size=size, color=color)
    model = replace(DASHBOARD, arch=arch, hidden=HIDDEN[hidden], latent_dim=latent, pixelcnn_layers=int(pixelcnn))
    configs = {name: RunConfig(data=spec, model=model, objective=name, settings=settings.get(name, {}),
                               batch_size=int(batch), lr=float(lr), seed=int(seed), device=device)
               for name in objectives}
    return objectives, (configs, int(steps))


def start(configs: dict, steps: int):
    """Replace this session's runs with new ones. Each trains in a child process (page reruns cannot slow
    it) when the server's pool has one free, checkpointing into runs/ as it goes."""
    try:
        data = load_data(next(iter(configs.values())).data)
        for config in configs.values():
            check_run(config, data.info)  # a bad device or a run too big: one line, and the old runs stay
    except LabError as e:
        st.error(str(e))
        return
    for old in runs().values():
        pool().discard(old)
    try:
        for name, config in configs.items():
            pool().submit(owner(), name, config, steps, data)
    except LabError as e:
        for old in runs().values():
            pool().discard(old)
        st.error(str(e))


def waiting(name: str, t):
    """A run without a process: queued for one, or interrupted (saved) and ready to resume."""
    if t.state == RunState.STARTING:
        st.info("Starting its training process ...", icon=":material/hourglass_top:")
        return
    if t.state == RunState.QUEUED:
        ahead = t.ahead
        line = "yours is next" if not ahead else f"{ahead} run{'s' if ahead != 1 else ''} ahead of yours"
        st.info(f"Waiting for a free training process: {line} (this server trains {pool().limit} at once).",
                icon=":material/hourglass_top:")
        if st.button("Cancel", key=f"cancel-{name}"):
            t.stop()
            st.rerun()
        return
    st.warning(t.error or "This run has no training process.", icon=":material/pause_circle:")
    if st.button("Resume training", icon=":material/play_arrow:", key=f"go-resume:{name}", type="primary",
                 help=f"Go on from its last checkpoint (step {t.step_count:,}), exactly as if it had not stopped."):
        try:
            data = load_data(t.config.data) if t.config is not None else None
            pool().requeue(owner(), name, data)
        except LabError as e:
            st.error(str(e))
        st.rerun()


def go_on(name: str, t):
    """A finished run of this session: train it further exactly, or branch it with another β or rate."""
    with st.expander("Go on from here"):
        room = max(10, limits.maximum("page_steps") - t.step_count)  # a run's steps in all stay within the limit
        more = st.number_input("More steps", 10, room, value=min(1000, room), step=100, key=f"go-more:{name}")
        b, lr = st.columns(2)
        beta = b.number_input("β", min_value=0.0, value=float(t.beta), format="%g", key=f"go-beta:{name}")
        rate = lr.number_input("learning rate", min_value=1e-6, max_value=1.0, value=float(t.lr), format="%g",
                               key=f"go-lr:{name}")
        further, branch = st.columns(2)
        try:
            if further.button("Train further", key=f"go-further:{name}", width="stretch",
                              help="The same run, on from its last step as if it had been asked for more steps "
                                   "at the start (its β and learning rate as they are)."):
                pool().extend(owner(), name, int(more))
                st.rerun()
            if branch.button("Branch", key=f"go-branch:{name}", width="stretch",
                             help="A new run from this step with the β and learning rate above; Compare draws "
                                  "it from the step where it leaves this one."):
                pool().branch(owner(), name, f"{name}-b{t.step_count}", int(more),
                              settings={"beta": float(beta)}, lr=float(rate))
                st.rerun()
        except LabError as e:
            st.error(str(e))


def controls(name: str, t):
    """Pause, resume, stop, save, and the live β and learning rate. A control the run can no longer take
    (its process ended meanwhile) says why on the page."""
    live = (RunState.RUNNING, RunState.PAUSED)
    buttons = [("Pause", ":material/pause:", "pause", t.state != RunState.RUNNING, "Pause"),
               ("Resume", ":material/play_arrow:", "resume", t.state != RunState.PAUSED, "Resume"),
               ("Stop", ":material/stop:", "stop", t.state not in live, "Stop for good"),
               ("Save", ":material/save:", "save", not t.step_count,
                "Write a checkpoint the other pages list as file: saved/...; only this session sees it. "
                "(Every run is also checkpointed as it trains, so it survives a restart.)")]
    if t.state not in live:  # nothing left to pause or stop: a finished, stopped or interrupted run
        buttons = buttons[-1:]
    try:
        for col, (label, icon, action, disabled, help) in zip(st.columns(4), buttons):
            if col.button(label, icon=icon, key=f"{action}-{name}", disabled=disabled, width="stretch", help=help):
                if action == "save":
                    title = f"{t.config.data.short_name}-{name}-z{t.latent_dim}"
                    t.save(saved_dir() / title)
                    st.toast(f"saved as file: saved/{title}; the other pages list it (only for you)")
                else:
                    getattr(t, action)()
        if t.state == RunState.RECORDED:
            go_on(name, t)
        if t.state not in live:
            return
        b, lr = st.columns(2)
        beta = b.number_input("β (live)", min_value=0.0, value=float(t.beta), format="%g", key=f"beta-{name}",
                              help="The weight on the KL term, changed while the run trains.")
        rate = lr.number_input("learning rate (live)", min_value=1e-6, max_value=1.0, format="%g", key=f"lr-{name}",
                               value=float(t.lr))
        if beta != t.beta:
            t.set_beta(beta)
        if rate != t.lr:
            t.set_lr(rate)
    except LabError as e:  # the run ended meanwhile, or the disk refused the save: say so, keep the page
        st.error(str(e))


@st.cache_data(show_spinner=False)
def per_dim_meaning(objective: str, _bundle) -> str:
    """What a model's per-dimension KL is (core.posterior), read off its posterior of one blank image; the
    same for every model of one objective, so found once per objective, not on every redraw."""
    bundle = _bundle
    y = torch.zeros(1, dtype=torch.long) if bundle.network.cfg.n_classes else None
    return bundle.posterior(torch.zeros(1, *bundle.network.cfg.image_shape), y).per_dim


def kept_steps(t) -> list[int]:
    """The steps of a run whose weights can be shown (its kept snapshots and its latest)."""
    return Source("", run=t).steps() if isinstance(t, PooledRun) else t.bundle.steps


def at_step(t, step: int | None, steps: list[int] | None = None):
    """The run's model at one of its kept steps (None or its latest: as it is now); `steps`: kept_steps(t),
    when the caller has read them already."""
    if step is None or step >= t.step_count:
        return t.snapshot()
    return load_checkpoint(t.path, snapshots.nearest(steps or kept_steps(t), step))


def neg_elbo(row: dict) -> float | None:
    """−ELBO of a history row, per image: what the objective reports as its ELBO, else recon + KL (the
    training loss differs where β ≠ 1 or the objective adds terms)."""
    if row.get("elbo") is not None:
        return -row["elbo"]
    if row.get("recon") is not None and row.get("kl") is not None:
        return row["recon"] + row["kl"]
    return None


def loss_metrics(row: dict | None, at: str) -> list[tuple[str, str, str]]:
    """(label, value, help) of −ELBO on the training batch, and of the training loss where the two differ."""
    elbo = neg_elbo(row) if row else None
    items = [(f"−ELBO{at}", f"{elbo:.1f}" if elbo is not None else "–",
              "−ELBO on the training batch, nats per image: the reconstruction cost plus the KL. Lower is better.")]
    if row and (elbo is None or abs(row["loss"] - elbo) > 0.05):
        items.append((f"training loss{at}", f"{row['loss']:.1f}",
                      "What the optimizer minimizes, on the training batch: the objective's loss (β · KL, free "
                      "bits, extra terms). A bound on −log p(x) only where it equals −ELBO."))
    return items


def metric_grid(items: list[tuple[str, str, str]], per_row: int):
    for start in range(0, len(items), per_row):
        for col, (label, value, help) in zip(st.columns(per_row), items[start:start + per_row]):
            col.metric(label, value, help=help)


def run_panel(name: str, t, race: bool, step: int | None = None, top: float | None = None):
    """One run: its state and controls, metrics, charts and pictures, at `step` (one of its kept steps;
    None: the latest). t follows the run protocol of core.control: a ProcessRun, or a RecordedRun read
    from a checkpoint (no controls). top: the top of the KL colour scale shared with the runs beside it."""
    rate = f" · {t.step_count * t.batch_size / t.seconds:,.0f} samples/s" if t.seconds else ""
    epoch = f" · epoch {t.epoch:.1f}" if t.epoch is not None else ""
    header = st.empty()  # the step it shows, once known
    header.markdown(f"**{name}** · step {t.step_count:,}{epoch}{rate} · {t.state}")
    if t.state in (RunState.QUEUED, RunState.STARTING, RunState.INTERRUPTED):
        waiting(name, t)
        if not t.history:
            return
    elif t.error:
        st.error(t.error)
    if isinstance(t, PooledRun) and t.state not in (RunState.QUEUED, RunState.STARTING) and t.config is not None:  # not a shipped one
        controls(name, t)
    history, live = list(t.history), list(t.live)
    if not history:
        st.caption("waiting for the first steps ...")
        return
    try:
        bundle = at_step(t, step)
    except LabError as e:  # the training process is gone: its state and error say why
        st.caption(f"no pictures: {e}")
        return
    marker = bundle.step if step is not None else None
    if marker is not None:
        header.markdown(f"**{name}** · showing step {bundle.step:,} of {t.step_count:,} · {t.state}")
    shown = [r for r in live if r["step"] <= bundle.step]
    last = shown[-1] if shown else {}
    at = f" at step {bundle.step:,}" if marker is not None else ""
    # step s's row, by its step: a saved history is thinned past step 1,000 (core.checkpoint.thin_history)
    row = history[-1] if marker is None else {r["step"]: r for r in history}.get(bundle.step)
    metric_grid(loss_metrics(row, at) + [
        ("active units", f"{last.get('au', '–')} / {t.latent_dim}", "Latent dimensions whose posterior mean varies "
         "with the image (Cov_x E_q[z] > 0.01), on held-out images."),
        ("MI (nats)", plots.mi_text(last) if last.get("mi") is not None else "–", plots.MI_HELP)], 2 if race else 4)
    # Charts whose spec stays put: a redraw while it trains, or a move of the Step slider, replaces their
    # data in place (dashboard/live_charts.py) rather than building them again.
    if not race:
        vega_spec_chart(*live_charts.loss_chart(history, marker))
    if live and t.state == RunState.RUNNING:
        # While it trains the colour scale's top grows, which would rebuild a chart at every redraw: a picture
        # instead, swapped in place (and a picture costs the browser a quarter of a heatmap, bench/redraw_cost.py).
        scale = top if top is not None else pictures.kl_top(live)
        st.image(pictures.kl_heatmap_image(live, top=top), width="stretch", output_format="PNG",
                 caption=f"KL per dimension, held-out: rows z0 (top) to z{t.latent_dim - 1}, steps {live[0]['step']:,} to "
                         f"{live[-1]['step']:,} left to right; dark 0, yellow {scale:.2f} nats"
                         f"{' (one scale for every run)' if top is not None else ''}; hover values once it stops")
    elif live:
        st.caption("KL per dimension on held-out images (nats): a row that turns dark is a dimension that collapsed"
                   + (" · one colour scale for every run" if top is not None else ""))
        vega_spec_chart(*live_charts.heatmap_chart(live, marker, top))
    if live:
        meaning = per_dim_meaning(bundle.config.objective, bundle)
        if meaning != Factorized.per_dim:
            st.caption(f"Per dimension: {meaning}.")
        vega_spec_chart(*live_charts.metrics_chart(live, marker, t.latent_dim))
        st.caption("Blue: active units (left). Red: the MI estimate (right), shaded ± 2 standard errors; dashed: "
                   "its ceiling log B.")
    gen = torch.Generator().manual_seed(0)
    data, spec = t.data, bundle.config.data
    # a PixelCNN draws each picture pixel by pixel: not at every redraw of a training run
    later = explore.slow_pictures(bundle.network) and t.state in (RunState.RUNNING, RunState.QUEUED)
    if later:
        st.caption("Reconstructions and samples appear when the run stops: a PixelCNN draws each picture pixel by "
                   "pixel, seconds a picture, which would hold up the page at every redraw.")
    elif data is not None:
        x, y = data.test_x[:8], data.test_y[:8]
        st.image(plots.image_grid(data.to_image(torch.cat([x, bundle.reconstruct(x, y)]))), width="stretch",
                 caption=f"test images and their reconstructions{at}")
    else:
        st.caption(f"No reconstructions: {getattr(t, 'data_error', None) or 'its dataset is not here'}")
    if not later:
        st.image(plots.image_grid(to_image(bundle.network.sample(16, generator=gen), spec, data)), width="stretch",
                 caption=f"samples from the prior{at}")
    title = f"{spec.short_name}-{name}-z{t.latent_dim}"
    if t.state in (RunState.RUNNING, RunState.PAUSED):
        export(title, bundle, data)  # slides once it stops: they read the steps it kept in its saved file
        return
    left, right = st.columns(2) if not race else (st.container(), st.container())  # three abreast: one above the other
    with left:
        export(title, t.snapshot() if marker is not None else bundle, data)
    with right:
        slides(name, t, bundle.step)


@st.cache_data(show_spinner=False, max_entries=8)
def slide_file(refs: tuple, view: str, suffix: str, title: str, _bundles, _data) -> bytes:
    """One view at the given versions of a run, as a GIF or MP4 (or the first as a PNG), once per version."""
    return timeline.encode(timeline.frames(view, _bundles, _data, title=title), suffix)


def slides(name: str, t, step: int):
    """A view of the run over its kept steps as an animation, or at the shown step as a picture: for a slide
    (the same frames as `vaelab animate`)."""
    data = t.data
    views = ["samples"] + (["reconstructions"] if data is not None else []) + (["heatmap"] if t.live else [])
    steps = kept_steps(t)
    with st.popover("For slides", icon=":material/slideshow:", width="stretch",
                    help="A view over the run's kept steps as a GIF or MP4, or at this step as a PNG, each frame "
                         "captioned with its step."):
        view = st.selectbox("View", views, key=f"slide-view-{name}")
        kinds = {".gif": f"GIF of all {len(steps)} kept steps", ".mp4": f"MP4 of all {len(steps)} kept steps",
                 ".png": f"PNG of step {step:,}"}
        suffix = st.radio("As", list(kinds), format_func=kinds.get, key=f"slide-kind-{name}")  # kept as the step moves
        shown = [step] if suffix == ".png" else steps

        def made() -> bytes:  # only when pressed: an MP4 of 18 steps takes seconds
            bundles = [at_step(t, s, steps) for s in shown]
            return slide_file(tuple(b.ref.key for b in bundles), view, suffix, name, bundles, data)
        at = f"step{step}" if suffix == ".png" else "run"
        st.download_button("Download", data=made, file_name=f"{name}-{view}-{at}{suffix}", icon=":material/download:",
                           key=f"slide-{name}", width="stretch")


def export(name: str, bundle, data):
    """The run as code (the command and a script that train it again) and to TensorBoard or MLflow."""
    with st.popover("Export", icon=":material/ios_share:", width="stretch",
                    help="This run as a command and a script a student can keep, and as TensorBoard or MLflow files to download."):
        st.markdown(f"**{name}**, its {bundle.step:,} steps again: the same seed, the same numbers on the CPU.")
        st.code(recipe.command(bundle), language="bash", wrap_lines=True)
        st.download_button("Download the script", recipe.script(bundle, name), file_name=f"{name}.py",
                           mime="text/x-python", icon=":material/download:", key=f"script-{name}-{bundle.step}")
        if data is None:
            st.caption("TensorBoard and MLflow files need its dataset (for the pictures), and it is not here.")
            return
        # Downloads, not a folder on the server: a shared server writes nothing where a user points it.
        views = {"tensorboard": ("TensorBoard", "unzip it, then `tensorboard --logdir tensorboard`"),
                 "mlflow": ("MLflow", "unzip it, then `mlflow ui --backend-store-uri sqlite:///mlflow/mlflow.db`"),
                 "wandb": ("W&B", "unzip it, then `wandb sync wandb/offline-run-*` (a Weights & Biases account)")}
        for column, (kind, (title, how)) in zip(st.columns(3), views.items()):
            column.download_button(f"{title} (.zip)", data=lambda kind=kind: tracking_zip(bundle.ref.key, kind, name,
                                                                                          bundle, data),
                                   file_name=f"{name}-{kind}.zip", mime="application/zip", icon=":material/download:",
                                   key=f"{kind}-{name}-{bundle.step}", width="stretch", help=f"The run for {title}: {how}.")


@st.cache_data(show_spinner="Writing the run's files ...", max_entries=4)
def tracking_zip(ref: tuple, kind: str, name: str, _bundle, _data) -> bytes:
    return track.archive(_bundle, _data, name, kind)


def kl_top(current: dict) -> float | None:
    """The top of one KL colour scale for runs shown side by side (None: one run, or each its own scale)."""
    if len(current) < 2 or not st.session_state.get("one-scale", True):
        return None
    return max(pictures.kl_top(t.live) for t in current.values())


def panels(current: dict):
    """Runs side by side, three to a row, under their overlaid loss curves when there are several. Once no
    run trains, one step slider takes every panel back to a kept step."""
    race = len(current) > 1
    step = None
    if not training(current):
        step = pick_step(sorted({s for t in current.values() for s in kept_steps(t)}), key="train-step")
    if race:
        histories = {n: list(t.history) for n, t in current.items()}
        if any(histories.values()):  # nothing to draw while every run waits for a core
            vega_spec_chart(*live_charts.race_chart(histories, marker=step))
        st.toggle("One KL colour scale for all runs", key=default("one-scale", True),
                  help="Side by side, the heatmaps share one scale so that their colours compare; off: each "
                       "run's own, to see the detail of a run whose KL is small.")
    top = kl_top(current)
    for row in range(0, len(current), 3):
        items = list(current.items())[row:row + 3]
        for col, (name, t) in zip(st.columns(min(3, len(current))), items):
            with col:
                run_panel(name, t, race, step, top)


# A run the page keeps redrawing: one that trains, waits, or is done and about to be saved (a done run
# becomes a recorded one once the pool has saved it; the page must redraw to show that).
LIVE = (RunState.RUNNING, RunState.PAUSED, RunState.QUEUED, RunState.STARTING, RunState.DONE)


def training(current: dict) -> bool:
    return any(t.state in LIVE for t in current.values())


def live_view(refreshing: bool):
    """This session's runs; redrawn every few seconds while one trains (refreshing), and once more, as a
    whole page, when the last one stops: a page that redraws itself with nothing to show costs the
    training of others, and a still page's step slider reruns only this part."""
    current = runs()
    if not current:
        return
    if refreshing and not training(current):
        st.rerun(scope="app")
    first = next(iter(current.values()))
    try:
        device = describe_device(pick_device(first.config.device), first.threads) if first.config else "?"
    except LabError:
        device = first.config.device
    st.caption(f"{first.config.data.short_name if first.config else '?'} · {device} · "
               f"updates every {st.session_state['refresh']} seconds · checkpointed in runs/ as they train")
    if first.data is not None and first.data.info.note:
        st.warning(first.data.info.note)
    panels(current)


def recorded_view(names: list[str], intro: str):
    """Shipped checkpoints shown as finished runs, from their sidecars: nothing to train or wait for."""
    found = {name: path for name in names if (path := shipped(name))}
    if not found:
        return
    try:
        current = {name: recorded_run(path) for name, path in found.items()}
    except LabError as e:  # a corrupt file: say so, keep the page
        st.error(f"Cannot show the recorded runs: {e}")
        return
    st.markdown(intro)
    first = next(iter(current.values()))
    if first.data is not None and first.data.info.note:
        st.warning(first.data.info.note)
    for name, t in current.items():
        if t.command:
            st.caption(f"**{name}**: `{t.command}`")
    st.fragment(panels)(current)  # the step slider reruns the panels, not the page


WATCH_NONE = "none"
WATCH_FRESH = 60  # seconds: a run folder written this recently is taken to be training, and the view refreshes
PICTURES_MOST = 8 * 2**20  # bytes of a run folder's pictures.png the page reads


def watch_picker():
    """The run folders of users' own loops (core.monitor) in the operator's watch roots; ?watch=NAME opens one."""
    folders = watched_folders()
    if not folders:
        return
    names = [WATCH_NONE, *folders]
    if st.session_state.get("watch") is None and st.query_params.get("watch") in folders:
        st.session_state["watch"] = st.query_params["watch"]
    if st.session_state.get("watch") not in names:
        st.session_state["watch"] = WATCH_NONE
    st.selectbox("Watch a run folder", names, key="watch",
                 help="A training loop of your own, with core.monitor's Monitor in it, writes its live rows into a "
                      "run folder (~/vaelab-runs/NAME unless told): pick it to watch it train.")


def watch_state(folder: Path) -> tuple[dict, str]:
    """(a watched run's sidecar, where it stands: training, finished or last written when); CheckpointError for
    a folder gone or malformed since it was listed."""
    meta = watched_sidecar(folder)
    age = time.time() - mtime(checkpoint.paths(folder / monitor.RUN)[1])
    return meta, ("finished" if meta.get("closed") else "training" if age < WATCH_FRESH else
                  f"last written {age / 60:,.0f} min ago")


def watch_view(name: str, folder: Path, refreshing: bool):
    """A user's own training loop, from the run folder its Monitor rewrites every few steps: the same live rows,
    charts and pictures as a run of this page, read from the files (redrawn while they change, and once more
    when the run stops). A sidecar that is not what a Monitor writes is one message, not a traceback."""
    st.query_params["watch"] = name
    try:
        meta, where = watch_state(folder)
        if refreshing and where != "training":
            st.rerun(scope="app")  # it stopped: the page drops its refresh
        watch_panel(name, folder, meta, where)
    except (LabError, OSError, TypeError, ValueError, KeyError, AttributeError) as e:
        st.error(f"Cannot show the run folder {name}: {type(e).__name__}: {e}")


def watch_panel(name: str, folder: Path, meta: dict, state: str):
    history, live = meta.get("history", []), meta.get("live", [])
    every = (meta.get("monitor") or {}).get("every", "?")
    dims = len(live[-1].get("kl_per_dim") or []) if live else 0
    if meta.get("stopped"):
        st.warning(f"The monitor stopped measuring: {meta['stopped']}. What it shows is the last good step.")
    st.markdown(f"**{name}** · step {meta.get('step') or 0:,} · {state} · measured every {every} steps on "
                f"{(meta.get('monitor') or {}).get('held_out', '?')} held-out examples")
    if not live:
        st.caption(f"Waiting for the first live row (at step {every}) ...")
        return
    last = live[-1]
    verdicts = next((r["verdicts"] for r in reversed(live) if r.get("verdicts")), {})  # every few rows
    metric_grid(loss_metrics(history[-1] if history else None, "") + [
        ("active units", f"{last.get('au', '–')} / {dims}", "Latent dimensions whose posterior mean varies with the "
         "example (Cov_x E_q[z] > 0.01), on the held-out examples."),
        ("MI (nats)", plots.mi_text(last) if last.get("mi") is not None else "–", plots.MI_HELP),
        ("active / unused / collapsed", " / ".join(str(n) for n in verdicts.values()) or "–", VERDICT_HELP)], 4)
    if history:
        vega_spec_chart(*live_charts.loss_chart(history))
    if state == "training":
        st.image(pictures.kl_heatmap_image(live), width="stretch", output_format="PNG",
                 caption=f"KL per dimension, held-out: rows z0 (top) to z{dims - 1}, steps {live[0]['step']:,} to "
                         f"{live[-1]['step']:,} left to right; dark 0, yellow {pictures.kl_top(live):.2f} nats")
    else:
        st.caption("KL per dimension on the held-out examples (nats): a row that turns dark is a dimension that collapsed")
        vega_spec_chart(*live_charts.heatmap_chart(live))
    vega_spec_chart(*live_charts.metrics_chart(live, None, dims))
    st.caption("Blue: active units (left). Red: the MI estimate (right), shaded ± 2 standard errors; dashed: its "
               "ceiling log B.")
    worded = next((r for r in reversed(live) if r.get("samples")), None)
    if worded is not None:  # data that are not images, shown as the loop's as_text writes them
        held = (meta.get("monitor") or {}).get("held_out_text") or []
        st.markdown(f"**At step {worded['step']:,}**")
        st.dataframe({"held-out example": held[:len(worded.get("reconstructions", []))],
                      "its reconstruction": worded.get("reconstructions", [])}, hide_index=True)
        st.caption("Drawn at fixed prior codes (a word changes where the model does): "
                   + " · ".join(f"`{str(w).replace('`', '')}`" for w in worded["samples"]))
    else:
        try:
            png = safefs.read_regular(folder / monitor.PICTURES, PICTURES_MOST)
            st.image(png, width="stretch", caption="rows: held-out examples, their reconstructions, and samples at "
                                                   "fixed prior codes (a picture changes where the model does)")
        except (LabError, OSError):
            st.caption("No pictures: the examples are not images (give the Monitor as_text= to see them as words), "
                       "or the model draws none (sample(z)).")
    if rebuildable(folder):
        left, right = st.columns(2)
        label = Kind.WATCH.label(name)
        if worded is None and left.button("Open in Explore", key="watch-explore", icon=":material/tune:"):
            st.switch_page("views/explore.py", query_params={"model": label})
        if right.button("Open in Compare", key="watch-compare", icon=":material/compare:"):
            st.switch_page("views/compare.py", query_params={"model": label})
    else:
        st.caption("To open it on the other pages, give the Monitor the factory that builds the model: "
                   "`Monitor(..., factory=\"my_model.py:build\")`.")


VERDICT_HELP = ("The collapse verdict: of the latent dimensions, how many are active (the encoder varies them and the "
                "decoder uses them), unused by the decoder, and collapsed (the posterior mean is the same for every "
                "example), from the lab's collapse report on the held-out examples (in every 5th row and the last).")

st.title("Train")
st.caption("Train a VAE and watch it learn. The loss is −ELBO; the KL heatmap shows, on held-out images, how much "
           "each latent dimension is used as training goes on: a row that fades to dark is a dimension collapsing "
           "onto the prior. Training runs in the background, so the other pages work meanwhile.")
chosen, to_start = setup()
watching = st.session_state.get("watch", WATCH_NONE)
if watching != WATCH_NONE and watching in (folders := watched_folders()):
    try:
        fresh = watch_state(folders[watching])[1] == "training"
    except (LabError, OSError):
        fresh = False  # the view says what is wrong
    if fresh:  # a finished or stale folder is drawn once
        st.select_slider("Refresh every (seconds)", [1, 2, 5, 10], key=default("refresh", 2))
    st.fragment(run_every=st.session_state.get("refresh", 2) if fresh else None)(watch_view)(
        watching, folders[watching], fresh)
    st.stop()
st.query_params.pop("watch", None)
lesson = st.session_state.get("lesson")
if lesson in LESSONS:
    st.info(f"**Lesson: {lesson}.** {LESSONS[lesson]['text']}")
    if LESSONS[lesson].get("sweep") and st.button("Open the sweep on the Sweeps page", key="lesson-sweep"):
        st.switch_page("views/sweeps.py", query_params={"sweep": LESSONS[lesson]["sweep"]})
    if LESSONS[lesson].get("map") and st.button("Play the run on the Latent map", key="lesson-map",
                                                icon=":material/play_circle:"):
        st.switch_page("views/latent_map.py", query_params={"model": Kind.FILE.label(LESSONS[lesson]["map"])})
if to_start:
    start(*to_start)
if not runs():
    for name in chosen:
        cls = OBJECTIVES.get(name)
        st.latex(cls.equation)
        st.caption(f"**{name}**: {cls.paper}")
    if lesson in LESSONS:
        recorded_view(LESSONS[lesson]["shipped"], "#### Recorded runs\nThe lesson's models as shipped, trained "
                      "for longer with the commands below. Press **Train** in the sidebar to run it live.")
    else:
        st.info("Pick a dataset and one or more objectives in the sidebar, then press **Train**.")
        recorded_view(["mnist-vae"], "#### A shipped model\nA VAE trained on MNIST, as it learned: its losses, how "
                      "much each latent dimension is used, and its pictures. Pick a lesson in the sidebar, or "
                      "press **Train** to train your own.")
else:
    # Each redraw costs the browser and the server CPU that training would use: slower refresh, faster runs.
    st.select_slider("Refresh every (seconds)", [1, 2, 5, 10], key=default("refresh", 2),
                     help="How often the charts redraw while training. Redrawing takes CPU from training, most "
                          "on a machine with few cores.")
    refreshing = training(runs())
    st.fragment(run_every=st.session_state["refresh"] if refreshing else None)(live_view)(refreshing)
