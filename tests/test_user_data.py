"""Your own images as a dataset: folders, .npz files and uploads (core.files), made here as real files."""
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT
from test_cli import inline
from core import data, files
from core.errors import DataError


def shapes(folder: Path, n: int = 20, size: int = 12, classes=("circle", "square"), flat: bool = False) -> Path:
    """n binary PNGs per class of filled circles or squares at random places."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:size, :size]
    for c in classes:
        d = folder if flat else folder / c
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            r, (cy, cx) = rng.integers(2, size // 3), rng.integers(size // 3, 2 * size // 3, 2)
            inside = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) if c == "circle" else \
                ((abs(yy - cy) <= r) & (abs(xx - cx) <= r))
            Image.fromarray(np.where(inside, 255, 0).astype(np.uint8)).save(d / f"{c}-{i}.png")
    return folder


def test_an_image_folder_trains_and_every_diagnostic_runs_on_it(tmp_path):
    from core.engine import Trainer
    from core.report import Skipped, run_all
    from conftest import small_config

    folder = shapes(tmp_path / "shapes")
    ds = data.load(data.DataSpec(str(folder)))
    assert ds.info.shape == (1, 12, 12) and ds.info.n_classes == 2 and ds.info.likelihood == "bernoulli"
    assert ds.info.classes == ("circle", "square")
    assert len(ds.train_x) == 36 and len(ds.test_x) == 4
    assert ds.train_x.min() == 0 and ds.train_x.max() == 1
    # the labels are the sub-folders, sorted: every circle is class 0
    first = ds.test_x[ds.test_y == 0][0, 0]
    assert set(ds.train_y.tolist()) == {0, 1} and first.sum() > 0
    trainer = Trainer(small_config(data=ds.spec, batch_size=8), ds, live_every=5)
    rows = trainer.step(10)
    assert len(rows) == 10 and all(np.isfinite(r["loss"]) for r in rows)
    from core import checkpoint
    saved = checkpoint.load(trainer.save(tmp_path / "run"))
    assert saved.data_info == ds.info and saved.config.data.name == str(folder)  # names and all, back from the file
    results = run_all(saved, ds, options={"iwae": {"k": 8}, "gradient-variance": {"repeats": 3}})
    ran = {name for name, r in results.items() if not isinstance(r, Skipped)}
    assert {"kl", "active-units", "mutual-information", "iwae", "probe", "collapse"} <= ran


def test_the_split_is_fixed_and_the_same_path_loads_the_same_images(tmp_path):
    folder = shapes(tmp_path / "s")
    a = data.load(data.DataSpec(str(folder)))
    data._FILES.clear()
    b = data.load(data.DataSpec(str(folder)))
    assert a is not b and torch.equal(a.test_x, b.test_x) and torch.equal(a.train_y, b.train_y)


def test_a_flat_folder_has_no_labels_and_resizing_and_colour_apply(tmp_path):
    folder = shapes(tmp_path / "flat", n=5, flat=True)
    ds = data.load(data.DataSpec(str(folder), size=8, color="rgb"))
    assert ds.info.n_classes == 0 and (ds.train_y == -1).all()
    assert ds.info.shape == (3, 8, 8) and ds.info.likelihood == "gaussian"  # RGB pixels: Gaussian


def test_an_npz_in_any_layout_with_labels(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 10, 6, 3), dtype=np.uint8)  # N H W C
    np.savez(tmp_path / "rgb.npz", x=x, y=rng.integers(0, 4, 30))
    ds = data.load(data.DataSpec(str(tmp_path / "rgb.npz")))
    assert ds.info.shape == (3, 10, 6) and ds.info.n_classes == 4 and ds.info.likelihood == "gaussian"
    # the pixels are the file's, /255, in the fixed split's order
    train, test = files.split(30)
    assert torch.allclose(ds.test_x, torch.from_numpy(x[test].transpose(0, 3, 1, 2) / 255).float())
    grey = data.load(data.DataSpec(str(tmp_path / "rgb.npz"), color="grey", size=5))
    assert grey.info.shape == (1, 5, 5)


@pytest.mark.parametrize("make, says", [
    (lambda d: (d / "empty").mkdir(), "no images found"),
    (lambda d: (d / "x.npz").write_bytes(b"not a zip"), "not an .npz"),
    (lambda d: np.savez(d / "x.npz", images=np.zeros((3, 4, 4))), "needs an array named 'x'"),
    (lambda d: np.savez(d / "x.npz", x=np.full((3, 4, 4), 2.0)), "in [0, 1]"),
    (lambda d: np.savez(d / "x.npz", x=np.array([None] * 3, dtype=object)), "holds Python objects"),
    (lambda d: np.savez(d / "x.npz", x=np.zeros((3, 4, 4), np.uint8), y=np.array([0, 1])), "'y' must be 3 integer"),
    (lambda d: np.savez(d / "x.npz", x=np.zeros((1, 4, 4), np.uint8)), "at least 2 images"),
])
def test_bad_files_get_one_message_naming_the_file(tmp_path, make, says):
    make(tmp_path)
    target = tmp_path / ("empty" if says == "no images found" else "x.npz")
    with pytest.raises(DataError) as e:
        data.load(data.DataSpec(str(target)))
    assert says in str(e.value) and str(target) in str(e.value)


def test_mixed_sizes_and_a_corrupt_image_are_named(tmp_path):
    folder = shapes(tmp_path / "mixed", n=3, flat=True)
    Image.fromarray(np.zeros((7, 9), np.uint8)).save(folder / "odd.png")
    with pytest.raises(DataError, match=r"odd.png is 9x7 .* give an image size"):
        data.load(data.DataSpec(str(folder)))
    assert data.load(data.DataSpec(str(folder), size=12)).info.shape == (1, 12, 12)  # resized, it loads
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DataError, match=r"broken.png: not a readable image"):
        data.load(data.DataSpec(str(folder), size=12))


def zipped(entries: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, content in entries.items():
            if isinstance(content, zipfile.ZipInfo):
                z.writestr(content, b"/etc/passwd")
            else:
                z.writestr(name, content)
    return buf.getvalue()


def png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((6, 6), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_an_uploaded_zip_unpacks_into_the_cache_and_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("VAELAB_CACHE", str(tmp_path / "cache"))
    content = zipped({f"pics/{c}/{i}.png": png(255 * (c == "b")) for c in "ab" for i in range(3)})
    path = files.unpack_upload("pics.zip", content)
    assert path == tmp_path / "cache" / "uploads" / "local" / path.parent.name / "pics" and path.is_dir()
    assert files.unpack_upload("again.zip", content) == path  # the same bytes, the same place
    ds = data.load(data.DataSpec(str(path)))
    assert ds.info.n_classes == 2 and len(ds.train_x) + len(ds.test_x) == 6
    npz = io.BytesIO()
    np.savez(npz, x=np.zeros((4, 5, 5), np.uint8))
    assert data.load(data.DataSpec(str(files.unpack_upload("d.npz", npz.getvalue())))).info.shape == (1, 5, 5)


def test_an_upload_that_escapes_its_folder_or_is_too_large_is_refused_and_writes_nothing(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("VAELAB_CACHE", str(cache))
    link = zipfile.ZipInfo("pics/link.png")
    link.external_attr = (0o120777 << 16)  # a symbolic link
    for bad, says in [({"ok.png": png(0), "../../escaped.png": png(255)}, "outside its folder"),
                      ({"/abs/escaped.png": png(255)}, "outside its folder"),
                      ({"pics/a.png": png(0), "link": link}, "is a link")]:
        with pytest.raises(DataError, match=says):
            files.unpack_upload("evil.zip", zipped(bad))
    assert not list(tmp_path.rglob("escaped.png")) and not (tmp_path.parent / "escaped.png").exists()
    assert list((cache / "uploads" / "local").iterdir()) == []  # nothing half-unpacked left behind
    monkeypatch.setattr(files, "UPLOAD_LIMIT", 1000)
    with pytest.raises(DataError, match="more than the 0 MiB an upload may be"):
        files.unpack_upload("big.npz", b"0" * 1001)
    monkeypatch.setattr(files, "UPLOAD_LIMIT", 2**20)
    monkeypatch.setattr(files, "UNPACKED_LIMIT", 100)
    with pytest.raises(DataError, match="unpacks to more than"):
        files.unpack_upload("bomb.zip", zipped({"a.bin": b"\0" * 10_000}))
    with pytest.raises(DataError, match="not a readable zip"):
        files.unpack_upload("x.zip", b"PK garbage")
    with pytest.raises(DataError, match="upload a .zip of images or an .npz"):
        files.unpack_upload("x.exe", b"MZ")


def test_the_cli_trains_on_a_folder_and_names_the_checkpoint_after_it(tmp_path, capsys):
    folder = shapes(tmp_path / "my-shapes", n=6)
    done = subprocess.run([sys.executable, "-m", "core", "train", "--dataset", str(folder), "--steps", "5", "--hidden",
                           "16", "--latent", "2", "--out", str(tmp_path / "out"), "--save-every", "0"],
                          cwd=ROOT, env=os.environ | {"OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "my-shapes-vae-z2.json").exists()
    with pytest.raises(SystemExit) as exit_:  # argparse's own exit, in this process
        inline(capsys, "train", "--dataset", str(tmp_path / "nope"), "--steps", "5")
    assert exit_.value.code == 2 and capsys.readouterr().err.strip().endswith("nope: no such folder or file")
    with pytest.raises(SystemExit) as exit_:  # refused as the arguments are read (core.options)
        inline(capsys, "train", "--dataset", str(folder), "--steps", "5", "--image-size", "-3")
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and err.count("\n") == 0 and "--image-size: must be a whole number >= 0" in err
