"""Datasets from the user's own files: a folder of images or an .npz, and uploads of either.

    a folder     torchvision's ImageFolder layout (one sub-folder per class, the class is its name), or a
                 flat folder of images without labels
    an .npz      "x": N x H x W, N x H x W x C or N x C x H x W, bytes (0..255) or floats in [0, 1];
                 "y" (optional): N integer labels
    an upload    a .zip of either layout, or an .npz, unpacked into the data cache (never elsewhere)

Images are resized to `size` x `size` when it is given (otherwise they must all be one size), made grey or
RGB, and split into train and test with a fixed seed, so a path names the same dataset every time. The
likelihood that suits the pixels is Bernoulli for grey images that are mostly pure black or white (like
MNIST), Gaussian otherwise.
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from .errors import DataError

COLORS = ("auto", "grey", "rgb")
TEST_FRACTION = 0.1            # held-out share of the images, chosen with SPLIT_SEED
SPLIT_SEED = 0
UPLOAD_LIMIT = 200 * 2**20     # bytes of an uploaded file (Streamlit's own default upload limit)
UNPACKED_LIMIT = 1 * 2**30     # bytes an archive may unpack to: a zip bomb stops here, not at a full disk
MAX_FILES = 200_000            # members of an archive, or images of a folder
BINARY_SHARE = 0.5             # grey images with at least this share of pixels at exactly 0 or 1 are "binary"


def cache_dir() -> Path:
    """Where uploads are unpacked: $VAELAB_CACHE, or ~/.cache/vaelab."""
    return Path(os.environ.get("VAELAB_CACHE") or "~/.cache/vaelab").expanduser()


def is_path(name: str) -> bool:
    """Whether a dataset name is a path to files rather than a built-in name."""
    return os.sep in name or "/" in name or name.endswith(".npz") or Path(name).expanduser().exists()


def likelihood_for(x) -> str:
    """Bernoulli for grey images whose pixels are mostly exactly 0 or 1 (ink on paper), else Gaussian."""
    if x.shape[1] != 1:
        return "gaussian"
    share = float(((x == 0) | (x == 1)).float().mean())
    return "bernoulli" if share >= BINARY_SHARE else "gaussian"


def split(n: int, where: str = "a dataset") -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices of n images: a fixed permutation, the last TEST_FRACTION (at least 1) held out."""
    if n < 2:
        raise DataError(f"{where}: a dataset needs at least 2 images (one to train on, one to test), it has {n}")
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    n_test = max(1, round(TEST_FRACTION * n))
    return order[n_test:], order[:n_test]  # shuffled, so the first test images are not all one class


# ---------------------------------------------------------------- reading

def read_npz(path: Path, size: int, color: str):
    """(images N x C x H x W float32 in [0, 1], labels or None) from an .npz with "x" and optional "y"."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "x" not in z:
                raise DataError(f"{path}: an .npz dataset needs an array named 'x' (it has: {', '.join(z.files) or 'none'})")
            x, y = z["x"], (z["y"] if "y" in z else None)
    except DataError:
        raise
    except Exception as e:  # zipfile.BadZipFile, ValueError (a pickled object array), OSError
        raise DataError(f"{path}: cannot be read as an .npz ({e})") from None
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        x = x.transpose(0, 3, 1, 2)  # N H W C -> N C H W
    if x.ndim != 4 or x.shape[1] not in (1, 3, 4):
        raise DataError(f"{path}: 'x' must be N x H x W, N x H x W x C or N x C x H x W with C 1, 3 or 4; "
                        f"it is {x.shape}")
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255
    elif np.issubdtype(x.dtype, np.floating) or x.dtype == bool:
        x = x.astype(np.float32)
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise DataError(f"{path}: float images must be finite and in [0, 1] (found {np.nanmin(x):.3g} .. "
                            f"{np.nanmax(x):.3g}); store bytes 0..255 or scale them")
    else:
        raise DataError(f"{path}: 'x' must hold bytes (uint8) or floats in [0, 1], not {x.dtype}")
    if y is not None:
        if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
            raise DataError(f"{path}: 'y' must be {len(x)} integer labels >= 0 (it is {y.dtype} {y.shape})")
    import torch
    return _shape(torch.from_numpy(x), size, color, str(path)), y


def _shape(x, size: int, color: str, where: str):
    """Images (N, C, H, W) in [0, 1] -> the asked-for channels and size."""
    import torch.nn.functional as F
    if x.shape[1] == 4:
        x = x[:, :3]  # drop alpha
    if color == "auto":
        color = "grey" if x.shape[1] == 1 else "rgb"
    if color == "grey" and x.shape[1] == 3:
        x = (x * x.new_tensor([0.299, 0.587, 0.114])[:, None, None]).sum(1, keepdim=True)  # ITU-R 601 luma, as PIL's "L"
    elif color == "rgb" and x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if size and x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    return x.contiguous()


def image_files(folder: Path) -> tuple[list[tuple[Path, int]], list[str]]:
    """[(file, class index)] and the class names: ImageFolder's layout when the folder has sub-folders of
    images, else every image in the folder itself with label -1."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, has_file_allowed_extension, make_dataset
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    subfolders = [d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")]
    if subfolders:
        classes, index = find_classes(str(folder))
        try:
            samples = make_dataset(str(folder), index, extensions=IMG_EXTENSIONS, allow_empty=True)
        except (FileNotFoundError, OSError) as e:
            raise DataError(f"{folder}: {e}") from None
        found = [(Path(p), c) for p, c in samples if not Path(p).name.startswith(".")]
        # A class folder with no image is kept as a class, so the labels keep their meaning; none at all is an error below.
    else:
        classes = []
        found = sorted((p, -1) for p in folder.iterdir()
                       if p.is_file() and not p.name.startswith(".") and has_file_allowed_extension(p.name, IMG_EXTENSIONS))
    if not found:
        raise DataError(f"{folder}: no images found (looked for {', '.join(IMG_EXTENSIONS)}"
                        + (" in its sub-folders" if subfolders else "") + ")")
    if len(found) > MAX_FILES:
        raise DataError(f"{folder}: {len(found):,} images is more than {MAX_FILES:,}; use an .npz")
    return found, classes


def read_folder(folder: Path, size: int, color: str, progress: bool = False):
    """(images N x C x H x W float32 in [0, 1], labels or None, class names) from a folder of images."""
    import torch
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.functional import pil_to_tensor
    from tqdm import tqdm

    found, classes = image_files(folder)
    mode = {"grey": "L", "rgb": "RGB"}.get(color)  # None: auto, each image as it is, all RGB if any has colour
    images, first_size = [], None
    for path, _ in tqdm(found, desc=f"reading {folder.name}", unit="image", disable=not progress, leave=False):
        try:
            with Image.open(path) as im:
                im.load()
                im = im.convert(mode or ("L" if im.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"))
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
            raise DataError(f"{path}: not a readable image ({e})") from None
        if size:
            im = im.resize((size, size), Image.Resampling.BILINEAR)
        elif first_size is None:
            first_size = (im.size, path)
        elif im.size != first_size[0]:
            raise DataError(f"{path} is {im.size[0]}x{im.size[1]} but {first_size[1]} is "
                            f"{first_size[0][0]}x{first_size[0][1]}; give an image size to resize them all")
        images.append(pil_to_tensor(im))
    if mode is None and any(t.shape[0] == 3 for t in images):
        images = [t.expand(3, -1, -1) for t in images]  # some colour images: all RGB
    x = torch.stack(images).float() / 255
    labels = np.array([c for _, c in found]) if classes else None
    return x, labels, classes


# ---------------------------------------------------------------- uploads

def unpack_upload(name: str, content: bytes) -> Path:
    """Store an uploaded .npz or .zip in the data cache, unpacking a zip there; returns the path to load.
    The same bytes give the same path, so a second upload of one file costs nothing. Nothing is written
    outside the cache: a member whose path leaves its folder (absolute, '..', a link) refuses the archive."""
    if len(content) > UPLOAD_LIMIT:
        raise DataError(f"{name}: {len(content) / 2**20:.0f} MiB is more than the {UPLOAD_LIMIT // 2**20} MiB an upload may be")
    digest = hashlib.sha256(content).hexdigest()[:16]
    root = cache_dir() / "uploads"
    root.mkdir(parents=True, exist_ok=True)
    suffix = PurePosixPath(name).suffix.lower()
    if suffix == ".npz":
        target = root / f"{digest}.npz"
        if not target.exists():
            _write_atomic(target, content)
        return target
    if suffix != ".zip":
        raise DataError(f"{name}: upload a .zip of images or an .npz, not {suffix or 'a file without an extension'}")
    target = root / digest
    if target.is_dir():
        return _top(target)
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))
        members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise DataError(f"{name}: not a readable zip archive ({e})") from None
    if len(members) > MAX_FILES:
        raise DataError(f"{name}: {len(members):,} files is more than {MAX_FILES:,}")
    if sum(m.file_size for m in members) > UNPACKED_LIMIT:
        raise DataError(f"{name}: unpacks to more than {UNPACKED_LIMIT // 2**30} GiB")
    for m in members:
        parts = PurePosixPath(m.filename.replace("\\", "/")).parts
        link = stat.S_ISLNK(m.external_attr >> 16)
        if m.filename.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]) or link:
            raise DataError(f"{name}: refusing the archive, its member {m.filename!r} "
                            f"{'is a link' if link else 'would be written outside its folder'}")
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=root))
    try:
        for m in members:
            if m.is_dir() or m.filename.startswith("__MACOSX/"):
                continue
            out = staging.joinpath(*PurePosixPath(m.filename.replace("\\", "/")).parts)
            if not out.resolve().is_relative_to(staging.resolve()):
                raise DataError(f"{name}: refusing the archive, its member {m.filename!r} would be written outside its folder")
            out.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(m) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 2**20)
        os.replace(staging, target)  # whole or not at all: a failed unpack leaves no half folder
    except (zipfile.BadZipFile, OSError, EOFError, DataError) as e:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(e, DataError):
            raise
        raise DataError(f"{name}: cannot be unpacked ({e})") from None
    return _top(target)


def _top(folder: Path) -> Path:
    """An archive of one folder (photos/...) loads from that folder; an .npz alone in it, from that file."""
    entries = [p for p in folder.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    if len(entries) == 1 and entries[0].is_dir():
        return _top(entries[0])
    if len(entries) == 1 and entries[0].suffix == ".npz":
        return entries[0]
    return folder


def _write_atomic(path: Path, content: bytes):
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(content)
    os.replace(tmp, path)
