"""Which steps of a run keep their weights: dense early, sparse later, within a disk budget.

A run keeps its weights at steps 0, 10, 20, 50, 100, 200 and 500 (what the first minutes of training
look like changes fastest) and at every `every` steps after. When the kept snapshots would outgrow the
run's budget, `every` doubles and the steps off the coarser grid are dropped; a budget too small even for
the early steps drops those from step 10 up, keeping step 0 (the initial weights) and the later steps. The count is bounded, so a run
of a million steps costs no more disk than its budget.

The snapshots travel in the checkpoint's own safetensors file, as "snapshot.STEP.model.*" and
"snapshot.STEP.objective.*" beside the latest weights (core.checkpoint), so they are written atomically
with it and covered by its checksum. The latest step is the checkpoint's own weights, never a copy.

A kept step is stored as float16, half the bytes of float32 (`compact`), from the moment it is kept: the
budget counts those bytes, a saved checkpoint writes them as they are, and a resumed run keeps exactly the
tensors the uninterrupted one would have. Loading a kept step widens it back to float32 (`widen`), so the
model it gives is an ordinary float32 one; a file whose kept steps are float32 (written before) loads as it
did. The latest weights, the ones the recorded metrics were measured on, stay float32.
"""
from __future__ import annotations

import torch

EARLY = (0, 10, 20, 50, 100, 200, 500)
EVERY = 100          # the regular grid after the early steps, before any doubling
BUDGET_MB = 16.0     # per run: 38 snapshots of the MNIST MLP (0.42 MB each, stored as float16)
PREFIX = "snapshot."
# float16 rather than bfloat16: both halve the bytes, but float16 keeps 10 bits of mantissa to bfloat16's 7
# (a relative error of at most 2**-11 against 2**-8), and the weights are small (the shipped ones within
# +-1.3), far inside float16's range. A tensor with a value past that range (65,504) stays float32.
STORED = torch.float16


def limit(budget_mb: float, snapshot_bytes: int) -> int:
    """How many snapshots of this size fit the budget (0: none)."""
    return int(budget_mb * 2**20 // max(snapshot_bytes, 1)) if budget_mb > 0 else 0


def due(step: int, every: int) -> bool:
    return step in EARLY or step % every == 0


def thin(steps: list[int], every: int, most: int) -> tuple[list[int], int]:
    """(the steps to keep, the grid they are on) so that at most `most` remain."""
    kept = sorted(steps)
    while len(kept) > most:
        coarser = [s for s in kept if s in EARLY or s % (2 * every) == 0]
        if len(coarser) < len(kept) and len(coarser) >= 2:
            kept, every = coarser, 2 * every
            continue
        if len(kept) <= 2 or most < 2:
            return kept[:most], every
        del kept[1]  # only the early steps are left to thin: a small budget spends itself on the span, not the start
    return kept, every


def compact(tensors: dict) -> dict:
    """A step's tensors as they are kept: each float32 tensor as float16 (rounded to nearest), unless a
    value lies past float16's finite range, which would become inf; other dtypes as they are."""
    return {k: _stored(v) for k, v in tensors.items()}


def _stored(t: torch.Tensor) -> torch.Tensor:
    if t.dtype != torch.float32 or (t.numel() and not t.abs().max() <= torch.finfo(STORED).max):
        return t
    return t.to(STORED)


def widen(tensors: dict) -> dict:
    """A kept step's tensors as a model takes them: float16 and bfloat16 ones back to float32 (exactly:
    every float16 is a float32)."""
    return {k: v.float() if v.dtype in (torch.float16, torch.bfloat16) else v for k, v in tensors.items()}


def nbytes(tensors: dict) -> int:
    """The bytes a step's tensors take in memory and, give or take the file's header, on disk."""
    return sum(t.numel() * t.element_size() for t in tensors.values())


def pack(snapshots: dict[int, dict]) -> dict:
    """{step: {name: tensor}} -> the flat tensors of a safetensors file."""
    return {f"{PREFIX}{step}.{name}": t for step, tensors in snapshots.items() for name, t in tensors.items()}


def unpack(tensors: dict) -> dict[int, dict]:
    """The flat tensors of a checkpoint file -> {step: {name: tensor}} of its snapshots; a key that names
    no step is left out (loading that step then says it has no weights)."""
    found: dict[int, dict] = {}
    for key, value in tensors.items():
        step, _, name = key[len(PREFIX):].partition(".")
        if key.startswith(PREFIX) and step.isdigit() and name:
            found.setdefault(int(step), {})[name] = value
    return found


def steps(meta: dict) -> list[int]:
    """The steps a checkpoint's sidecar says it can show: its kept snapshots and its own (latest) step."""
    return sorted({*(meta.get("snapshots") or {}).get("steps", []), int(meta.get("step", 0))})


def nearest(steps: list[int], step: int) -> int:
    """The kept step closest to `step` (a link's step that this run did not keep)."""
    return min(steps, key=lambda s: (abs(s - step), s))
