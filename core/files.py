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
import math
import os
import re
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from . import limits, safefs, settings
from .errors import DataError

COLORS = ("auto", "grey", "rgb")
TEST_FRACTION = 0.1            # held-out share of the images, chosen with SPLIT_SEED
SPLIT_SEED = 0
UPLOAD_LIMIT = 200 * 2**20     # bytes of an uploaded file (Streamlit's own default upload limit)
UNPACKED_LIMIT = 1 * 2**30     # bytes an archive may unpack to: a zip bomb stops here, not at a full disk
NPZ_LIMIT = 8 * UPLOAD_LIMIT   # bytes of an .npz on disk (its arrays are measured from their headers too)
BINARY_SHARE = 0.5             # grey images with at least this share of pixels at exactly 0 or 1 are "binary"


def cache_dir() -> Path:
    """Where uploads are unpacked: $VAELAB_CACHE, or ~/.cache/vaelab."""
    return settings.get().cache


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

def npz_headers(path: Path, label: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """{array name: (shape, dtype)} of an .npz, read from each member's .npy header: nothing is decompressed,
    so a 500 KB file of zeros that would unpack to gigabytes is measured before a byte of it is."""
    with safefs.open_regular(path, NPZ_LIMIT, label) as f:
        if f.read(4) != b"PK\x03\x04":
            raise DataError(f"{label}: not an .npz (a zip of .npy arrays, as numpy.savez writes)")
        f.seek(0)
        try:
            with zipfile.ZipFile(f) as z:
                found, members = {}, z.infolist()
                if len(members) > 64:
                    raise DataError(f"{label}: {len(members):,} arrays; a dataset .npz holds x and y")
                for member in members:
                    # numpy reads a member named "x" before "x.npy": anything but .npy arrays would be read
                    # unmeasured, so it is refused.
                    if not member.filename.endswith(".npy") or member.filename[:-4] in found:
                        raise DataError(f"{label}: holds {member.filename!r}, which is not an .npy array; "
                                        f"save it with numpy.savez")
                    with z.open(member) as npy:
                        version = np.lib.format.read_magic(npy)
                        read = {(1, 0): np.lib.format.read_array_header_1_0,
                                (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                        if read is None:
                            raise ValueError(f"unknown .npy version {version}")
                        shape, _, dtype = read(npy)
                    found[member.filename[:-4]] = (tuple(shape), dtype)
                return found
        except DataError:
            raise
        except Exception as e:  # BadZipFile, OSError, ValueError, EOFError; RuntimeError for an encrypted zip
            raise DataError(f"{label}: not a readable .npz ({e})") from None


PIXEL_TYPES = ("u1", "u2", "f2", "f4", "f8", "b1")  # what x may hold: bytes, 16-bit, floats, booleans


def read_npz(path: Path, size: int, color: str, label: str | None = None):
    """(images N x C x H x W float32 in [0, 1], labels or None) from an .npz with "x" and optional "y".
    The arrays' shapes are checked against the pixel budget from their headers before any is read."""
    label = label or str(path)
    headers = npz_headers(path, label)
    if "x" not in headers:
        raise DataError(f"{label}: an .npz dataset needs an array named 'x' (it has: {', '.join(headers) or 'none'})")
    shape, dtype = headers["x"]
    if dtype.hasobject or "y" in headers and headers["y"][1].hasobject:
        raise DataError(f"{label}: holds Python objects, which are never unpickled here; store numbers")
    if f"{dtype.kind}{dtype.itemsize}" not in PIXEL_TYPES or dtype.fields or dtype.subdtype:
        raise DataError(f"{label}: 'x' must hold bytes (uint8), 16-bit values (uint16) or floats in [0, 1], not {dtype}")
    if "y" in headers and (headers["y"][1].kind not in "iu" or headers["y"][1].fields or headers["y"][1].subdtype):
        raise DataError(f"{label}: 'y' must hold integer labels, not {headers['y'][1]}")
    if len(shape) not in (3, 4):
        raise DataError(f"{label}: 'x' must be N x H x W, N x H x W x C or N x C x H x W with C 1, 3 or 4; it is {shape}")
    # Read as stored, then made float32: a float64 array costs twice its values.
    stored = math.prod(shape) * max(dtype.itemsize, 4) // 4
    out = shape[0] * (size * size * 3 if size else math.prod(shape[1:]))
    check_values(max(stored, out), label, f"{shape[0]:,} images of {'x'.join(map(str, shape[1:]))}")
    if "y" in headers and math.prod(headers["y"][0]) > limits.maximum("values"):
        raise DataError(f"{label}: 'y' holds {math.prod(headers['y'][0]):,} values")
    try:
        with safefs.open_regular(path, NPZ_LIMIT, label) as f, np.load(f, allow_pickle=False) as z:
            x, y = z["x"], (z["y"] if "y" in z else None)
    except Exception as e:  # zipfile.BadZipFile, ValueError, OSError: the file changed or lies about itself
        raise DataError(f"{label}: cannot be read as an .npz ({e})") from None
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        x = x.transpose(0, 3, 1, 2)  # N H W C -> N C H W
    if x.ndim != 4 or x.shape[1] not in (1, 3, 4):
        raise DataError(f"{label}: 'x' must be N x H x W, N x H x W x C or N x C x H x W with C 1, 3 or 4; "
                        f"it is {x.shape}")
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255
    elif x.dtype == np.uint16:
        x = x.astype(np.float32) / 65535  # 16-bit images: scaled, not clipped
    elif np.issubdtype(x.dtype, np.floating) or x.dtype == bool:
        x = x.astype(np.float32)
        if x.size and (not np.isfinite(x).all() or x.min() < 0 or x.max() > 1):
            raise DataError(f"{label}: float images must be finite and in [0, 1] (found {np.nanmin(x):.3g} .. "
                            f"{np.nanmax(x):.3g}); store bytes 0..255 or scale them")
    else:
        raise DataError(f"{label}: 'x' must hold bytes (uint8), 16-bit values (uint16) or floats in [0, 1], not {x.dtype}")
    if y is not None:
        if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
            raise DataError(f"{label}: 'y' must be {len(x)} integer labels >= 0 (it is {y.dtype} {y.shape})")
    import torch
    return _shape(torch.from_numpy(x), size, color, label), y


def is_token_npz(path: Path, label: str | None = None) -> bool:
    """Whether an .npz's 'x' holds rows of whole numbers (N x T token ids, say), not images."""
    shape, dtype = npz_headers(path, label or str(path)).get("x", ((), np.dtype("f4")))
    return len(shape) == 2 and dtype.kind in "iu" and not dtype.fields and not dtype.subdtype


def read_tokens(path: Path, label: str | None = None):
    """(N x T int64 rows, labels or None) from an .npz whose 'x' holds whole numbers >= 0 (token ids): data
    that are not images, for a model of yours that scores them (core.protocol's log_likelihood)."""
    label = label or str(path)
    headers = npz_headers(path, label)
    shape, dtype = headers["x"]
    if dtype.itemsize > 8 or "y" in headers and (headers["y"][1].kind not in "iu" or headers["y"][1].hasobject):
        raise DataError(f"{label}: 'x' must hold whole numbers of at most 64 bits and 'y' integer labels")
    check_values(math.prod(shape) * 2, label, f"{shape[0]:,} rows of {shape[1]:,}")  # read, then made int64
    if "y" in headers and math.prod(headers["y"][0]) > limits.maximum("values"):
        raise DataError(f"{label}: 'y' holds {math.prod(headers['y'][0]):,} values")
    try:
        with safefs.open_regular(path, NPZ_LIMIT, label) as f, np.load(f, allow_pickle=False) as z:
            x, y = z["x"], (z["y"] if "y" in z else None)
    except Exception as e:  # the file changed or lies about itself
        raise DataError(f"{label}: cannot be read as an .npz ({e})") from None
    if x.size and (x.min() < 0 or x.max() >= 2**31):
        raise DataError(f"{label}: token ids must be whole numbers from 0 to 2**31 - 1 (found {x.min()} .. {x.max()})")
    if y is not None and (y.shape != (len(x),) or (len(y) and y.min() < 0)):
        raise DataError(f"{label}: 'y' must be {len(x)} integer labels >= 0 (it is {y.dtype} {y.shape})")
    import torch
    return torch.from_numpy(x.astype(np.int64)), y


def check_values(n: int, label: str, what: str):
    """Refuse a dataset whose pixels (count x channels x height x width, as float32) pass the budget."""
    budget = limits.maximum("values")
    if n > budget:
        raise DataError(f"{label}: {what} make {n:,} pixel values, more than the {budget:,} "
                        f"({budget * 4 / 2**30:.1f} GiB as float32) a dataset of your own may have; "
                        f"use fewer images or a smaller image size")


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


def image_files(folder: Path, budget: safefs.Budget | None = None,
                label: str | None = None) -> tuple[list[tuple[Path, int]], list[str]]:
    """[(file, class index)] and the class names: ImageFolder's layout when the folder has sub-folders of
    images, else every image in the folder itself with label -1. Walked within the budget (core.safefs.walk):
    regular files only, links followed only where the budget lets them lead, the count checked as it goes."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension
    label = label or str(folder)
    budget = budget or safefs.Budget(label=label)
    if not folder.is_dir() or safefs.is_system(folder):
        raise DataError(f"{label}: no such folder")
    subfolders = safefs.subfolders(folder, budget)
    classes = [d.name for d in subfolders]
    found = []
    for index, d in enumerate(subfolders) if subfolders else [(-1, folder)]:
        for p in safefs.walk(d, budget, depth=8 if subfolders else 0):
            if has_file_allowed_extension(p.name, IMG_EXTENSIONS):
                found.append((p, index))
                if len(found) > limits.maximum("images"):
                    raise DataError(f"{label}: more than {limits.maximum('images'):,} images; use an .npz")
    # A class folder with no image is kept as a class, so the labels keep their meaning; none at all is an error.
    if not found:
        raise DataError(f"{label}: no images found (looked for {', '.join(IMG_EXTENSIONS)}"
                        + (" in its sub-folders" if subfolders else "") + ")")
    return found, classes


SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def read_folder(folder: Path, size: int, color: str, progress: bool = False,
                budget: safefs.Budget | None = None, label: str | None = None):
    """(images N x C x H x W float32 in [0, 1], labels or None, class names) from a folder of images. The
    decoded pixels (count x size^2 x channels) are checked against the budget before they are allocated,
    and each image's size is read from its header before it is decoded."""
    import torch
    from PIL import Image, UnidentifiedImageError
    from tqdm import tqdm

    label = label or str(folder)
    budget = budget or safefs.Budget(label=label)
    found, classes = image_files(folder, budget, label)
    mode = {"grey": "L", "rgb": "RGB"}.get(color)  # None: auto, each image as it is, all RGB if any has colour
    channels = 1 if mode == "L" else 3
    if size:
        check_values(len(found) * channels * size * size, label, f"{len(found):,} images at {size}x{size}")
    x, first = None, None
    for i, (path, _) in enumerate(tqdm(found, desc=f"reading {folder.name}", unit="image", disable=not progress,
                                       leave=False)):
        budget.tick(0)
        shown = str(Path(label) / path.relative_to(folder))
        try:
            with safefs.open_regular(path, UPLOAD_LIMIT, shown) as f, Image.open(f) as im:
                if im.width * im.height > limits.maximum("image_pixels"):
                    raise DataError(f"{shown}: {im.width}x{im.height} pixels is more than the "
                                    f"{limits.maximum('image_pixels'):,} one image may have")
                im.load()
                pixels = _pixels(im, mode, size)
        except UnidentifiedImageError:
            raise DataError(f"{shown}: not a readable image (not a format Pillow knows, or damaged)") from None
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise DataError(f"{shown}: not a readable image ({e})") from None
        side = pixels.shape[-2:]
        if first is None:
            first = (side, shown)
            check_values(len(found) * channels * side[0] * side[1], label,
                         f"{len(found):,} images of {side[1]}x{side[0]}")
            x = torch.empty(len(found), pixels.shape[0], *side)  # float32 once, filled in place
        elif side != first[0]:
            raise DataError(f"{shown} is {side[1]}x{side[0]} but {first[1]} is "
                            f"{first[0][1]}x{first[0][0]}; give an image size to resize them all")
        if pixels.shape[0] > x.shape[1]:
            x = x.expand(-1, 3, -1, -1).clone()  # the first colour image: every image RGB (the budget allowed 3)
        x[i] = torch.from_numpy(pixels)  # a grey image fills every channel
    labels = np.array([c for _, c in found]) if classes else None
    return x, labels, classes


def _pixels(im, mode: str | None, size: int) -> np.ndarray:
    """One image as a C x H x W float32 array in [0, 1], in the asked-for mode (None: grey stays grey) and
    size. 16-bit images keep their 16 bits (scaled by 65,535), rather than being clipped to 8."""
    from PIL import Image
    if im.mode in SIXTEEN_BIT or im.mode == "F":
        scale = 65535.0 if im.mode in SIXTEEN_BIT else 1.0
        grey = Image.fromarray(np.asarray(im, dtype=np.float32) / scale, mode="F")
        if size:
            grey = grey.resize((size, size), Image.Resampling.BILINEAR)
        a = np.clip(np.asarray(grey, dtype=np.float32), 0, 1)[None]
        return np.repeat(a, 3, 0) if mode == "RGB" else a
    im = im.convert(mode or ("L" if im.mode in ("1", "L", "LA") else "RGB"))
    if size:
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    a = np.asarray(im, dtype=np.float32) / 255
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


# ---------------------------------------------------------------- uploads

def uploads_dir(owner: str = "") -> Path:
    """Where one session's uploads are unpacked (cache/uploads/OWNER); without an owner, the root of them all."""
    root = cache_dir() / "uploads"
    if owner and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", owner):
        raise DataError(f"not a session name: {owner!r}")
    return root / owner if owner else root


def unpack_upload(name: str, content: bytes, owner: str = "local") -> Path:
    """Store an uploaded .npz or .zip in its session's folder of the data cache, unpacking a zip there;
    returns the path to load. The same bytes give the same path, so a second upload of one file costs
    nothing. Nothing is written outside that folder: a member whose path leaves it (absolute, '..', a
    link) refuses the archive."""
    if len(content) > UPLOAD_LIMIT:
        raise DataError(f"{name}: {len(content) / 2**20:.0f} MiB is more than the {UPLOAD_LIMIT // 2**20} MiB an upload may be")
    digest = hashlib.sha256(content).hexdigest()[:16]
    root = uploads_dir(owner)
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
    if len(members) > limits.maximum("images"):
        raise DataError(f"{name}: {len(members):,} files is more than {limits.maximum('images'):,}")
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
    except Exception as e:  # BadZipFile, OSError, EOFError; RuntimeError (encrypted), NotImplementedError (a method)
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
