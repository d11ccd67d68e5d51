"""Live demos: what a speaker in front of a room needs from the dashboard, in a real browser (Debian's
chromium, headless, Playwright) against a real `streamlit run`. Screenshots go to $VAELAB_SCREENSHOTS
(or the test's temporary folder)."""
import os
import re
import shutil
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from interaction import FADED, WATCH, settled_ms

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)")]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGES = {"": "Train", "explore": "Explore", "map": "Latent map", "compare": "Compare and diagnose",
         "sweeps": "Sweeps", "gallery": "Gallery"}
THREE_RUNS = "Fix it with KL annealing or free bits"  # a lesson with three shipped runs side by side


@pytest.fixture
def shipped_server(tmp_path):
    """A real `streamlit run` over the shipped checkpoints (read, never written: nothing here presses
    Save), with its live runs in a temporary folder; yields its base URL."""
    from sessions import serve
    with serve({"VAELAB_RUNS": str(tmp_path / "runs")}, log=tmp_path / "server.log") as (url, _):
        yield url


@pytest.fixture
def browser(tmp_path):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        contexts = []

        def open_context(width=1400, height=1000):
            context = p.chromium.launch_persistent_context(str(tmp_path / f"profile-{len(contexts)}"),
                                                           executable_path=CHROMIUM, args=FLAGS, headless=True,
                                                           viewport={"width": width, "height": height})
            context.add_init_script(WATCH)
            contexts.append(context)
            return context
        yield open_context
        for context in contexts:
            context.close()


def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("VAELAB_SCREENSHOTS", tmp_path / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def titled(title: str) -> str:
    return f"[...document.querySelectorAll('h1')].some(h => h.innerText.trim() === {title!r})"


def visit(page, url: str, title: str):
    page.goto(url)
    settled_ms(page, 0, titled(title), timeout_s=180)


def test_every_request_of_every_page_goes_to_the_server_itself(shipped_server, browser):
    """Offline, in a classroom without internet, nothing may be fetched from elsewhere: the navigation's
    icons and the favicon once came from a font server, one request per page."""
    server = urlsplit(shipped_server).netloc
    elsewhere = []
    context = browser()
    context.on("request", lambda r: urlsplit(r.url).scheme in ("http", "https", "ws", "wss")
               and urlsplit(r.url).netloc != server and elsewhere.append(r.url))
    page = context.new_page()
    for path, title in PAGES.items():
        visit(page, f"{shipped_server}/{path}", title)
    visit(page, f"{shipped_server}/?present=1", "Train")
    assert page.locator("[data-testid='stException']").count() == 0
    assert not elsewhere, f"requests to other hosts: {elsewhere[:5]}"


def test_the_train_path_opens_the_train_page(streamlit_server, browser):
    """/train is the Train page's own name (its link and the other pages' say so): it must not open a
    "Page not found" dialog."""
    page = browser().new_page()
    visit(page, f"{streamlit_server}/train?present=1", "Train")
    assert page.get_by_text("Page not found").count() == 0
    assert "present=1" in page.url  # the link's settings survive the way to the root


# Text cut short: an element that hides what does not fit and holds more than it shows.
TRUNCATED = """() => [...document.querySelectorAll("[data-testid='stMain'] *")].filter(e => {
  const r = e.getBoundingClientRect(), text = (e.innerText || "").trim();
  if (!r.width || !r.height || !text || text.length > 200) return false;
  if (e.closest(".katex") || e.querySelector("img, canvas, svg, iframe, table, input, textarea, pre, code")) return false;
  const s = getComputedStyle(e);
  const hides = s.textOverflow === "ellipsis" || s.overflowX === "hidden" || s.overflowX === "clip";
  return hides && e.scrollWidth > e.clientWidth + 1;
}).map(e => e.innerText.trim().slice(0, 60))"""

FOLDED = """() => { const s = document.querySelector("[data-testid='stSidebar']");
  return !s || s.getBoundingClientRect().right <= 1 || s.getBoundingClientRect().width <= 1; }"""
# The page scrolls inside Streamlit's main container, not the window.
SCROLL = """by => { const m = document.querySelector("[data-testid='stMain']");
  (m.scrollHeight > m.clientHeight ? m : document.scrollingElement).scrollBy(0, by); }"""

PLOT_FONT = """() => Math.min(...[...document.querySelectorAll('.js-plotly-plot .xtick text')]
  .map(t => parseFloat(getComputedStyle(t).fontSize)))"""


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080)], ids=["1280x720", "1920x1080"])
def test_presentation_mode_reads_from_the_back_of_the_room(shipped_server, browser, tmp_path, size):
    """At projector sizes, with three runs side by side: the sidebar folded away, chart text as large as
    the page's, and no label or value cut short on any page."""
    width, height = size
    page = browser(width, height).new_page()
    out = shots(tmp_path)
    views = {f"?present=1&lesson={quote(THREE_RUNS)}": "Train", "explore?present=1": "Explore",
             "compare?present=1": "Compare and diagnose", "gallery?present=1": "Gallery"}
    for path, title in views.items():
        visit(page, f"{shipped_server}/{path}", title)
        name = title.split()[0].lower()
        for part in range(3):  # the top of the page, and two screens further down
            page.screenshot(path=str(out / f"present-{name}-{width}x{height}-{part}.png"))
            page.evaluate(SCROLL, height - 100)
            page.wait_for_timeout(300)
        assert page.locator("[data-testid='stException']").count() == 0
        assert page.evaluate(FOLDED), f"{name}: the sidebar takes room from the page"
        cut = page.evaluate(TRUNCATED)
        assert not cut, f"{name} at {width}x{height}: cut short: {cut}"
        if page.locator(".js-plotly-plot .xtick text").count():
            assert page.evaluate(PLOT_FONT) >= 18, f"{name}: chart tick labels too small to read"


def test_the_live_panel_never_fades_while_a_run_trains(streamlit_server, browser):
    """The live panel redraws every second while a run trains; sampled every 100 ms, no element of the
    page is ever drawn faded (Streamlit's stale-element fade read as a flash on a projector)."""
    page = browser().new_page()
    visit(page, streamlit_server, "Train")
    field = page.get_by_role("spinbutton", name="Steps")
    field.fill("100000")
    field.press("Enter")
    page.wait_for_timeout(800)
    page.get_by_role("button", name="Train").click()
    page.get_by_text(re.compile(r"samples/s · running")).first.wait_for(timeout=120_000)
    knob = page.get_by_role("slider", name="Refresh every (seconds)")
    knob.focus()
    page.keyboard.press("ArrowLeft")  # 2 s -> 1 s: the most redraws
    page.get_by_text("updates every 1 seconds").wait_for(timeout=30_000)
    faded = 0
    for _ in range(100):
        faded += page.evaluate(FADED)
        page.wait_for_timeout(100)
    assert page.locator("[data-testid='stImage']").count() >= 2  # it was drawing all along
    page.get_by_role("button", name="Stop").first.click()
    assert faded == 0, f"{faded} of 100 samples had a faded element"
