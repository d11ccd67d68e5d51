"""Checkpoints: safetensors weights plus a JSON sidecar, written atomically, never unpickled.

    NAME.safetensors   tensors, "model.*" and "objective.*" (core.weights)
    NAME.json          format, run config, dataset, metrics history, versions, sha256 of the weights

Each file goes to a temporary name in the same folder and is renamed into place, so a crash mid-write
leaves the old checkpoint whole. The sidecar's sha256 of the weights ties the pair together: a
truncated, swapped or tampered weights file is refused by name, before any tensor is read.
Saving takes a model value (core.bundle.Bundle) and loading gives one back, identified by that sha256.
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import safetensors
import torch

from . import __version__, weights as weights_io
from .bundle import Bundle, Ref
from .config import RunConfig
from .data import DataInfo
from .errors import CheckpointError, LabError

FORMAT = "vaelab-checkpoint"
FORMAT_VERSION = 1


def paths(path) -> tuple[Path, Path]:
    """'runs/a', 'runs/a.json' or 'runs/a.safetensors' -> the weights and sidecar paths."""
    p = Path(path)
    if p.suffix in (".json", ".safetensors"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def save(path, bundle: Bundle, **extra) -> Path:
    """Write a model value: its weights, config, data, history and live rows, and any extra sidecar fields
    (say, the command that trained it). Returns the sidecar path."""
    tensors = weights_io.state_tensors(bundle.network, bundle.objective)
    bad = weights_io.non_finite(tensors)
    if bad:
        raise CheckpointError(f"refusing to save {path}: non-finite values in {', '.join(bad[:3])}")
    blob = weights_io.to_bytes(tensors)
    config = bundle.config
    sidecar = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": config.to_dict() | {"settings": bundle.objective.settings()},
        "data": {"spec": asdict(config.data), "info": asdict(bundle.data_info) if bundle.data_info else {},
                 "n_train": bundle.n_train},
        "run_id": bundle.ref.id,
        "step": bundle.step,
        "history": rounded(list(bundle.history)),
        "live": rounded(list(bundle.live)),
    } | extra
    sidecar |= {
        "weights_sha256": weights_io.sha256(blob),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {"vaelab": __version__, "torch": torch.__version__, "python": platform.python_version(),
                     "safetensors": getattr(safetensors, "__version__", "?")},
    }
    weights, meta = paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    # Weights first: if we die between the renames, the old sidecar's checksum refuses the new weights.
    _write_atomic(weights, blob)
    _write_atomic(meta, _dump(sidecar))
    return meta


def annotate(path, **fields) -> Path:
    """Add fields (say, precomputed diagnostics) to a checkpoint's sidecar, rewritten atomically; the
    weights and their checksum are untouched. Returns the sidecar path."""
    load(path)  # refuse to annotate a broken checkpoint
    meta_path = paths(path)[1]
    meta = json.loads(meta_path.read_bytes()) | fields
    _write_atomic(meta_path, _dump(meta))
    return meta_path


def rounded(value, digits: int = 5):
    """Logged numbers to `digits` significant digits: a step's loss needs no 17, and a run of thousands
    of steps (each with its KL per dimension) stays small on disk."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v, digits) for v in value]
    return value


def _dump(meta: dict) -> bytes:
    # One line per top-level field: readable with `head`, yet thousands of history rows stay compact.
    fields = [f" {json.dumps(k)}: {json.dumps(v, allow_nan=False, separators=(',', ':'))}" for k, v in meta.items()]
    return ("{\n" + ",\n".join(fields) + "\n}\n").encode()


def _write_atomic(path: Path, blob: bytes):
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path, device: str | torch.device = "cpu") -> Bundle:
    """Read a checkpoint; any problem is a CheckpointError that names the file and the problem."""
    weights, meta_path = paths(path)
    try:
        meta = json.loads(meta_path.read_bytes())
    except FileNotFoundError:
        raise CheckpointError(f"{meta_path}: no such checkpoint sidecar") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{meta_path}: not valid JSON, the sidecar is truncated or corrupt ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path}: not a VAE Lab checkpoint sidecar")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{meta_path}: checkpoint format {meta.get('format_version')!r}; "
                              f"this VAE Lab reads format {FORMAT_VERSION}")
    try:
        blob = weights.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{weights}: cannot read the weights ({e.strerror or e})") from None
    sha = weights_io.sha256(blob)
    if sha != meta.get("weights_sha256"):
        raise CheckpointError(f"{weights}: does not match the checksum in {meta_path.name}; "
                              f"the file is truncated, tampered with, or from an interrupted save")
    try:
        tensors = weights_io.from_bytes(blob)
    except Exception as e:  # safetensors raises its own error types for a malformed header
        raise CheckpointError(f"{weights}: not a valid safetensors file ({e})") from None
    try:
        config = RunConfig.from_dict(meta["config"])
        network, objective = weights_io.build_from(config, tensors)
        data = meta.get("data", {})
        info = data.get("info") or None
        info = DataInfo(**{**info, "shape": tuple(info["shape"])}) if info else None
        step = int(meta.get("step", 0))
    except (LabError, KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{meta_path}: the weights do not fit the model the sidecar describes ({e})") from None
    if weights_io.non_finite(tensors):
        raise CheckpointError(f"{weights}: holds NaN or inf values")
    return Bundle(network.to(device).eval(), objective.to(device), config, Ref(sha, step), info,
                  data.get("n_train"), meta.get("history", []), meta.get("live", []), meta)
