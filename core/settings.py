"""The operator's settings: every VAELAB_* environment variable, read and parsed in this one place.

    from core import settings
    settings.get().offline          # True for VAELAB_OFFLINE=1 / true / yes, False for 0 / false / no / unset

Each entry point (the CLI, the dashboard, a training process) reads them when it starts (`get()` raises
ConfigError with one line for a value that cannot be read); a module deeper down asks `get()` too, so a
setting means the same everywhere. Nothing else reads os.environ for a VAELAB_ variable.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

from .errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent  # the project's folder: shipped checkpoints, runs/, sweeps/
TRUE, FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")
WATCH_ROOT = Path("~/vaelab-runs").expanduser()  # where core.monitor writes a run folder unless told


@dataclass(frozen=True)
class Settings:
    data: Path | None          # VAELAB_DATA: folder with the dataset files (then ~/.cache/torchvision)
    offline: bool              # VAELAB_OFFLINE: never try to download
    data_roots: tuple          # VAELAB_DATA_ROOTS: folders the dashboard's users may read their own images from
    watch_roots: tuple         # VAELAB_WATCH_ROOTS: folders whose run folders (core.monitor) the dashboard watches
                               # and opens, importing the model code each names (default ~/vaelab-runs; none: off)
    cache: Path                # VAELAB_CACHE: unpacked uploads and cached datasets of users' own (~/.cache/vaelab)
    checkpoints: Path          # VAELAB_CHECKPOINTS: the checkpoints the dashboard lists (the shipped ones)
    runs: Path                 # VAELAB_RUNS: where the dashboard's runs checkpoint as they train
    sweeps: Path               # VAELAB_SWEEPS: sweep folders the Sweeps page lists beside the shipped ones
    max_memory_mb: int | None  # VAELAB_MAX_MEMORY_MB: memory one run may take (default: core.limits')
    max_runs: int | None       # VAELAB_MAX_RUNS: training processes at once (default: one per core)
    grace: float | None        # VAELAB_GRACE: seconds a closed tab keeps its runs before they are saved and
                               # ended (default: core.pool's)
    training_nice: int | None  # VAELAB_TRAINING_NICE: how far below the server's a training process's priority
                               # is, 0 to 19 (default: core.pool's; 0: the same)
    save_every: str | None     # VAELAB_SAVE_EVERY: how often a dashboard run checkpoints (default: core.pool's)
    password: str              # VAELAB_PASSWORD: the dashboard asks for it when set
    compile_backend: str       # VAELAB_COMPILE_BACKEND: torch.compile's backend ("eager" tests the plumbing)


def _flag(name: str, text: str) -> bool:
    text = text.strip().lower()
    if text not in TRUE + FALSE:
        raise ConfigError(f"{name}={text!r}: say 1 or 0 (true or false)")
    return text in TRUE


def _positive(name: str, text: str, default, kind=int):
    if not text.strip():
        return default
    try:
        value = kind(text)
    except ValueError:
        value = 0
    if not value > 0:
        raise ConfigError(f"{name}={text!r}: give a number > 0")
    return value


def _nice(name: str, text: str):
    if not text.strip():
        return None
    if not text.strip().isascii() or not text.strip().isdigit() or int(text) > 19:
        raise ConfigError(f"{name}={text!r}: give a whole number from 0 (the server's priority) to 19 (the lowest)")
    return int(text)


def get(environ=None) -> Settings:
    """The settings as the environment gives them now."""
    env = os.environ if environ is None else environ
    text = {f.name: env.get(f"VAELAB_{f.name.upper()}", "") for f in fields(Settings)}
    return Settings(
        data=Path(text["data"]).expanduser() if text["data"] else None,
        offline=_flag("VAELAB_OFFLINE", text["offline"]),
        data_roots=tuple(Path(p).expanduser() for p in text["data_roots"].split(os.pathsep) if p.strip()),
        watch_roots=() if text["watch_roots"].strip().lower() == "none" else
        tuple(Path(p).expanduser() for p in (text["watch_roots"] or str(WATCH_ROOT)).split(os.pathsep) if p.strip()),
        cache=Path(text["cache"] or "~/.cache/vaelab").expanduser(),
        checkpoints=Path(text["checkpoints"] or ROOT / "checkpoints"),
        runs=Path(text["runs"] or ROOT / "runs"),
        sweeps=Path(text["sweeps"] or ROOT / "sweeps"),
        max_memory_mb=_positive("VAELAB_MAX_MEMORY_MB", text["max_memory_mb"], None),
        max_runs=_positive("VAELAB_MAX_RUNS", text["max_runs"], None),
        grace=_positive("VAELAB_GRACE", text["grace"], None, float),
        training_nice=_nice("VAELAB_TRAINING_NICE", text["training_nice"]),
        save_every=text["save_every"] or None,
        password=text["password"],
        compile_backend=text["compile_backend"] or "inductor",
    )
