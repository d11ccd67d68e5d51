"""The dashboard in a real browser: Debian's chromium, headless, driven by Playwright, against a real
`streamlit run`. Screenshots of every page go to $VAELAB_SCREENSHOTS (or the test's temporary folder)."""
import os
import re
import time
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.slow,  # a real server and a real browser in every test
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)")]

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def page(tmp_path):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM,
                                                       args=FLAGS, headless=True, viewport={"width": 1400, "height": 1000})
        yield context.new_page()
        context.close()


def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("VAELAB_SCREENSHOTS", tmp_path / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def settle(page):
    """Wait until Streamlit has finished the current rerun."""
    page.wait_for_timeout(300)
    page.wait_for_selector("[data-testid='stStatusWidget']", state="detached", timeout=60_000)


def test_the_real_server_runs_the_app_script(streamlit_server, page):
    """What only this app serves, not Streamlit's own index.html: the server's health endpoint answers, and
    the page a browser gets is what dashboard/app.py builds (its title, its pages in the sidebar, the Train
    page's prompt), with no exception box."""
    import urllib.request
    with urllib.request.urlopen(f"{streamlit_server}/_stcore/health", timeout=5) as r:
        assert r.read() == b"ok"
    page.goto(streamlit_server)
    page.get_by_text("then press Train").wait_for(timeout=60_000)
    settle(page)
    assert "VAE Lab" in page.title()
    nav = page.locator("[data-testid='stSidebarNav']")
    assert [nav.get_by_role("link", name=name, exact=True).count()
            for name in ("Train", "Explore", "Latent map", "Compare", "Sweeps", "Gallery")] == [1] * 6
    assert page.locator("[data-testid='stException']").count() == 0


def test_train_then_drag_a_slider_in_a_real_browser(streamlit_server, page, tmp_path):
    out = shots(tmp_path)
    page.goto(streamlit_server)
    page.get_by_text("then press Train").wait_for(timeout=60_000)
    page.screenshot(path=out / "train-empty.png", full_page=True)

    steps = page.get_by_role("spinbutton", name="Steps")
    steps.fill("300")
    steps.press("Enter")
    settle(page)
    page.get_by_role("button", name="Train").click()
    page.get_by_text("step 300").first.wait_for(timeout=120_000)
    page.wait_for_timeout(1500)  # one more refresh of the live view with the last live row
    page.screenshot(path=out / "train-done.png", full_page=True)

    page.get_by_role("link", name="Explore").click()  # in-app navigation keeps this session's runs
    page.get_by_text("Hide inactive dimensions").wait_for(timeout=60_000)
    settle(page)
    # The picture follows the drag while the mouse is still down: the browser decodes each move itself.
    canvas = page.locator("canvas[data-frames]").first
    slider = page.locator("input[data-dim='0']")
    box = slider.bounding_box()
    low, high = float(slider.get_attribute("min")), float(slider.get_attribute("max"))
    x, y = box["x"] + box["width"] * (0 - low) / (high - low), box["y"] + box["height"] / 2
    frames = lambda: canvas.evaluate("el => Number(el.dataset.frames)")  # noqa: E731
    before, link = frames(), page.url
    page.mouse.move(x, y)
    page.mouse.down()
    for i in range(1, 21):  # to the right, within the slider
        page.mouse.move(x + (box["x"] + box["width"] - x) * 0.8 * i / 20, y)
        page.wait_for_timeout(20)
    during = frames() - before
    assert during >= 10, f"{during} pictures while dragging 20 moves"
    assert page.url == link  # nothing went to the server yet
    page.mouse.up()
    page.wait_for_function("old => location.href !== old", arg=link, timeout=30_000)  # the release's code: ?z=
    settle(page)
    # What the browser drew is the server's decode of the code it shows, to the pixel.
    from core import checkpoint, explore
    import json as _json
    import numpy as np
    code = _json.loads(canvas.evaluate("el => el.dataset.code"))
    assert code[0] > 0.5 and page.url.split("z=")[1].split("%2C")[0] == f"{code[0]:.2f}"
    pixels = np.array(canvas.evaluate("el => Array.from(el.getContext('2d').getImageData(0, 0, el.width, el.height).data)"))
    token = page.url.split("session=")[1].split("&")[0]
    network = checkpoint.load(tmp_path / "runs" / token / "vae").network
    want = (explore.decode(network, code)[0, 0].clamp(0, 1).numpy() * 255).round()
    assert np.abs(pixels.reshape(*want.shape, 4)[..., 0] - want).max() <= 1
    # The keyboard moves a slider by a hundredth of its range per arrow, and the server hears the last.
    second = page.locator("input[data-dim='1']")
    low1, high1 = float(second.get_attribute("min")), float(second.get_attribute("max"))
    start1 = float(second.input_value())
    second.focus()
    before, link = frames(), page.url
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    assert float(second.input_value()) == pytest.approx(start1 + 3 * (high1 - low1) / 100, abs=1e-6)
    assert frames() > before
    page.wait_for_function("old => location.href !== old", arg=link, timeout=30_000)
    settle(page)
    settle(page)
    page.screenshot(path=out / "explore.png", full_page=True)
    assert not page.locator("[data-testid='stException']").count()

    for link, marker, name in [("Latent map", "Colour by", "latent-map"), ("Compare", "Download the table", "compare"),
                               ("Gallery", "Gallery", "gallery")]:
        page.get_by_role("link", name=link).click()
        page.get_by_text(marker).first.wait_for(timeout=120_000)
        settle(page)
        page.wait_for_timeout(500)
        if name == "latent-map":
            assert hover_shows_an_image(page), "no image in the latent map's hover tooltip"
            page.mouse.down()  # a click on the hovered point selects it, and its image appears below
            page.mouse.up()
            page.get_by_text("1 selected images").wait_for(timeout=60_000)
            settle(page)
        page.screenshot(path=out / f"{name}.png", full_page=True)
        assert not page.locator("[data-testid='stException']").count(), name


def hover_shows_an_image(page) -> bool:
    """Sweep the mouse over the latent map until Vega's tooltip shows a point's image."""
    chart = page.locator("[data-testid='stVegaLiteChart'] .marks").first  # Vega's SVG (or canvas)
    chart.wait_for(timeout=60_000)
    box = chart.bounding_box()
    for fy in range(5, 96, 5):
        for fx in range(5, 96, 3):
            page.mouse.move(box["x"] + box["width"] * fx / 100, box["y"] + box["height"] * fy / 100)
            page.wait_for_timeout(20)
            if page.locator("#vg-tooltip-element img").count():
                return page.locator("#vg-tooltip-element img").first.get_attribute("src").startswith("data:image/png")
    return False


def press_train(page, url: str, steps: int) -> str:
    """Open the Train page, set the steps, press Train; returns the session's token."""
    page.goto(url)
    page.get_by_text("then press Train").wait_for(timeout=60_000)
    field = page.get_by_role("spinbutton", name="Steps")
    field.fill(str(steps))
    field.press("Enter")
    settle(page)
    page.get_by_role("button", name="Train").click()
    return page.url.split("session=")[1].split("&")[0]


def test_a_run_survives_a_server_restart_and_resumes_to_the_same_weights(page, tmp_path):
    """Start a run from the Train page, kill the server, start it again: the run is listed, and resuming
    it gives the weights of a run that was never interrupted."""
    import signal
    import torch
    from sessions import free_port, serve
    from core import checkpoint
    from core.config import RunConfig
    from core.engine import Trainer
    out, port = shots(tmp_path), free_port()
    env = {"VAELAB_RUNS": str(tmp_path / "runs"), "VAELAB_CHECKPOINTS": str(tmp_path / "checkpoints"),
           "VAELAB_SAVE_EVERY": "100"}
    with serve(env, port=port, log=tmp_path / "server.log") as (url, server):
        token = press_train(page, url, 1500)
        sidecar = tmp_path / "runs" / token / "vae.json"
        deadline = time.time() + 120
        while not (sidecar.exists() and checkpoint.read_sidecar(sidecar)["step"] >= 300) and time.time() < deadline:
            time.sleep(0.1)
        server.send_signal(signal.SIGKILL)  # no chance to save: the last periodic checkpoint is all there is
        server.wait()
    saved_at = checkpoint.read_sidecar(sidecar)["step"]
    assert 300 <= saved_at < 1500
    with serve(env, port=port, log=tmp_path / "server.log") as (url, server):
        page.goto(f"{url}/?session={token}")  # the same address, as a reload after the restart
        page.get_by_text("interrupted").first.wait_for(timeout=60_000)
        settle(page)
        page.screenshot(path=out / "train-interrupted.png", full_page=True)
        page.get_by_role("button", name="Resume training").click()
        page.get_by_text(re.compile(r"step 1,500 .*recorded")).first.wait_for(timeout=180_000)
        settle(page)
        page.screenshot(path=out / "train-resumed.png", full_page=True)
        assert not page.locator("[data-testid='stException']").count()
    resumed = checkpoint.load(sidecar)
    straight = Trainer(RunConfig.from_dict(resumed.meta["config"]))
    straight.step(1500)
    got, want = resumed.network.state_dict(), straight.model.state_dict()
    assert resumed.step == 1500 and all(torch.equal(got[k], want[k]) for k in want)


def test_many_sessions_on_one_server_queue_and_all_finish(tmp_path):
    """bench/sessions.py's load (8 sessions there), with 4 sessions and 2 training processes."""
    from sessions import load, serve
    env = {"VAELAB_RUNS": str(tmp_path / "runs"), "VAELAB_CHECKPOINTS": str(tmp_path / "checkpoints"),
           "VAELAB_MAX_RUNS": "2"}
    with serve(env, log=tmp_path / "server.log") as (url, server):
        r = load(url, server.pid, sessions=4, steps=200)
    assert r["finished"] == 4 and r["tracebacks"] == 0 and r["saw_the_queue"] >= 1
    assert r["panels"] == [1, 1, 1, 1] and len(set(r["tokens"])) == 4  # each sees its own run only
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == sorted(r["tokens"])
    assert all([p.name for p in (tmp_path / "runs" / t).glob("*.json")] == ["vae.json"] for t in r["tokens"])


def test_a_link_copied_from_an_open_tab_opens_a_session_of_its_own(streamlit_server, tmp_path):
    """The address bar carries the session's token; someone opening a copied link while the tab is open
    gets a token of their own (and none of its runs), and a reload of the tab keeps its own."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            first = browser.new_context().new_page()
            first.goto(streamlit_server)
            first.get_by_text("then press Train").wait_for(timeout=60_000)
            first.wait_for_function("() => location.search.includes('session=')", timeout=30_000)
            token = first.url.split("session=")[1].split("&")[0]
            other = browser.new_context().new_page()
            other.goto(first.url)
            other.get_by_text("then press Train").wait_for(timeout=60_000)
            other.wait_for_function(f"() => location.search.includes('session=') && !location.search.includes('{token}')",
                                    timeout=30_000)
            first.reload()
            first.get_by_text("then press Train").wait_for(timeout=60_000)
            first.wait_for_timeout(1000)
            assert token in first.url
        finally:
            browser.close()


def test_closing_the_tab_ends_its_run_after_the_grace_and_keeps_it_resumable(tmp_path):
    from playwright.sync_api import sync_playwright
    from sessions import descendants, serve
    from core import checkpoint, limits
    env = {"VAELAB_RUNS": str(tmp_path / "runs"), "VAELAB_CHECKPOINTS": str(tmp_path / "checkpoints"),
           "VAELAB_GRACE": "5"}
    with serve(env, log=tmp_path / "server.log") as (url, server), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        context = browser.new_context()
        page = context.new_page()
        token = press_train(page, url, limits.maximum("page_steps"))  # far more than the grace allows
        page.get_by_text(re.compile(r"vae.*running")).first.wait_for(timeout=60_000)
        def trainers():  # training processes: the fork server's children (or spawned ones where it has none)
            found, pids = [], descendants(server.pid)[1:]
            for pid in pids:
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
                    server_line = Path(f"/proc/{parent}/cmdline").read_bytes()
                except (OSError, ValueError):
                    continue
                if b"spawn_main" in cmdline or b"forkserver" in server_line:
                    found.append(pid)
            return found
        assert len(trainers()) == 1
        context.close()  # the tab is closed: no more heartbeats
        deadline = time.time() + 60
        while trainers() and time.time() < deadline:
            time.sleep(0.5)
        browser.close()
        assert not trainers(), "the training process outlived its session's grace"
        meta = checkpoint.read_sidecar(tmp_path / "runs" / token / "vae.json")
        assert 0 < meta["step"] < meta["target_steps"] and meta["training"]  # saved, resumable


def test_a_click_on_a_phase_diagram_cell_opens_that_model_in_explore(page, tmp_path):
    from conftest import ROOT
    from sessions import serve
    env = {"VAELAB_CHECKPOINTS": str(tmp_path / "checkpoints"), "VAELAB_RUNS": str(tmp_path / "runs"),
           "VAELAB_SWEEPS": str(ROOT / "checkpoints" / "sweeps")}
    with serve(env, log=tmp_path / "server.log") as (url, _):
        page.goto(url + "/sweeps")
        page.get_by_text("Click a cell to open its models").wait_for(timeout=60_000)
        settle(page)
        page.screenshot(path=shots(tmp_path) / "sweeps.png", full_page=True)
        # beta-vae's panel: the top-right cell is beta 8, latent size 8
        box = page.locator(".nsewdrag").first.bounding_box()
        x, y = box["x"] + box["width"] * 7 / 8, box["y"] + box["height"] / 6
        page.mouse.move(x, y)
        page.wait_for_timeout(300)
        page.mouse.click(x, y)
        page.get_by_text("beta-vae-beta8-latent8-seed0, beta-vae-beta8-latent8-seed1").wait_for(timeout=30_000)
        page.get_by_role("button", name="Open in Explore").click()
        page.get_by_text("Hide inactive dimensions").wait_for(timeout=60_000)
        settle(page)
        assert "model=sweep" in page.url and "beta-vae-beta8-latent8-seed0" in page.url
        page.screenshot(path=shots(tmp_path) / "sweeps-explore.png", full_page=True)
        picker = page.locator("[data-testid='stSelectbox']").first.inner_html()  # the picked model, as drawn
        assert "digits-collapse/beta-vae-beta8-latent8-seed0 (sweep trial)" in picker
        assert not page.locator("[data-testid='stException']").count()
        page.screenshot(path=shots(tmp_path) / "sweeps-explore.png", full_page=True)


def choose(page, label: str, option: str):
    """Pick an option of a Streamlit selectbox by its label."""
    box = page.get_by_role("combobox", name=label, exact=True)
    box.click()
    box.fill(option)  # typed, so an option below the fold needs no scrolling
    page.get_by_role("option", name=option, exact=True).click()
    settle(page)


def test_two_sessions_on_a_class_server_keep_to_their_own_files(tmp_path):
    """Alice uploads her images; Bob, on the same server, types the path where they landed (and the
    system's) into his own field and is told only "not found, or not allowed"; a device that is not there
    is a message, never Streamlit's exception box."""
    import numpy as np
    from playwright.sync_api import sync_playwright
    from sessions import serve
    share = tmp_path / "share"
    share.mkdir()
    np.savez(tmp_path / "alice.npz", x=(np.random.default_rng(0).random((30, 10, 10)) * 255).astype(np.uint8))
    env = {"VAELAB_CHECKPOINTS": str(tmp_path / "checkpoints"), "VAELAB_RUNS": str(tmp_path / "runs"),
           "VAELAB_CACHE": str(share / "cache"), "VAELAB_DATA_ROOTS": str(share)}
    out = shots(tmp_path)
    refused = "not found, or not in a folder this server lets you read"
    with serve(env, log=tmp_path / "server.log") as (url, _), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            alice, bob = (browser.new_context(viewport={"width": 1400, "height": 1200}).new_page() for _ in "ab")
            for page in (alice, bob):
                page.goto(url)
                page.get_by_text("then press Train").wait_for(timeout=60_000)
                choose(page, "Dataset", "your own images ...")
            alice.locator("input[type='file']").set_input_files(str(tmp_path / "alice.npz"))
            alice.get_by_text("30 images of").wait_for(timeout=60_000)
            alice.screenshot(path=out / "class-server-upload.png")
            (theirs,) = (share / "cache" / "uploads").rglob("*.npz")
            field = bob.get_by_label("Folder or .npz on this server", exact=True)
            for typed in (str(theirs), "cache/uploads", "/proc/self"):
                field.fill(typed)
                field.press("Enter")
                settle(bob)
                bob.get_by_text(f"{typed}: {refused}").wait_for(timeout=30_000)
            bob.screenshot(path=out / "class-server-refused.png", full_page=True)
            field.fill("")
            field.press("Enter")
            settle(bob)
            choose(bob, "Dataset", "digits")
            choose(bob, "Device", "cuda")
            bob.get_by_role("button", name="Train").click()
            bob.get_by_text("no CUDA GPU is available").wait_for(timeout=30_000)
            for page in (alice, bob):
                assert page.locator("[data-testid='stException']").count() == 0
        finally:
            browser.close()
