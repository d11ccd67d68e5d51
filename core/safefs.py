"""Reading files a user names, on a server other people share: regular files only, sizes and counts
checked before (and while) they are read, paths kept inside the roots the operator allows.

    open_regular(path, max_bytes)   a file object, or DataError: a FIFO, device, socket or /proc file is
                                    refused before it can block or stream forever
    read_regular(path, max_bytes)   its bytes, at most max_bytes
    Budget                          a time and entry budget a walk or read checks as it goes, and whether
                                    the one who asked is still there (a closed browser tab stops its walk)
    walk(folder, budget)            the regular files below a folder, in order, without following linked
                                    folders, within the budget
    within(text, roots)             what a user typed, resolved (links too) inside one of the roots, or None:
                                    "not there" and "not allowed" look the same from outside
"""
from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import limits, settings
from .errors import DataError

SYSTEM = (Path("/proc"), Path("/sys"), Path("/dev"))  # never a dataset, and reading them may never end


def is_system(path: Path) -> bool:
    """Whether a path lies in /proc, /sys or /dev, as written or once its links are resolved (/proc/self/root
    resolves to /, and is refused all the same)."""
    path = Path(os.path.abspath(path))
    try:
        real = path.resolve()
    except (OSError, RuntimeError):
        real = path
    return any(p == s or p.is_relative_to(s) for s in SYSTEM for p in (path, real))


def open_regular(path, max_bytes: int | None = None, label: str | None = None):
    """The file opened for reading in binary, if it is a regular file of at most max_bytes. Opened without
    blocking and checked on the open descriptor, so a FIFO put in its place after a check still cannot hang."""
    label = label or str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise DataError(f"{label}: no such file") from None
    except OSError as e:
        raise DataError(f"{label}: cannot be opened ({e.strerror or e})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or is_system(Path(path)):
            raise DataError(f"{label}: not a regular file")
        if max_bytes is not None and info.st_size > max_bytes:
            raise DataError(f"{label}: {_size(info.st_size)} is more than the {_size(max_bytes)} such a file may be")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path, max_bytes: int, label: str | None = None) -> bytes:
    """A regular file's bytes, refused before reading when it is larger than max_bytes (and never more
    than max_bytes read, should it grow meanwhile)."""
    with open_regular(path, max_bytes, label) as f:
        blob = f.read(max_bytes + 1)
    if len(blob) > max_bytes:
        raise DataError(f"{label or path}: grew past {_size(max_bytes)} while it was read")
    return blob


def _size(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n:,} bytes"


@dataclass
class Budget:
    """What one read of a user's files may cost: seconds, entries looked at, and whether whoever asked is
    still there (alive(): False stops the work at its next check)."""
    seconds: float = field(default_factory=lambda: limits.maximum("walk_seconds"))
    entries: int = field(default_factory=lambda: limits.maximum("walk"))
    alive: Callable[[], bool] | None = None
    inside: Callable[[Path], bool] | None = None  # where a link may lead (the dashboard: its allowed roots)
    label: str = "the files"
    start: float = field(default_factory=time.monotonic)
    seen: int = 0

    def tick(self, n: int = 1):
        self.seen += n
        if self.seen > self.entries:
            raise DataError(f"{self.label}: more than {self.entries:,} files and folders to look through; "
                            f"give a smaller folder, or an .npz")
        if time.monotonic() - self.start > self.seconds:
            raise DataError(f"{self.label}: reading took more than {self.seconds:.0f} s; give a smaller folder, or an .npz")
        if self.alive is not None and not self.alive():
            raise DataError(f"{self.label}: stopped, the page that asked for it was closed")


def walk(folder: Path, budget: Budget, depth: int = 8) -> list[Path]:
    """The regular files below folder (sorted, hidden ones left out), looking through at most the budget's
    entries. A link is followed where it leads somewhere the budget allows (budget.inside) and outside the
    system's folders; a folder is entered once (links cannot make a cycle)."""
    found, seen = [], set()

    def allowed(entry) -> bool:
        if not entry.is_symlink():
            return True
        target = Path(os.path.realpath(entry.path))
        return not is_system(target) and (budget.inside is None or budget.inside(target))

    def visit(d: Path, level: int):
        real = os.path.realpath(d)
        if real in seen:
            return
        seen.add(real)
        try:
            with os.scandir(d) as entries:
                for entry in entries:
                    budget.tick()
                    if entry.name.startswith(".") or not allowed(entry):
                        continue
                    if entry.is_dir(follow_symlinks=True):
                        if level < depth:
                            visit(Path(entry.path), level + 1)
                    elif _regular(entry):
                        found.append(Path(entry.path))
        except OSError:
            return  # a folder that is not there, or that we may not read, holds nothing for us

    visit(folder, 0)
    return sorted(found)


def _regular(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file(follow_symlinks=True) and stat.S_ISREG(entry.stat(follow_symlinks=True).st_mode)
    except OSError:
        return False


def subfolders(folder: Path, budget: Budget) -> list[Path]:
    """The folder's own sub-folders (not hidden; a linked one where the budget lets a link lead), sorted."""
    found = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                budget.tick()
                if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=True):
                    continue
                target = Path(os.path.realpath(entry.path))
                if not entry.is_symlink() or (not is_system(target) and (budget.inside is None or budget.inside(target))):
                    found.append(Path(entry.path))
    except OSError:
        return []
    return sorted(found)


def roots_from_env(which: str = "data_roots") -> list[Path]:
    """The folders the operator lets users read datasets from: $VAELAB_DATA_ROOTS, separated by os.pathsep
    (none by default: the dashboard's server-path field is off); which="watch_roots": the run folders
    the dashboard may watch ($VAELAB_WATCH_ROOTS). Resolved; a root that is not there is left out."""
    roots = []
    for root in getattr(settings.get(), which):
        try:
            roots.append(root.resolve(strict=True))
        except (OSError, RuntimeError):
            continue  # a root that is not there allows nothing
    return roots


def within(text: str, roots: list[Path], excluded: list[Path] = ()) -> Path | None:
    """The path typed, resolved with its links, if it lies inside one of the roots and inside none of the
    excluded folders (say, other people's uploads) nor the system's; a relative path is looked for in
    each root. None for "not there" as for "not allowed", so the answer tells nothing about other paths."""
    if not text or "\x00" in text or len(text) > 4096:
        return None
    typed = Path(text).expanduser()
    for candidate in ([typed] if typed.is_absolute() else [r / typed for r in roots]):
        if is_system(candidate):
            continue
        try:
            real = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if (any(real.is_relative_to(r) for r in roots) and not is_system(real)
                and not any(real.is_relative_to(e) for e in excluded)):
            return real
    return None
