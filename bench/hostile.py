"""What a hostile user of a shared server can throw at VAE Lab, each case made for real (a FIFO, a link to
/dev/zero, an .npz bomb, 20,000 tiny images, a sidecar of 10,000 layers, ...), and how it ends: the one
line the user reads, the seconds it took and the memory it took at its peak.

    python bench/hostile.py            # every case; a table, also written to experiments/results/hostile_cases.md

tests/test_shared_server.py runs the same cases and holds each to its message, a few seconds and a
bounded peak. Peak memory is the process's high-water mark (VmHWM) above its size before the case,
reset before each case through /proc/self/clear_refs.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("VAELAB_OFFLINE", "1")

from core import checkpoint, cli, data, files, safefs, sweep  # noqa: E402  (offline first)
from core.errors import LabError  # noqa: E402

SHIPPED = ROOT / "checkpoints" / "mnist-vae"
CASES: dict[str, tuple[str, callable]] = {}  # name: (what the message must say, the act)


def case(name: str, says: str):
    """Register a case: given a scratch folder, it makes its hostile files and returns the act, which is
    what is timed and measured; the act returns a line when it succeeds (boundedly) rather than being
    refused."""
    def add(act):
        CASES[name] = (says, act)
        return act
    return add


def copy_checkpoint(tmp: Path, name: str) -> Path:
    for suffix in (".json", ".safetensors"):
        shutil.copy(f"{SHIPPED}{suffix}", tmp / f"{name}{suffix}")
    return tmp / name


def sidecar_with(tmp: Path, name: str, change) -> Path:
    path = copy_checkpoint(tmp, name)
    meta = json.loads((tmp / f"{name}.json").read_text())
    change(meta)
    (tmp / f"{name}.json").write_text(json.dumps(meta))
    return path


def cli_line(*argv) -> str:
    """Run the CLI in this process; its stderr's last line, which is all the user reads."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = cli.main(list(argv))
        except SystemExit as e:  # argparse's own refusal of a flag, after its one line
            code = e.code
    lines = [line for line in err.getvalue().splitlines() if line.strip() and not line.startswith("warning")]
    if code == 0:
        return "ok: exit 0"
    return lines[-1] if lines else f"exit {code} without a message"


# ---------------------------------------------------------------- your own files

@case("FIFO named x.npz", "not a regular file")
def fifo_npz(tmp):
    os.mkfifo(tmp / "x.npz")
    return lambda: data.load(data.DataSpec(str(tmp / "x.npz")))


@case("FIFO named x.npz, through the CLI", "not a regular file")
def fifo_npz_cli(tmp):
    os.mkfifo(tmp / "x.npz")
    return lambda: cli_line("train", "--dataset", str(tmp / "x.npz"), "--steps", "1", "--out", str(tmp))


@case(".npz bomb: 522 KB of zeros that unpack to 8192x256x256", "pixel values")
def npz_bomb(tmp):
    np.savez_compressed(tmp / "bomb.npz", x=np.zeros((8192, 256, 256), np.uint8))
    return lambda: data.load(data.DataSpec(str(tmp / "bomb.npz")))


@case("random bytes named x.npz", "not an .npz")
def random_npz(tmp):
    (tmp / "x.npz").write_bytes(os.urandom(4096))
    return lambda: data.load(data.DataSpec(str(tmp / "x.npz")))


@case("an .npz whose x is a raw 300 MiB member beside a small x.npy", "not an .npy array")
def raw_member(tmp):
    small = io.BytesIO()
    np.save(small, np.zeros((2, 4, 4), np.uint8))
    with zipfile.ZipFile(tmp / "x.npz", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", small.getvalue())
        z.writestr("x", bytes(300 * 2**20))  # numpy would read this one, unmeasured
    return lambda: data.load(data.DataSpec(str(tmp / "x.npz")))


@case("an .npz of 2 structured values of 1 GiB each", "must hold bytes")
def structured(tmp):
    np.savez_compressed(tmp / "x.npz", x=np.zeros((2, 1, 1), dtype=[("a", "u1", (1024, 1024, 1024))]))
    return lambda: data.load(data.DataSpec(str(tmp / "x.npz")))


@case("an upload whose zip member uses a compression method Python lacks (AES, 99)", "cannot be unpacked")
def unknown_method(tmp):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("pics/a.png", b"not really")
    blob = bytearray(archive.getvalue())
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):  # local header, central directory
        at = blob.index(signature) + offset
        blob[at:at + 2] = (99).to_bytes(2, "little")
    os.environ["VAELAB_CACHE"] = str(tmp / "cache")
    return lambda: files.unpack_upload("locked.zip", bytes(blob), "student")


@case("a 3 MB zip of 20,000 1x1 PNGs at image size 128", "pixel values")
def tiny_pngs(tmp):
    from PIL import Image
    buf = io.BytesIO()
    Image.new("L", (1, 1), 255).save(buf, format="PNG")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        for i in range(20_000):
            z.writestr(f"pics/{i:05d}.png", buf.getvalue())
    os.environ["VAELAB_CACHE"] = str(tmp / "cache")

    def act():  # the upload and its reading, as the Train page does them
        path = files.unpack_upload("pics.zip", archive.getvalue(), "student")
        data.load(data.DataSpec(str(path), size=128), label="pics.zip")
    return act


@case("a 16-bit PNG", "ok")
def sixteen_bit(tmp):
    from PIL import Image
    for i in range(3):
        Image.fromarray(np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)).save(tmp / f"{i}.png")

    def act():
        x = data.load(data.DataSpec(str(tmp))).train_x
        return f"ok: {len(x.unique()):,} grey levels from 0 to {x.max():.0f} (clipping would leave 256 or fewer)"
    return act


@case("a folder with more entries than the walk may look at", "more than 1,000 files and folders")
def big_folder(tmp):
    for i in range(1500):
        (tmp / f"{i}.png").touch()
    return lambda: files.read_folder(tmp, 0, "auto", budget=safefs.Budget(entries=1000, label="big"), label="big")


@case("a read whose page was closed", "the page that asked for it was closed")
def closed_page(tmp):
    for i in range(10):
        (tmp / f"{i}.png").touch()
    return lambda: files.read_folder(tmp, 0, "auto", budget=safefs.Budget(alive=lambda: False, label="mine"), label="mine")


@case("/proc/self as a dataset", "no such folder")
def proc_self(tmp):
    return lambda: data.load(data.DataSpec("/proc/self/"))


@case("a link to /proc/self as a dataset", "no such folder")
def link_to_proc(tmp):
    (tmp / "innocent").symlink_to("/proc/self")
    return lambda: data.load(data.DataSpec(str(tmp / "innocent")))


@case("a checkpoint's dataset /proc/self/root", "no such folder")
def dataset_proc_root(tmp):
    return lambda: data.load(data.DataSpec("/proc/self/root"))


@case("train --dataset /proc/self/root", "no such folder or file")
def cli_proc_root(tmp):
    return lambda: cli_line("train", "--dataset", "/proc/self/root", "--steps", "1", "--out", str(tmp))


@case("a link out of the allowed root", "ok")
def escaping_link(tmp):
    (tmp / "root").mkdir()
    (tmp / "root" / "out").symlink_to("/etc")

    def act():
        typed = ("out", str(tmp / "root" / "out"), "/etc", "/", "missing", "..", "../root/../..")
        found = [safefs.within(t, [(tmp / "root").resolve()]) for t in typed]
        assert found == [None] * len(typed), found
        return "ok: none resolves; not there and not allowed read the same"
    return act


@case("another session's upload", "ok")
def other_upload(tmp):
    os.environ["VAELAB_CACHE"] = str(tmp / "cache")
    np.savez(buf := io.BytesIO(), x=np.zeros((4, 5, 5), np.uint8))
    theirs = files.unpack_upload("theirs.npz", buf.getvalue(), "alice")
    roots, excluded = [tmp.resolve()], [files.uploads_dir().resolve()]

    def act():
        assert safefs.within(str(theirs), roots, excluded) is None
        assert safefs.within(str(files.uploads_dir()), roots, excluded) is None
        return "ok: refused, even inside an allowed root"
    return act


# ---------------------------------------------------------------- checkpoints

def load_with(tmp, suffix: str, put):
    """Loading a checkpoint one of whose files was replaced by put(path): a link, a FIFO."""
    path = copy_checkpoint(tmp, "z")
    (tmp / f"z{suffix}").unlink()
    put(tmp / f"z{suffix}")
    return lambda: checkpoint.load(path)


@case("weights that are a link to /dev/zero", "not a regular file")
def weights_dev_zero(tmp):
    return load_with(tmp, ".safetensors", lambda p: p.symlink_to("/dev/zero"))


@case("a sidecar that is a link to /dev/zero", "not a regular file")
def sidecar_dev_zero(tmp):
    return load_with(tmp, ".json", lambda p: p.symlink_to("/dev/zero"))


@case("a sidecar that is a FIFO", "not a regular file")
def sidecar_fifo(tmp):
    return load_with(tmp, ".json", os.mkfifo)


@case("a sidecar naming 10,000 hidden layers", "hidden layers must be a whole number up to 16")
def deep_sidecar(tmp):
    path = sidecar_with(tmp, "h", lambda m: m["config"]["model"].update(hidden=[64] * 10_000))
    return lambda: checkpoint.load(path)


@case("a sidecar asking for 10,000 flow steps", "flow_steps must be at most 64")
def flow_sidecar(tmp):
    path = sidecar_with(tmp, "i", lambda m: m["config"].update(objective="iaf", settings={"flow_steps": 10_000}))
    return lambda: checkpoint.load(path)


# ---------------------------------------------------------------- sizes on the command line

def train_line(tmp, *flags):
    return cli_line("train", "--dataset", "digits", "--steps", "2", "--out", str(tmp), "--save-every", "0", *flags)


for flags, says in [(("--latent", "1000000000"), "--latent: must be a whole number up to 4,096"),
                    (("--hidden", "1000000000"), "--hidden: a width must be a whole number up to 16,384"),
                    (("--objective", "iwae", "--k", "100000000"), "k must be at most 5,000"),
                    (("--objective", "iwae", "--k", "5000"), "more than the 4.0 GiB a run may take"),
                    (("--objective", "iaf", "--flow-steps", "1000000"), "flow_steps must be at most 64"),
                    (("--name", "../x"), "give a plain file name"),
                    (("--name", "/abs/x"), "give a plain file name"),
                    (("--steps", "1000000000"), "up to 100,000,000")]:
    case(f"train {' '.join(flags)}", says)(lambda tmp, flags=flags: lambda: train_line(tmp, *flags))


@case("a sweep grid of 1000 x 1000 x 1000 values", "1,000,000,000 combinations")
def huge_grid(tmp):
    spec = "[grid]\nbeta = [%s]\nlatent = [%s]\nseed = [%s]\n" % ((",".join(map(str, range(1, 1001))),) * 3)
    return lambda: sweep.parse_spec(spec, "s")


@case("a sweep grid value that is a long list", "ok")
def long_value(tmp):
    spec = '[grid]\nhidden = [[%s], [32]]\n' % ",".join(["4096"] * 16)

    def act():
        trials = sweep.parse_spec(spec, "s").trials
        return f"ok: trial ids of {max(len(t.id) for t in trials)} characters at most, {trials[0].id}"
    return act


# ---------------------------------------------------------------- running them

@dataclass
class Outcome:
    name: str
    line: str        # what the user reads: the refusal, or "ok: ..." for a bounded success
    seconds: float
    peak_mb: float   # high-water mark above the process's size before the case (NaN where it cannot be reset)
    traceback: bool  # an exception that is not one of ours: a defect


def _rss(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith(field))


def run(name: str, tmp: Path) -> Outcome:
    says, act = CASES[name]
    try:
        act = act(tmp)
    except Exception:  # noqa: BLE001
        return Outcome(name, "could not make the case: " + traceback.format_exc().strip().splitlines()[-1], 0, 0, True)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current size
        measured = True
    except OSError:
        measured = False  # the high-water mark then holds the process's whole past: no peak to report
    before, start, crashed = _rss("VmRSS"), time.monotonic(), False
    try:
        line = act() or "ok: no error"
    except LabError as e:
        line = f"error: {e}"
    except Exception:  # noqa: BLE001 - any other exception is what this bench looks for
        line, crashed = traceback.format_exc().strip().splitlines()[-1], True
    peak = max(0.0, _rss("VmHWM") - before) if measured else float("nan")
    return Outcome(name, line, time.monotonic() - start, peak, crashed)


def main():
    rows = []
    cache = os.environ.get("VAELAB_CACHE")
    for name in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            out = run(name, Path(tmp))
        if cache is None:
            os.environ.pop("VAELAB_CACHE", None)
        rows.append(out)
        print(f"{out.seconds:7.2f} s {out.peak_mb:8.1f} MB  {name}: {out.line}", flush=True)
    table = ["| case | how it ended | seconds | peak MB |", "| --- | --- | ---: | ---: |"]
    table += [f"| {r.name} | {'TRACEBACK ' if r.traceback else ''}{r.line.replace('|', '/')} | {r.seconds:.2f} | "
              f"{r.peak_mb:.0f} |" for r in rows]
    out = ROOT / "experiments" / "results" / "hostile_cases.md"
    out.write_text("Written by `python bench/hostile.py` (peak: VmHWM above the size before the case).\n\n"
                   + "\n".join(table) + "\n")
    print(f"wrote {out}")
    return 1 if any(r.traceback for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
