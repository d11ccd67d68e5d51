"""The dashboard in a real browser: Debian's chromium, headless, driven by Playwright, against a real
`streamlit run`. Screenshots of every page go to $VAELAB_SCREENSHOTS (or the test's temporary folder)."""
import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)")

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


def test_train_then_drag_a_slider_in_a_real_browser(streamlit_server, page, tmp_path):
    out = shots(tmp_path)
    page.goto(streamlit_server)
    page.get_by_text("then press Train").wait_for(timeout=60_000)
    page.screenshot(path=out / "train-empty.png", full_page=True)

    steps = page.get_by_label("Steps")
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
    image = page.locator("[data-testid='stImage'] img").first
    before = image.get_attribute("src")
    # the slider's thumb holds a visually hidden <input type="range">
    thumb = page.locator("[data-testid='stSlider'] input[type='range']").first.locator("xpath=../..")
    box = thumb.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + 150, box["y"] + box["height"] / 2, steps=10)
    page.mouse.up()
    page.wait_for_function("([el, old]) => el.src !== old", arg=[image.element_handle(), before], timeout=30_000)
    assert image.get_attribute("src") != before
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
