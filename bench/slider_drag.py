"""Slider drag: how many new pictures a second the Explore page shows while a latent slider is dragged,
in a real browser (headless chromium, Playwright) against a real `streamlit run`, on this machine.

The model is the shipped 16-dimensional MNIST VAE (checkpoints/mnist-vae, MLP 784-128-16). Two ways:
  browser  the default for an MLP decoder: the page decodes each move itself from the decoder's weights
  server   ?decode=server: the page sends the code at most every 50 ms while dragging and the server decodes
For each, the mouse drags z0's thumb back and forth for a few seconds, one move every 16 ms (a 60 Hz
mouse), and the pictures drawn before the release are counted. Medians over repeats.

    python bench/slider_drag.py [--seconds 3] [--repeats 3]
"""
import argparse
import math
import statistics
import time
from pathlib import Path

from sessions import CHROMIUM, FLAGS, serve

ROOT = Path(__file__).resolve().parent.parent
FRAMES = "el => Number(el.dataset.frames || 0)"
DECODE_MS = []  # the browser's time to decode and draw one picture, at the end of each drag


def drag(page, seconds: float, picture) -> tuple[float, int]:
    """Drag z0's thumb for `seconds`; returns (pictures per second before the release, moves made)."""
    slider = page.locator("input[data-dim='0']")
    box = slider.bounding_box()
    low, high = float(slider.get_attribute("min")), float(slider.get_attribute("max"))
    value = float(slider.input_value())
    x = box["x"] + box["width"] * (value - low) / (high - low)
    y = box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    before, moves, start = picture.evaluate(FRAMES), 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = (time.perf_counter() - start) / seconds
        offset = box["width"] * 0.2 * math.sin(4 * math.pi * t)  # back and forth twice, ending where it began
        page.mouse.move(x + offset, y)
        moves += 1
        page.wait_for_timeout(16)
    drawn, elapsed = picture.evaluate(FRAMES) - before, time.perf_counter() - start
    DECODE_MS.append(float(picture.evaluate("el => el.dataset.ms || 'nan'")))
    if drawn < 0:
        raise RuntimeError("the picture was built again during the drag")
    page.mouse.up()
    return drawn / elapsed, moves


def settle(page):
    page.wait_for_timeout(300)
    page.wait_for_selector("[data-testid='stStatusWidget']", state="detached", timeout=60_000)
    page.wait_for_timeout(300)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright
    import tempfile
    with tempfile.TemporaryDirectory() as folder, serve({"VAELAB_RUNS": f"{folder}/runs"},
                                                        log=Path(folder) / "server.log") as (url, _):
        results = {}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for way, query, selector in (("browser", "", "canvas[data-frames]"),
                                         ("server", "&decode=server", "img[data-frames]")):
                page.goto(f"{url}/explore?model=file:+mnist-vae{query}")
                picture = page.locator(selector).first
                picture.wait_for(timeout=120_000)
                settle(page)
                rates = []
                for _ in range(args.repeats):
                    rate, moves = drag(page, args.seconds, picture)
                    rates.append(rate)
                    settle(page)  # the release's rerun
                results[way] = (statistics.median(rates), rates, moves)
            browser.close()
    print(f"{'way':<9}{'pictures/s while dragging':>28}   (median of {args.repeats}; each: {args.seconds:g} s, "
          f"{results['browser'][2]} mouse moves)")
    for way, (median, rates, _) in results.items():
        print(f"{way:<9}{median:>28.1f}   {', '.join(f'{r:.1f}' for r in rates)}")
    ms = [m for m in DECODE_MS if m == m]
    print(f"one decode and draw in the browser: median {statistics.median(ms):.2f} ms over {len(ms)} drags")


if __name__ == "__main__":
    main()
