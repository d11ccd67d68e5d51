"""The hostile cases that go through the pages: a real `streamlit run` shared by two browser sessions
(headless Chromium), Alice and Bob. Each row is what the page said, the seconds from the act until the page
settled, and the server process's peak memory above its size before the act (VmHWM, reset through
/proc/PID/clear_refs before each case).

    python bench/hostile_pages.py      # a table, also written to experiments/results/hostile_pages.md
"""
from __future__ import annotations

import io
import json
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from sessions import serve

ROOT = Path(__file__).resolve().parent.parent

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
REFUSED = "not found, or not in a folder this server lets you read"


def rss(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith(field))


def settle(page):
    page.wait_for_timeout(300)
    page.wait_for_selector("[data-testid='stStatusWidget']", state="detached", timeout=120_000)


def choose(page, label, option):
    box = page.get_by_role("combobox", name=label, exact=True)
    box.click()
    box.fill(option)
    page.get_by_role("option", name=option, exact=True).click()
    settle(page)


def said(page) -> str:
    """The page's error, or its last caption under the own-images fields."""
    errors = page.locator("[data-testid='stAlertContentError']")
    if errors.count():
        return "error: " + errors.last.inner_text().replace("\n", " ")
    return "ok: " + page.locator("[data-testid='stSidebar'] [data-testid='stCaptionContainer']").last.inner_text()


def files_for(tmp: Path) -> dict[str, Path]:
    from PIL import Image
    np.savez_compressed(tmp / "bomb.npz", x=np.zeros((8192, 256, 256), np.uint8))
    np.savez(tmp / "alice.npz", x=(np.random.default_rng(0).random((30, 10, 10)) * 255).astype(np.uint8))
    png = io.BytesIO()
    Image.new("L", (1, 1), 255).save(png, format="PNG")
    with zipfile.ZipFile(tmp / "tiny.zip", "w") as z:
        for i in range(20_000):
            z.writestr(f"pics/{i:05d}.png", png.getvalue())
    (tmp / "random.npz").write_bytes(np.random.default_rng(0).bytes(4096))
    return {"bomb": tmp / "bomb.npz", "alice": tmp / "alice.npz", "tiny": tmp / "tiny.zip", "random": tmp / "random.npz"}


def main():
    from playwright.sync_api import sync_playwright
    tmp = Path(tempfile.mkdtemp(prefix="vaelab-hostile-"))
    share, checkpoints = tmp / "share", tmp / "checkpoints"
    share.mkdir()
    checkpoints.mkdir()
    made = files_for(tmp)
    for name in ("mnist-vae",):
        for ext in (".json", ".safetensors"):
            shutil.copy(ROOT / "checkpoints" / f"{name}{ext}", checkpoints / f"{name}{ext}")
    meta = json.loads((checkpoints / "mnist-vae.json").read_text())
    meta["config"]["data"]["name"] = "/proc/self/root"
    shutil.copy(checkpoints / "mnist-vae.safetensors", checkpoints / "proc-root.safetensors")
    (checkpoints / "proc-root.json").write_text(json.dumps(meta))
    trials = sorted((ROOT / "checkpoints" / "sweeps" / "digits-collapse" / "trials").glob("beta-vae-*.json"))[:10]
    env = {"VAELAB_CHECKPOINTS": str(checkpoints), "VAELAB_RUNS": str(tmp / "runs"), "VAELAB_CACHE": str(share / "cache"),
           "VAELAB_DATA_ROOTS": str(share), "VAELAB_OFFLINE": "1"}
    rows = []
    with serve(env, log=tmp / "server.log") as (url, server), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--headless", "--no-sandbox", "--disable-gpu"])
        alice, bob = (browser.new_context(viewport={"width": 1400, "height": 1200}).new_page() for _ in "ab")
        for page in (alice, bob):
            page.goto(url)
            page.get_by_text("then press Train").wait_for(timeout=120_000)
            choose(page, "Dataset", "your own images ...")

        def measure(name, act, page, expect=None):
            Path(f"/proc/{server.pid}/clear_refs").write_text("5")
            before, start = rss(server.pid, "VmRSS"), time.monotonic()
            line = act()
            if expect:  # the page's answer: a message that names what was given
                page.get_by_text(expect).first.wait_for(timeout=120_000)
            settle(page)
            line = line or said(page)
            rows.append((name, line, time.monotonic() - start, max(0.0, rss(server.pid, "VmHWM") - before)))
            print(f"{rows[-1][2]:6.1f} s {rows[-1][3]:7.0f} MB  {name}: {line}", flush=True)

        def upload(page, path):
            return lambda: page.locator("input[type='file']").set_input_files(str(path))

        def typed(page, text):
            def act():
                field = page.get_by_label("Folder or .npz on this server", exact=True)
                field.fill(text)
                field.press("Enter")
            return act

        measure("Alice uploads her own .npz (30 images)", upload(alice, made["alice"]), alice, "30 images of")
        (theirs,) = list((share / "cache" / "uploads").rglob("*.npz"))
        for text, what in [(str(theirs), "Alice's upload, by its full path"), ("cache/uploads", "the uploads folder"),
                           ("/proc/self", "/proc/self"), ("/", "/"), ("/etc/passwd", "/etc/passwd"),
                           ("../..", "../.."), ("/nonexistent", "a path that is not there")]:
            measure(f"Bob types {what} into the server-path field", typed(bob, text), bob, f"{text}: {REFUSED}")
        typed(bob, "")()
        settle(bob)
        measure("Bob uploads the .npz bomb (522 KB, 8192x256x256 zeros)", upload(bob, made["bomb"]), bob, "bomb.npz:")
        measure("Bob uploads random bytes named .npz", upload(bob, made["random"]), bob, "random.npz:")
        def size(page, pixels):
            field = page.get_by_label("Image size (pixels, 0: as they are)", exact=True)
            field.fill(str(pixels))
            field.press("Enter")
            settle(page)
        size(bob, 128)
        measure("Bob uploads a 3 MB zip of 20,000 1x1 PNGs at image size 128", upload(bob, made["tiny"]), bob, "tiny.zip:")
        measure("... and sets image size 28: within the budget, read", lambda: size(bob, 28), bob, "20,000 images of")
        bob.goto(url + f"?session={bob.url.split('session=')[1].split('&')[0]}")
        bob.get_by_text("then press Train").wait_for(timeout=120_000)

        def cuda():
            choose(bob, "Device", "cuda")
            bob.get_by_role("button", name="Train").click()
        measure("Bob trains on device cuda (none here)", cuda, bob, "no CUDA GPU")

        def link(page, address, wait):
            def act():
                page.goto(address)
                page.get_by_text(wait).first.wait_for(timeout=120_000)
                settle(page)
                boxes = page.locator("[data-testid='stException']").count()
                return f"ok: the page opened, {boxes} exception boxes"
            return act

        z = ",".join(["1e308", "-1e308", "nan"] + ["1e300"] * 13)
        measure("A link to Explore with ?z=1e308,-1e308,nan,...", link(bob, f"{url}/explore?model=file:%20mnist-vae&z={z}",
                                                                      "Hide inactive dimensions"), bob)
        measure("Gallery with a checkpoint whose dataset is /proc/self/root", link(bob, f"{url}/gallery", "proc-root"), bob)
        for path in trials:
            for ext in (".json", ".safetensors"):
                shutil.copy(path.with_suffix(ext), checkpoints / f"{path.stem}{ext}")
        compare = "&".join(f"compare=file:%20{p.stem}" for p in trials)
        measure("A link to Compare naming 10 models", link(bob, f"{url}/compare?{compare}", "Compare and diagnose"), bob)
        browser.close()
    table = ["| case | how it ended | seconds | server peak MB |", "| --- | --- | ---: | ---: |"]
    table += [f"| {name} | {line.replace('|', '/')} | {seconds:.1f} | {peak:.0f} |" for name, line, seconds, peak in rows]
    out = ROOT / "experiments" / "results" / "hostile_pages.md"
    out.write_text("Written by `python bench/hostile_pages.py`: a real server, two headless Chromium sessions "
                   "(peak: the server's VmHWM above its size before the case).\n\n" + "\n".join(table) + "\n")
    print(f"wrote {out}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
