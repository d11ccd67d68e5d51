"""Collapse diagnostics, one file each: pure functions (model, data, **options) -> a result
dataclass, registered by name so the CLI and the dashboard find them. A new file with @register is
all it takes."""
import importlib
import pkgutil

from ..evaluate import eval_split, seeded
from ..registry import Registry

DIAGNOSTICS = Registry("diagnostic")


def register(name: str):
    return DIAGNOSTICS.register(name)


def held_out(model, data, n: int, seed: int = 0):
    """The first n test images and labels on the model's device, binarized with a fixed seed."""
    device = model.prior_loc.device
    with seeded(device, seed):
        x, y = eval_split(data, n)
    return x.to(device), y.to(device)


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["DIAGNOSTICS", "held_out", "register"]
