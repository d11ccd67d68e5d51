"""VAE Lab: train a VAE live and watch it learn. Run with `./lab` (or `streamlit run dashboard/app.py`)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import streamlit as st  # noqa: E402
import torch  # noqa: E402

from core import data as datasets  # noqa: E402
from core.engine import RunConfig, Trainer, describe_device  # noqa: E402
from core.errors import LabError  # noqa: E402
from core.models import ModelConfig  # noqa: E402
from core.objectives import OBJECTIVES  # noqa: E402
from dashboard import plots  # noqa: E402

st.set_page_config(page_title="VAE Lab", layout="wide")


@st.cache_resource(show_spinner="Loading dataset ...")
def load_data(name: str):
    return datasets.load(datasets.DataSpec(name))


def knob_widget(name, knob, key):
    if knob.choices:
        return st.selectbox(name, knob.choices, index=knob.choices.index(knob.default), help=knob.help, key=key)
    if isinstance(knob.default, int):
        return st.number_input(name, value=knob.default, min_value=int(knob.min or 0), step=1, help=knob.help, key=key)
    return st.number_input(name, value=float(knob.default), min_value=knob.min, max_value=knob.max,
                           help=knob.help, key=key, format="%g")


with st.sidebar:
    st.header("Set up a run")
    dataset = st.selectbox("Dataset", ["digits", "mnist", "fashion-mnist"], help="digits ships with scikit-learn "
                           "and works offline; MNIST falls back to a 5,000-digit subset with no network.")
    objective = st.selectbox("Objective", OBJECTIVES.names(), index=OBJECTIVES.names().index("vae"))
    cls = OBJECTIVES.get(objective)
    settings = {n: knob_widget(n, k, f"knob-{objective}-{n}") for n, k in cls.knobs.items()}
    latent = st.slider("Latent size", 2, 32, 8)
    steps = st.number_input("Steps", 100, 100_000, 2000, step=100)
    lr = st.number_input("Learning rate", 1e-5, 1e-1, 1e-3, format="%g")
    seed = st.number_input("Seed", 0, 10_000, 0)
    start = st.button("Train", type="primary", width="stretch")

st.title("VAE Lab")
st.latex(cls.equation)
st.caption(f"**{objective}**: {cls.paper}")

if start:
    old = st.session_state.get("trainer")
    if old is not None:
        old.stop()
    try:
        data = load_data(dataset)
        config = RunConfig(data=datasets.DataSpec(dataset), objective=objective, settings=settings,
                           model=ModelConfig(hidden=(256, 128), latent_dim=latent), lr=lr, seed=int(seed))
        trainer = Trainer(config, data)
        trainer.start(steps=int(steps))
        st.session_state.trainer = trainer
    except LabError as e:
        st.error(str(e))

trainer = st.session_state.get("trainer")
if trainer is None:
    st.info("Pick a dataset and an objective in the sidebar, then press **Train**. "
            "Training runs in the background; the charts update live.")
    st.stop()

if trainer.data.info.note:
    st.warning(trainer.data.info.note)

@st.fragment(run_every=1.0)
def live_view(trainer: Trainer):
    # The controls live in the fragment so their enabled state follows the run as it changes.
    c1, c2, c3, c4 = st.columns(4)
    if c1.button("Pause", disabled=trainer.state != "running"):
        trainer.pause()
    if c2.button("Resume", disabled=trainer.state != "paused"):
        trainer.resume()
    if c3.button("Stop", disabled=trainer.state not in ("running", "paused")):
        trainer.stop()
    new_beta = c4.number_input("β (live)", min_value=0.0, value=float(trainer.objective.beta), format="%g")
    if new_beta != trainer.objective.beta:
        trainer.set_beta(new_beta)
    history = list(trainer.history)
    st.markdown(f"**{trainer.config.objective}** on **{trainer.data.info.name}** · "
                f"{describe_device(trainer.device)} · step {trainer.step_count:,} · "
                f"epoch {trainer.epoch:.1f} · {trainer.state}")
    if trainer.error:
        st.error(trainer.error)
    if not history:
        st.caption("waiting for the first steps ...")
        return
    left, right = st.columns([3, 2])
    left.plotly_chart(plots.loss_curves(history), width="stretch")
    title = "KL per dimension" if trainer.objective.exact_kl_per_dim else "KL of the base posterior q₀ per dimension"
    right.plotly_chart(plots.kl_per_dim_bars(history[-1]["kl_per_dim"], title=title), width="stretch")
    model = trainer.snapshot()
    x, y = trainer.data.test_x[:16], trainer.data.test_y[:16]
    gen = torch.Generator().manual_seed(0)
    a, b = st.columns(2)
    a.image(plots.image_grid(trainer.data.to_image(torch.cat([x, model.reconstruct(x, y)]))), caption="test images (top), reconstructions",
            width="stretch")
    b.image(plots.image_grid(trainer.data.to_image(model.sample(32, generator=gen))), caption="samples from the prior",
            width="stretch")


live_view(trainer)
