"""Random streams: seeded draws that leave every other stream as it was."""
from __future__ import annotations

import contextlib
import threading

import torch

# Held by whoever swaps torch's global random state: a trainer for each step (each owns a stream it
# swaps in), and every seeded draw below. Without it, seeding in one thread rewinds the stream of a
# trainer running in another. Re-entrant, so a trainer's step may take a seeded draw inside its own.
RNG_LOCK = threading.RLock()


def cuda_devices(device: torch.device) -> list[int]:
    return [device.index or 0] if device.type == "cuda" else []


@contextlib.contextmanager
def seeded(device: torch.device, seed: int):
    """Draw from a fixed seed without disturbing the global random stream, or any trainer's."""
    with RNG_LOCK, torch.random.fork_rng(devices=cuda_devices(device)):
        torch.manual_seed(seed)
        yield
