"""VAE Lab: train VAEs live, explore their latent space, diagnose posterior collapse.
Run with `./lab` or `vaelab` (the package installed: pip install -e .)."""
import hashlib
import hmac
import time

import streamlit as st
import torch

from core import settings
from core.errors import LabError
from dashboard.state import PRESENT, keep_widget_values, owner, pool, preload

HEARTBEAT = 20  # seconds between a page's "still here"; the pool saves and ends the runs of a session gone quiet


def heartbeat():
    pool().touch(owner())


def signed_in() -> bool:
    """With $VAELAB_PASSWORD set, a browser session sees nothing (not even its own token) until it gives the
    password: a server on a class's network, not the whole network's."""
    password = settings.get().password
    if not password or st.session_state.get("signed-in"):
        return True
    st.title("VAE Lab")
    typed = st.text_input("Password", type="password", max_chars=256, key="password",
                          help="The person who runs this server set one; ask them.")
    if typed and hmac.compare_digest(hashlib.sha256(typed.encode()).digest(), hashlib.sha256(password.encode()).digest()):
        st.session_state["signed-in"] = True
        st.session_state.pop("password", None)
        st.rerun()
    if typed:
        time.sleep(1)  # one guess a second per session
        st.error("That is not this server's password.")
    return False


# Presentation mode, for a projector: larger type everywhere, the sidebar out of the way, and widgets and
# metrics that keep their whole labels (a metric's label wraps rather than ending in "...").
PRESENTATION_CSS = """<style>
html { font-size: 22px; }
h1 { font-size: 2.6rem !important; }
[data-testid='stMarkdownContainer'] p, [data-testid='stMarkdownContainer'] li, label p { font-size: 1.1rem !important; }
[data-testid='stMetricLabel'] p, [data-testid='stMetricLabel'] div { white-space: normal !important; overflow: visible !important;
  text-overflow: clip !important; }
[data-testid='stMetricValue'] div { overflow: visible !important; text-overflow: clip !important; }
[data-testid='stCaptionContainer'] { font-size: 0.95rem !important; }
[data-testid='stMainBlockContainer'] { padding-left: 2rem; padding-right: 2rem; max-width: 100%; }
</style>"""

# Nothing fades while the page or a part of it reruns: Streamlit marks what is being redrawn stale and
# draws it faded, which on a projector reads as a flash every time a slider moves or the live panel
# refreshes. The running man at the top right still says that the page is working.
NO_FADE_CSS = """<style>
[data-stale='true'] { opacity: 1 !important; transition: none !important; }
</style>"""


def to_train():
    """/train opens the Train page, which lives at the root (as the default page, it reserves /home)."""
    st.switch_page("views/train.py", query_params=st.query_params.to_dict())


def main():
    # Training runs in child processes with their own threads. The pages only decode a few images, and one
    # thread does that without waking (and spinning) a pool that would compete with training for the cores.
    torch.set_num_threads(1)
    present = st.query_params.get("present") == "1"
    # A favicon of our own: a page's material icon as favicon would be fetched from a font server.
    st.set_page_config(page_title="VAE Lab", page_icon="🧪", layout="wide",
                       initial_sidebar_state="collapsed" if present else "auto")
    try:
        settings.get()  # the operator's settings, read once here: a value that cannot be read is one line
    except LabError as e:
        st.error(f"This server's settings: {e}")
        return
    if not signed_in():
        return
    keep_widget_values()
    owner()  # this session's token, in the URL, before any page reads its runs
    st.fragment(run_every=HEARTBEAT)(heartbeat)()
    pages = [
        st.Page("views/train.py", title="Train", icon=":material/model_training:", url_path="home", default=True),
        st.Page("views/explore.py", title="Explore", icon=":material/tune:", url_path="explore"),
        st.Page("views/latent_map.py", title="Latent map", icon=":material/scatter_plot:", url_path="map"),
        st.Page("views/compare.py", title="Compare", icon=":material/compare_arrows:", url_path="compare"),
        st.Page("views/sweeps.py", title="Sweeps", icon=":material/grid_on:", url_path="sweeps"),
        st.Page("views/gallery.py", title="Gallery", icon=":material/photo_library:", url_path="gallery"),
        st.Page(to_train, title="Train", url_path="train", visibility="hidden"),
    ]
    page = st.navigation(pages)
    with st.sidebar:
        present = st.toggle("Presentation mode", value=present, key=PRESENT,
                            help="For a projector: large type in the text and the charts, larger pictures, the "
                                 "sidebar folded away (open it with the arrow at the top left). The link keeps it "
                                 "(?present=1).")
    if present:
        st.query_params["present"] = "1"
        st.html(PRESENTATION_CSS)
    else:
        st.query_params.pop("present", None)
    st.html(NO_FADE_CSS)
    try:
        page.run()
    finally:
        preload()  # after the page (its own imports come first), and after a page that stops early too


# Streamlit runs this script as __main__. A training child process started by multiprocessing's spawn (where
# there is no fork server) imports it too, as __mp_main__, because it is the parent's main module: it must
# not build the app or take its one thread.
if __name__ == "__main__":
    main()
