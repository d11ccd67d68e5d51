"""Gallery: every checkpoint on disk, grouped by what it teaches, with a thumbnail and a line on what it
shows, opened in any page with one click."""
import streamlit as st

from core import explore, monitor, safefs
from core.errors import LabError
from core.objectives import OBJECTIVES
from dashboard import plots
from dashboard.lessons import LESSONS
from dashboard.state import (Kind, checkpoint_files, file_label, load_checkpoint, parse_label, rebuildable, to_image,
                             try_data, watched_folders, watched_sidecar)

# page: (the button's label, short enough for three cards a row, and where it goes)
PAGES = {"Explore": ("Explore", "views/explore.py"), "Latent map": ("Map", "views/latent_map.py"),
         "Compare": ("Compare", "views/compare.py")}

# The objectives' families, in the order the lessons teach them: a checkpoint joins its objective's group.
GROUPS = {
    "The plain VAE": ("vae",),
    "Posterior collapse and its fixes": ("beta-vae", "kl-annealing", "free-bits"),
    "Tighter bounds, richer posteriors": ("iwae", "vlae", "sa-vae", "householder", "iaf"),
    "Discrete latents": ("discrete-is", "reinforce-loo", "gumbel-softmax"),
    "Other objectives": ("dvae", "cvae", "mmd-vae", "mu-vae"),
}
OTHER, SAVED = "Other objectives", "Saved from the Train page"
ABOUT = {
    "The plain VAE": "Kingma & Welling's ELBO on each dataset: the reference the others are measured against.",
    "Posterior collapse and its fixes": "A heavier KL (β > 1) pushes dimensions onto the prior, where they carry "
                                        "nothing; KL annealing and free bits try to keep them open.",
    "Tighter bounds, richer posteriors": "More samples per image (IWAE), or a posterior q(z|x) that is not a "
                                         "diagonal Gaussian.",
    "Discrete latents": "Codes made of bits or one category, and three ways to train through a discrete choice.",
    "Other objectives": "Other trades between reconstruction and the code: denoising, a label, MMD, the μ-VAE.",
    SAVED: "The runs you saved.",
}

# What each shipped checkpoint shows, with the objective it was trained with (a file of the same name trained
# otherwise gets the rule's line instead). Numbers: checkpoints/README.md.
SHIPPED = {
    "mnist-vae": ("vae", "The plain VAE: all 16 dimensions carry information."),
    "mnist-vae-z2": ("vae", "A 2-D code: the latent map is the code itself, digits laid out on a plane."),
    "fashion-vae": ("vae", "The same VAE on Fashion-MNIST's clothes."),
    "frey-vae-z2": ("vae", "One face in a 2-D code, as in Kingma & Welling: walk the plane in Explore."),
    "mnist-beta4": ("beta-vae", "β = 4: the KL weighs four times; 14 of 16 dimensions stay active."),
    "mnist-beta8": ("beta-vae", "β = 8: a quarter of the dimensions collapse onto the prior."),
    "mnist-kl-annealing-beta8": ("kl-annealing", "β rises from 0 to 8: every dimension opens, then five close "
                                                 "again; its kept steps replay it."),
    "mnist-free-bits-beta8": ("free-bits", "β = 8 with free bits: all 16 dimensions stay active."),
    "mnist-iwae": ("iwae", "Trained on the IWAE bound with k = 5: a tighter bound than the VAE's."),
    "mnist-vlae": ("vlae", "A full-covariance Gaussian posterior found by Newton steps (Laplace) for each image."),
    "mnist-sa-vae": ("sa-vae", "The encoder's guess refined by gradient steps on each image."),
    "mnist-hf": ("householder", "Householder reflections give the posterior a full covariance."),
    "mnist-iaf": ("iaf", "An inverse autoregressive flow: a non-Gaussian posterior."),
    "mnist-bernoulli": ("discrete-is", "16 on/off bits: flip one in Explore and the digit changes."),
    "mnist-categorical": ("discrete-is", "One of 16 categories for the whole code."),
    "mnist-reinforce-loo": ("reinforce-loo", "16 bits trained by REINFORCE with a leave-one-out baseline."),
    "mnist-gumbel-softmax": ("gumbel-softmax", "16 bits trained through the Gumbel-softmax relaxation."),
    "mnist-dvae": ("dvae", "Denoising: noisy images in, clean reconstructions out."),
    "mnist-cvae": ("cvae", "Conditional: the decoder is given the label, so the code keeps the style."),
    "mnist-mmd": ("mmd-vae", "MMD-VAE: the codes as a whole matched to the prior, instead of a KL per image."),
    "mnist-mu-vae-1": ("mu-vae", "μ-VAE, clip 3: a penalty on the batch's means instead of the KL; the classes "
                                 "sit further apart."),
    "mnist-mu-vae-2": ("mu-vae", "μ-VAE, clip 6: a wider ball, and a much looser bound."),
    "mnist-mu-vae-z2": ("mu-vae", "μ-VAE in a 2-D code: set its map beside mnist-vae-z2's."),
    "fashion-mu-vae": ("mu-vae", "μ-VAE on Fashion-MNIST: set it beside fashion-vae."),
}


def group_of(name: str, objective: str) -> str:
    if name.startswith("saved/"):
        return SAVED
    return next((group for group, members in GROUPS.items() if objective in members), OTHER)


def description(name: str, objective: str) -> str:
    """The shipped line for a shipped file, else the paper the objective comes from."""
    shipped = SHIPPED.get(name)
    if shipped and shipped[0] == objective:
        return shipped[1]
    paper = OBJECTIVES.get(objective).paper if objective in OBJECTIVES else ""
    return f"{objective}, after {paper}." if paper else f"Trained with {objective}."


def lessons_of(name: str) -> list[str]:
    return [title for title, lesson in LESSONS.items() if name in lesson.get("shipped", []) or name == lesson.get("map")]


@st.cache_data(show_spinner=False, max_entries=256)
def thumbnail(ref: tuple, path: str):
    """Prior samples need only the decoder: the dataset only for a mean-normalized model's pixels."""
    bundle = load_checkpoint(path)
    spec = bundle.config.data
    data = try_data(spec)[0] if spec.normalize != "none" else None
    return plots.image_grid(to_image(explore.prior_samples(bundle.network, 16), spec, data), nrow=8)


def card(path, name: str, label: str, bundle):
    st.markdown(f"**{name.removeprefix('saved/')}**")
    lessons = lessons_of(name)
    st.caption(description(name, bundle.config.objective)
               + (f" In the lesson{'s' if len(lessons) > 1 else ''}: " + ", ".join(f"*{t}*" for t in lessons) + "."
                  if lessons else ""))
    st.image(thumbnail(bundle.ref.key, str(path)), width="stretch")
    st.caption(f"{bundle.config.objective} on {bundle.config.data.short_name} · z={bundle.latent_dim} · "
               f"step {bundle.step:,}")
    missing = try_data(bundle.config.data)[1]
    if missing:
        st.caption(f"Its dataset ({bundle.config.data.short_name}) is not here: prior samples and sliders work; "
                   "the latent map, reconstructions and diagnostics need it.", help=missing)
    # buttons as wide as their labels, in a row that wraps onto a second line rather than cut a label short
    with st.container(horizontal=True):
        for page, (text, script) in PAGES.items():
            if st.button(text, key=f"open-{page}-{label}", help=f"Open it in {page}"):
                params = {"model": label} if page != "Compare" else {"compare": [label]}
                st.switch_page(script, query_params=params)


def loop_card(name: str, folder):
    """A run folder of a user's own loop (core.monitor): its pictures as its loop last drew them (or its words),
    where it stands, and the pages that open it."""
    meta = watched_sidecar(folder)
    live = [r for r in meta.get("live") or [] if isinstance(r, dict)]
    st.markdown(f"**{name}**")
    try:
        st.image(safefs.read_regular(folder / monitor.PICTURES, 8 * 2**20), width="stretch")
    except (LabError, OSError):
        words = next((r.get("samples") for r in reversed(live) if r.get("samples")), None)
        st.caption("Drawn at fixed codes: " + " · ".join(str(w).replace("`", "") for w in words) if words else
                   "No pictures: its examples are not images.")
    last = live[-1] if live else {}
    st.caption(f"your loop · step {meta.get('step') or 0:,} · AU {last.get('au', '–')} · "
               f"{'finished' if meta.get('closed') else 'watch it on the Train page'}")
    label = Kind.WATCH.label(name)
    with st.container(horizontal=True):
        if st.button("Watch", key=f"watch-{name}", help="Follow it on the Train page"):
            st.switch_page("views/train.py", query_params={"watch": name})
        for page, (text, script) in PAGES.items():
            if (page == "Compare" or folder_has_pictures(folder)) and st.button(text, key=f"open-{page}-{label}",
                                                                                help=f"Open it in {page}"):
                st.switch_page(script, query_params={"model": label} if page != "Compare" else {"compare": [label]})


def folder_has_pictures(folder) -> bool:
    return (folder / monitor.PICTURES).exists()


def own_loops():
    """The run folders of users' own loops that the operator's watch roots hold, and that name their model."""
    found = {name: folder for name, folder in watched_folders().items() if rebuildable(folder)}
    if not found:
        return
    st.subheader("Your own training loops")
    st.caption("Run folders that core.monitor writes from a loop of yours (~/vaelab-runs): watched on the Train "
               "page, opened on the others.")
    items = list(found.items())
    for row in range(0, len(items), 3):
        for col, (name, folder) in zip(st.columns(3), items[row:row + 3]):
            with col.container(border=True):
                try:
                    loop_card(name, folder)
                except (LabError, OSError, TypeError, ValueError, AttributeError) as e:
                    st.error(f"{name}: {e}")


st.title("Gallery")
st.caption("The shipped models and the runs you saved from the Train page, grouped by what they show. "
           "The thumbnails are samples from each model's prior.")
files = checkpoint_files()
own_loops()
if not files:
    st.info("No checkpoints yet. Press **Save** on a run in the Train page, or train one from the command line: "
            "`./lab core train --dataset mnist --epochs 5`.")
    st.stop()
groups: dict[str, list] = {group: [] for group in [*GROUPS, SAVED]}
for path in files:
    label = file_label(path)
    name = parse_label(label)[1]
    try:
        bundle = load_checkpoint(path)
    except LabError as e:  # a file that cannot be read is shown as its message, where it was found
        st.error(f"{name}: {e}")
        continue
    groups[group_of(name, bundle.config.objective)].append((path, name, label, bundle))
ORDER = list(SHIPPED)
for group, cards in groups.items():
    if not cards:
        continue
    cards.sort(key=lambda c: (ORDER.index(c[1]) if c[1] in ORDER else len(ORDER), c[1]))  # the table's order first
    st.subheader(group)
    st.caption(ABOUT[group])
    for row in range(0, len(cards), 3):
        for col, (path, name, label, bundle) in zip(st.columns(3), cards[row:row + 3]):
            with col.container(border=True):
                card(path, name, label, bundle)
