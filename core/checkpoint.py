"""Checkpoints: safetensors weights plus a JSON sidecar, written atomically, never unpickled.

    NAME.safetensors   tensors, "model.*" and "objective.*" (core.weights)
    NAME.json          format, run config, dataset, metrics history (thinned), versions, sha256 of the weights

Each file goes to a temporary name in the same folder and is renamed into place, so a crash mid-write
leaves the old checkpoint whole; while the pair is being replaced the old weights wait under
".NAME.previous.safetensors", and a sidecar whose weights were not replaced yet, or already were, reads
them there. A process killed at any moment (a periodic checkpoint, `kill -9`) leaves a checkpoint that
loads: the new one or the one before. The sidecar's sha256 of the weights ties the pair together: a
truncated, swapped or tampered weights file is refused by name, before any tensor is read.
Saving takes a model value (core.bundle.Bundle) and loading gives one back, identified by that sha256.

A resumable checkpoint also holds the run's training state (core.weights: the optimizer's tensors and
the random stream, "train.*", in the same safetensors file; the rest as the sidecar's "training"), so a
run resumed from it takes exactly the steps the uninterrupted run would have taken.

A checkpoint also keeps the run's weights at earlier steps (core.snapshots: dense early, sparse later,
within a disk budget, stored as float16), as "snapshot.STEP.*" tensors in the same file and a "snapshots"
field in the sidecar; `load(path, step=S)` gives the model at step S, `load_steps(path)` every kept step at
one read, each as float32.

The sidecar's history is thinned as it is saved (`thin_history`): every step up to 1,000, then a coarser
grid, with the rows any reader needs kept whole.

A sidecar is read as untrusted input: its size, nesting depth, every string's length and the types of
the fields we read are checked before anything is built from it.
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

from . import limits, safefs, snapshots as snapshots_io, weights as weights_io
from .version import __version__
from .bundle import Bundle, Ref
from .config import RunConfig
from .data import DataInfo
from .errors import CheckpointError, ConfigError, LabError

FORMAT = "vaelab-checkpoint"
FORMAT_VERSION = 1
MAX_SIDECAR_BYTES = limits.maximum("sidecar_bytes")
MAX_WEIGHTS_BYTES = limits.maximum("weights_bytes")
MAX_DEPTH = 16                   # our sidecars nest 5 deep
MAX_STRING = 100_000             # characters in any one string (the command line is the longest)
# The top-level fields that are read, and their types; other fields are kept as they are.
FIELDS = {"config": dict, "data": dict, "run_id": str, "step": int, "history": list, "live": list,
          "weights_sha256": str, "command": str, "training": dict, "parent": dict, "diagnostics": dict,
          "target_steps": int, "snapshots": dict}


def paths(path) -> tuple[Path, Path]:
    """'runs/a', 'runs/a.json' or 'runs/a.safetensors' -> the weights and sidecar paths."""
    p = Path(path)
    if p.suffix in (".json", ".safetensors"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def save(path, bundle: Bundle, training: tuple[dict, dict] | None = None,
         snapshots: tuple[dict, dict] | None = None, sync: bool = True, **extra) -> Path:
    """Write a model value: its weights, config, data, history and live rows, and any extra sidecar fields
    (say, the command that trained it). training: a run's (tensors, fields) to resume from
    (core.engine.Trainer.training_state); snapshots: its earlier steps' ({step: tensors}, fields)
    (core.hooks.KeptSteps.state); sync=False: renamed into place without waiting for the disk (still whole
    or not there after a crash of the process; a power cut may lose it). Returns the sidecar path."""
    tensors = weights_io.state_tensors(bundle.network, bundle.objective)
    if training is not None:
        tensors |= training[0]
        extra = {"training": training[1]} | extra
    if snapshots is not None:
        tensors |= snapshots_io.pack(snapshots[0])
        extra = {"snapshots": snapshots[1]} | extra
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
        "history": thin_history(rounded(list(bundle.history)), keep=_kept_rows(snapshots, extra)),
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
    for stale in (*weights.parent.glob(f".{weights.name}.*.tmp"), *meta.parent.glob(f".{meta.name}.*.tmp")):
        stale.unlink(missing_ok=True)  # left by a save that was killed; one process saves a run
    _settle(weights, meta)
    new_weights, new_meta = _write_temporary(weights, blob, sync), None
    try:
        new_meta = _write_temporary(meta, _dump(sidecar), sync)
        # The old weights step aside before the new take their place, and leave once the new sidecar
        # is in: a kill between any two of these renames leaves a sidecar whose weights can be found.
        previous = _previous(weights)
        if weights.exists():
            os.replace(weights, previous)
        os.replace(new_weights, weights)
        os.replace(new_meta, meta)
        previous.unlink(missing_ok=True)
    except BaseException:
        for tmp in (new_weights, new_meta):
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
        raise
    return meta


HISTORY_DENSE = 1_000   # every step's row up to here
HISTORY_DIGITS = 3      # after it, the steps written with at most 3 significant digits


def thin_history(rows: list[dict], keep=()) -> list[dict]:
    """The history rows a sidecar keeps. A row a step is 250 bytes, so a run of 100,000 steps would carry 25 MB
    of them, most never looked at: the curves are drawn smoothed, and what changes fast is the start. So it
    keeps every step up to HISTORY_DENSE, then the steps with at most HISTORY_DIGITS significant digits (every
    10th to 9,990, every 100th to 99,900: the same number of rows for each tenfold of steps), and always
    - the first and the last row (where the run started from, and where it is now: a resume checks it),
    - each row whose beta or learning rate differs from the row before, and that row before (a change made
      mid-run: core.recipe replays them from the history, and a chart draws the step),
    - the rows of the steps in `keep` (the kept weights' steps: a page shows that step's row).
    Rows are kept whole and in order, never averaged; thinning a thinned history changes nothing."""
    keep = set(keep)
    settings = [(row.get("beta"), row.get("lr")) for row in rows]
    last = len(rows) - 1
    return [row for i, row in enumerate(rows)
            if i in (0, last) or row["step"] <= HISTORY_DENSE or _round_step(row["step"]) or row["step"] in keep
            or settings[i] != settings[i - 1] or (i < last and settings[i + 1] != settings[i])]


def _round_step(step: int) -> bool:
    return step % 10 ** max(len(str(abs(step))) - HISTORY_DIGITS, 0) == 0


def _kept_rows(snapshots: tuple[dict, dict] | None, extra: dict) -> list[int]:
    """The steps whose history rows a save keeps whatever the grid: the kept weights' and the branch point."""
    steps = list((snapshots[1] if snapshots else {}).get("steps", []))
    parent = extra.get("parent")
    return steps + ([parent["step"]] if isinstance(parent, dict) and isinstance(parent.get("step"), int) else [])


def _settle(weights: Path, meta: Path):
    """After a save that was cut short between its renames, put back the pair the sidecar on disk names
    (its weights may be the ones waiting as .previous), so the next save never moves them away."""
    previous = _previous(weights)
    if not previous.exists():
        return
    try:
        wanted = json.loads(_read(meta, MAX_SIDECAR_BYTES)).get("weights_sha256")
    except (LabError, ValueError, RecursionError, AttributeError):
        wanted = None
    if weights.exists() and weights_io.sha256(_read(weights)) == wanted:
        previous.unlink()
    else:
        os.replace(previous, weights)


def _previous(weights: Path) -> Path:
    return weights.with_name(f".{weights.name[:-len('.safetensors')]}.previous.safetensors")


def unused_name(path: Path, taken) -> Path:
    """path, or path-2, path-3, ...: the first that taken(candidate) says holds nothing (a checkpoint or a run
    folder is never replaced unasked)."""
    for candidate in (path, *(path.with_name(f"{path.name}-{i}") for i in range(2, 10_000))):
        if not taken(candidate):
            return candidate
    raise LabError(f"{path.parent} holds {path.name}-2 to -9999 already; give another name, or overwrite it")


def annotate(path, check: bool = True, **fields) -> Path:
    """Add fields (say, precomputed diagnostics) to a checkpoint's sidecar, rewritten atomically; the
    weights and their checksum are untouched. Returns the sidecar path. check: load it first, to refuse a
    broken checkpoint (off for a user's model, whose network only its own code builds: the sidecar is still
    read and checked)."""
    if check:
        load(path)
    meta_path = paths(path)[1]
    meta = read_sidecar(meta_path) | fields
    write_atomic(meta_path, _dump(meta))
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


def _write_temporary(path: Path, blob: bytes, sync: bool = True) -> str:
    """The blob, on disk (synced, unless told), in a temporary file beside path; returns its name."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            if sync:
                os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def write_atomic(path: Path, blob: bytes):
    """blob at path, whole or not at all (a temporary file beside it, synced, renamed into place)."""
    os.replace(_write_temporary(path, blob), path)


def read(path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The checked sidecar and every tensor of a checkpoint (weights, and training state if it has one)."""
    weights, meta_path = paths(path)
    meta = read_sidecar(meta_path)
    blob = _read(weights) if weights.exists() or not _previous(weights).exists() else b""
    sha = weights_io.sha256(blob)
    if sha != meta.get("weights_sha256") and _previous(weights).exists():  # a save was cut short
        blob = _read(_previous(weights))
        sha = weights_io.sha256(blob)
    if sha != meta.get("weights_sha256"):
        raise CheckpointError(f"{weights}: does not match the checksum in {meta_path.name}; "
                              f"the file is truncated, tampered with, or from an interrupted save")
    try:
        tensors = weights_io.from_bytes(blob)
    except Exception as e:  # safetensors raises its own error types for a malformed header
        raise CheckpointError(f"{weights}: not a valid safetensors file ({e})") from None
    if weights_io.non_finite(tensors):
        raise CheckpointError(f"{weights}: holds NaN or inf values")
    return meta, tensors


def _read(path: Path, limit: int = MAX_WEIGHTS_BYTES) -> bytes:
    """A checkpoint file's bytes: a regular file only (a FIFO or a link to /dev/zero is refused before it is
    read), its size checked first."""
    try:
        return safefs.read_regular(path, limit)
    except LabError as e:
        raise CheckpointError(str(e)) from None


def read_sidecar(meta_path: Path) -> dict:
    """A sidecar parsed and checked: any problem is one CheckpointError naming the file."""
    if not meta_path.exists():
        raise CheckpointError(f"{meta_path}: no such checkpoint sidecar")
    try:
        meta = json.loads(_read(meta_path, MAX_SIDECAR_BYTES))
    except RecursionError:
        raise CheckpointError(f"{meta_path}: nested deeper than any sidecar ({MAX_DEPTH} levels at most)") from None
    except (OSError, ValueError) as e:  # JSONDecodeError, UnicodeDecodeError, an integer of 5,000 digits
        raise CheckpointError(f"{meta_path}: not valid JSON, the sidecar is truncated or corrupt ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path}: not a VAE Lab checkpoint sidecar")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{meta_path}: checkpoint format {meta.get('format_version')!r}; "
                              f"this VAE Lab reads format {FORMAT_VERSION}")
    problem = shape_problem(meta)
    if problem:
        raise CheckpointError(f"{meta_path}: {problem}")
    return meta


def _walk(meta: dict, where: bool) -> str | None:
    """The first too-deep or too-long value, named by its path when `where` (paths cost memory, so they
    are only built once a problem is known to be there)."""
    stack = [(meta, 1, "")]
    while stack:  # iterative: a hostile document must not exhaust the call stack here either
        value, depth, path = stack.pop()
        if depth > MAX_DEPTH:
            return f"nested deeper than any sidecar ({MAX_DEPTH} levels at most) at {path or 'the top'}"
        if isinstance(value, str) and len(value) > MAX_STRING:
            return f"field {path} is {len(value):,} characters long ({MAX_STRING:,} at most)"
        if isinstance(value, dict):
            stack.extend((v, depth + 1, (f"{path}.{k}" if path else str(k)) if where else "") for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, depth + 1, f"{path}[{i}]" if where else "") for i, v in enumerate(value))
    return None


def shape_problem(meta: dict) -> str | None:
    """What is wrong with a parsed sidecar's shape (depth, string sizes, field types, the rows), or None."""
    if _walk(meta, where=False):
        return _walk(meta, where=True)
    for name, kind in FIELDS.items():
        value = meta.get(name)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            return f"field {name!r} should be {kind.__name__}, not {type(value).__name__}"
    if (meta.get("step") or 0) < 0:
        return f"field 'step' is {meta['step']}"
    kept = (meta.get("snapshots") or {}).get("steps", [])
    if not isinstance(kept, list) or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s for s in kept):
        return "field 'snapshots.steps' should be a list of steps (whole numbers >= 0)"
    for name in ("history", "live"):
        rows = meta.get(name) or []
        if not all(isinstance(row, dict) for row in rows):
            return f"field {name!r} should be a list of rows (objects)"
        if not all(isinstance(row.get("step"), int) and not isinstance(row.get("step"), bool) for row in rows):
            return f"field {name!r} has a row without a whole-number 'step'"
    if not all(isinstance(row.get("loss"), (int, float)) for row in meta.get("history") or []):
        return "field 'history' has a row without a numeric 'loss'"
    return None


def load(path, device: str | torch.device = "cpu", step: int | None = None) -> Bundle:
    """Read a checkpoint (at one of its kept steps, else its latest); any problem is a CheckpointError that
    names the file and the problem."""
    meta, tensors = read(path)
    latest = int(meta.get("step", 0))
    if step is not None and step not in snapshots_io.steps(meta):
        raise CheckpointError(f"{paths(path)[1]}: no weights kept at step {step:,}; it keeps steps "
                              f"{', '.join(f'{s:,}' for s in snapshots_io.steps(meta))}")
    if step is None or step == latest:
        return _bundle(path, meta, tensors, latest, device)
    return _bundle(path, meta, snapshots_io.widen(snapshots_io.unpack(tensors).get(step, {})), step, device)


def load_steps(path, device: str | torch.device = "cpu") -> list[Bundle]:
    """The model at every kept step, oldest first, from one read of the file (each as float32)."""
    meta, tensors = read(path)
    kept, latest = snapshots_io.unpack(tensors), int(meta.get("step", 0))
    kept = {s: snapshots_io.widen(t) for s, t in kept.items()}
    return [_bundle(path, meta, tensors if s == latest else kept.get(s, {}), s, device) for s in snapshots_io.steps(meta)]


def _bundle(path, meta: dict, tensors: dict, step: int, device) -> Bundle:
    """The model value at `step`, built from that step's tensors. An earlier step's bundle has the history
    and live rows up to it, and none of the numbers measured on the latest weights (its diagnostics,
    evaluation and training state belong to another version)."""
    meta_path = paths(path)[1]
    latest = int(meta.get("step", 0))
    try:
        config = RunConfig.from_dict(meta["config"])
        if not tensors:
            raise ValueError(f"the file holds no tensors for step {step}")
        network, objective = weights_io.build_from(config, tensors)
        data = meta.get("data", {})
        info = data.get("info") or None
        info = DataInfo(**{**info, "shape": tuple(info["shape"]), "classes": tuple(info.get("classes", ()))}) if info else None
    except ConfigError as e:  # a setting out of range or past core.limits, found before anything is built
        raise CheckpointError(f"{meta_path}: the sidecar asks for a model this VAE Lab does not build: {e}") from None
    except (LabError, KeyError, TypeError, ValueError, RuntimeError, ArithmeticError) as e:
        raise CheckpointError(f"{meta_path}: the weights do not fit the model the sidecar describes ({e})") from None
    history, live = meta.get("history", []), meta.get("live", [])
    if step != latest:
        history = [row for row in history if row["step"] <= step]
        live = [row for row in live if row["step"] <= step]
        meta = {k: v for k, v in meta.items() if k not in ("diagnostics", "evaluation", "training")}
    return Bundle(network.to(device).eval(), objective.to(device), config, Ref(meta["weights_sha256"], step), info,
                  data.get("n_train"), history, live, meta)
