"""What a speaker feels while a run trains on the same laptop: a real `streamlit run`, headless chromium,
and the time from a key press or click until the page has settled.

"Settled" is read off the page, not guessed: the view shows what was asked for (the step's captions, the
page's title, the map), nothing is stale or running, every picture has loaded, and the page has not
changed for QUIET_MS; the time is that of its last change. Measured on a quiet machine, then while one
run trains, then while two do (the runs train from the Train page of another browser session on the same
server: the server's own training processes, as in a lesson).

  interaction   Step-slider moves on the Train page (every view follows), Explore tab switches, page
                switches, and the first PCA map of 2,000 codes (a model not mapped before, so not cached).
  live          a run training from the Train page, its live panel watched every 100 ms for a minute:
                the share of samples with a faded (stale) element, and how often a chart or picture was
                taken out of the page and built again.

    python bench/dashboard_latency.py --only interaction [--moves 12] [--against ../before]
        (--against: another checkout, an earlier commit's `git worktree add ../before COMMIT`, measured
        right after this one in each condition)
    python bench/dashboard_latency.py --only live [--seconds 60]
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import sessions
from sessions import FLAGS, serve

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
QUIET_MS = 200

# Installed in every page before it loads: the time of the page's last change, and how many charts or
# pictures were taken out of it (a chart updated in place is not).
WATCH = """
window.__lab = {last: performance.now(), removed: 0, kinds: {}};
const heavy = "img, canvas, .js-plotly-plot, .vega-embed";
new MutationObserver(records => {
  window.__lab.last = performance.now();
  for (const r of records) for (const n of r.removedNodes) {
    const found = n.nodeType === 1 && (n.matches(heavy) ? n : n.querySelector(heavy));
    if (!found) continue;
    window.__lab.removed++;
    const kind = found.classList.contains("js-plotly-plot") ? "plotly chart" : found.tagName.toLowerCase();
    window.__lab.kinds[kind] = (window.__lab.kinds[kind] || 0) + 1;
  }
}).observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
"""

STATE = """() => {
  const busy = !!document.querySelector("[data-testid='stStatusWidget']")
    || !!document.querySelector("[data-stale='true']")
    || [...document.images].some(i => !i.complete);
  return {busy, last: window.__lab.last, now: performance.now()};
}"""

# A faded element: one Streamlit marks stale and draws at less than full opacity.
FADED = """() => [...document.querySelectorAll("[data-stale='true']")]
  .some(e => parseFloat(getComputedStyle(e).opacity) < 0.99 && e.getBoundingClientRect().height > 0)"""


def now(page) -> float:
    return page.evaluate("performance.now()")


def settled_ms(page, t0: float, ready: str, timeout_s: float = 120) -> float:
    """Milliseconds from t0 (the page's clock) until the page settled with `ready` (a JS expression) true."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        state = page.evaluate(STATE)
        if not state["busy"] and state["now"] - state["last"] >= QUIET_MS and page.evaluate(ready):
            return max(0.0, state["last"] - t0)
        page.wait_for_timeout(25)
    raise TimeoutError(f"the page did not settle within {timeout_s:.0f} s ({ready})")


def has_text(text: str) -> str:
    return f"document.body.innerText.includes({text!r})"


def browser(p, profile: Path):
    context = p.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, args=FLAGS,
                                                   headless=True, viewport={"width": 1400, "height": 1000})
    context.add_init_script(WATCH)
    return context


def open_page(context, url: str, ready: str):
    page = context.new_page()
    page.goto(url)
    page.wait_for_function(ready, timeout=120_000)
    settled_ms(page, 0, ready)
    return page


def choose(page, label: str, option: str):
    page.get_by_role("combobox", name=label).click()
    page.get_by_role("option", name=option, exact=True).click()
    page.wait_for_timeout(800)


def start_training(context, url: str, runs: int):
    """Another session presses Train (or races `runs` objectives) on MNIST with the CLI's network, for
    longer than the measurement lasts; returns its page."""
    page = open_page(context, url, has_text("then press Train"))
    choose(page, "Dataset", "mnist")
    choose(page, "MLP widths", "default (512, 256)")
    if runs > 1:
        page.get_by_role("combobox", name="Objectives").click()
        page.get_by_role("option", name="beta-vae", exact=True).click()
        page.keyboard.press("Escape")
        page.wait_for_timeout(800)
    field = page.get_by_role("spinbutton", name="Steps")
    field.fill("100000")
    field.press("Enter")
    page.wait_for_timeout(800)
    page.get_by_role("button", name=re.compile("^(Train|Race)")).click()
    page.get_by_text(re.compile(r"samples/s · running")).first.wait_for(timeout=180_000)
    return page


# Every view of the Train page's run follows the Step slider: at its last step the captions name no step.
STEP_SHOWN = """(() => {
  const s = document.querySelector("input[type=range][aria-label='Step']"), text = document.body.innerText;
  if (s.value === s.max) return text.includes("samples from the prior") && !text.includes("prior at step");
  return text.includes("samples from the prior at step " + s.getAttribute("aria-valuetext"));
})()"""


def step_moves(page, moves: int) -> list[float]:
    """Step-slider key presses on the Train page's recorded run, each until every view shows the step."""
    slider = page.get_by_role("slider", name="Step")
    times = []
    for i in range(moves):
        slider.focus()
        t0 = now(page)
        page.keyboard.press("ArrowLeft" if i < moves // 2 else "ArrowRight")
        times.append(settled_ms(page, t0, STEP_SHOWN))
    return times


def tab_switches(page, rounds: int = 2) -> list[float]:
    times = []
    for _ in range(rounds):
        for name in ("Traversals", "Interpolation", "Prior samples", "Reconstructions", "Sliders"):
            tab = page.get_by_role("tab", name=name)
            t0 = now(page)
            tab.click()
            times.append(settled_ms(page, t0, "document.querySelector(\"[role='tab'][aria-selected='true']\")"
                                              f".innerText.includes({name!r})"))
    return times


PAGE_TITLES = {"Explore": "Explore", "Compare": "Compare and diagnose", "Gallery": "Gallery", "Train": "Train"}


def page_switches(page, rounds: int = 3) -> list[float]:
    """Clicks on the sidebar's links, each page in turn; the times in PAGE_TITLES order, round after round."""
    times = []
    for _ in range(rounds):
        for link, title in PAGE_TITLES.items():
            t0 = now(page)
            page.locator("[data-testid='stSidebarNav']").get_by_role("link", name=link, exact=True).click()
            ready = f"[...document.querySelectorAll('h1')].some(h => h.innerText.trim() === {title!r})"
            times.append(settled_ms(page, t0, ready))
    return times


def by_page(times: list[float]) -> str:
    """Each page's first visit (its caches cold) and its slowest visit after that."""
    names = list(PAGE_TITLES)
    return ", ".join(f"{name} {times[i]:.0f}/{max(times[i + len(names)::len(names)]):.0f}" for i, name in enumerate(names))


def again(times: list[float]) -> list[float]:
    """The visits after each page's first."""
    return times[len(PAGE_TITLES):]


def first_map(page, url: str, model: str) -> float:
    """The Latent map page opened on a model not mapped before: a PCA of 2,000 codes, until drawn."""
    t0 = now(page)
    page.goto(f"{url}/map?model=file:%20{model}")
    return settled_ms(page, t0 - t0, "!!document.querySelector('.vega-embed canvas, .vega-embed svg')")


def p95(values) -> float:
    return float(np.percentile(values, 95))


def interaction(moves: int = 12, against: Path | None = None):
    """Each condition (quiet, one run training, two) measured on this checkout and, when `against` names
    another (an earlier commit's `git worktree`), on that one right after: side by side, in one run."""
    from playwright.sync_api import sync_playwright
    folder = Path(tempfile.mkdtemp())
    trees = {"this": sessions.ROOT, **({"against": Path(against).resolve()} if against else {})}
    results = {}
    with contextlib.ExitStack() as stack, sync_playwright() as p:
        # Two training processes at most, and a closed page's run gone within 30 s on either checkout: the
        # runs of one condition never hold cores into the next.
        env = {"VAELAB_OFFLINE": "1", "VAELAB_MAX_RUNS": "2", "VAELAB_GRACE": "30"}
        servers = {name: stack.enter_context(serve({**env, "VAELAB_RUNS": str(folder / name / "runs")},
                                                   root=root))[0] for name, root in trees.items()}
        watchers = {name: browser(p, folder / name / "watcher") for name in trees}
        trainers = {name: browser(p, folder / name / "trainer") for name in trees}
        for name, url in servers.items():
            open_page(watchers[name], url, has_text("samples from the prior")).close()
            open_page(watchers[name], f"{url}/explore", has_text("Sliders")).close()  # Explore's caches, once
        maps = {0: "mnist-vae", 1: "mnist-beta8", 2: "mnist-free-bits-beta8"}  # each condition maps a new model
        for runs in (0, 1, 2):
            for name, url in servers.items():
                trains = start_training(trainers[name], url, runs) if runs else None
                if trains:
                    time.sleep(5)  # past the start-up, into steady training
                page = watchers[name].new_page()
                page.goto(url)
                settled_ms(page, 0, has_text("samples from the prior"))
                step = step_moves(page, moves)
                page.goto(f"{url}/explore")
                settled_ms(page, 0, has_text("Sliders"))
                tabs = tab_switches(page)
                pages = page_switches(page)
                pca = first_map(page, url, maps[runs])
                load = os.getloadavg()[0]
                page.close()
                if trains:
                    for stop in trains.get_by_role("button", name="Stop").all():
                        with contextlib.suppress(Exception):  # redrawn meanwhile: closing the page ends it too
                            stop.click(timeout=5000)
                    trains.close()
                    time.sleep(3)
                results[name, runs] = dict(step=step, tabs=tabs, pages=pages, pca=pca, load=load)
                what = ["on a quiet machine", "while training", "while two runs train"][runs]
                print(f"{name:>7}: interaction p95 {what}: {p95(step):.0f} ms (Step slider, {moves} moves, p50 "
                      f"{statistics.median(step):.0f}); Explore tab switch p95 {p95(tabs):.0f} ms; page switch p95 "
                      f"{p95(again(pages)):.0f} ms once visited (first visit/later: {by_page(pages)}); first PCA map of 2,000 codes {pca / 1000:.1f} s; load average {load:.1f}",
                      flush=True)
    for name in trees:
        quiet, busy, two = (results[name, runs]["step"] for runs in (0, 1, 2))
        print(f"{name:>7}: interaction p95 while training: {p95(busy):.0f} ms against {p95(quiet):.0f} ms quiet "
              f"({p95(busy) / p95(quiet):.2f}x); two runs: {p95(two):.0f} ms")
    return results


def live(seconds: float = 60, against: Path | None = None):
    """The live panel of a training run, sampled every 100 ms; on this checkout, then on `against`."""
    from playwright.sync_api import sync_playwright
    folder = Path(tempfile.mkdtemp())
    trees = {"this": sessions.ROOT, **({"against": Path(against).resolve()} if against else {})}
    found = {}
    for name, root in trees.items():
        env = {"VAELAB_RUNS": str(folder / name / "runs"), "VAELAB_OFFLINE": "1"}
        with serve(env, root=root) as (url, _), sync_playwright() as p:
            context = browser(p, folder / name / "trainer")
            page = start_training(context, url, 1)
            page.get_by_text("KL per dimension").first.wait_for(timeout=120_000)
            removed0, faded, samples, start = page.evaluate("window.__lab.removed"), 0, 0, time.perf_counter()
            kinds0 = page.evaluate("window.__lab.kinds")
            while time.perf_counter() - start < seconds:
                faded += bool(page.evaluate(FADED))
                samples += 1
                page.wait_for_timeout(100)
            minutes = (time.perf_counter() - start) / 60
            removed = page.evaluate("window.__lab.removed") - removed0
            kinds = {k: v - kinds0.get(k, 0) for k, v in page.evaluate("window.__lab.kinds").items()}
            with contextlib.suppress(Exception):
                context.close()
        found[name] = faded / samples, removed / minutes
        print(f"{name:>7}: live panel while training ({seconds:.0f} s, refresh 2 s): {100 * faded / samples:.1f}% of "
              f"{samples} samples faded; charts and pictures taken out and built again {removed / minutes:.1f} times "
              f"a minute ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()) if v) or 'none'})", flush=True)
    return found
