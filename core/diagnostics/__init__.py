"""Collapse diagnostics, one file each: pure functions (model, data, **options) -> a result
dataclass, registered by name so the CLI and the dashboard find them. A new file with @register is
all it takes.

`model` is a model value (core.bundle.Bundle), or a bare network, taken as trained with the plain ELBO.
Every diagnostic reads the model's own posterior, `bundle.posterior(x, y)` (core.posterior), so flows,
refinements and Laplace posteriors are measured as themselves, never through the encoder's raw q.

A diagnostic with a cheap batch-level form also registers it as `live`: a function of that posterior
on a fixed held-out batch, returning a dict of numbers. The training engine runs every live diagnostic
every N steps (see Trainer.live_every).

The one option a diagnostic may take from the runner, when its signature names it: `progress` (show a bar).
"""
import importlib
import inspect
import pkgutil

from ..bundle import as_bundle
from ..evaluate import eval_split
from ..registry import Registry
from ..rng import seeded

DIAGNOSTICS = Registry("diagnostic")
LIVE = Registry("live diagnostic")


def register(name: str, live=None):
    """Decorator: put a diagnostic in DIAGNOSTICS, and its batch-level form live(posterior) -> dict in LIVE."""
    if live is not None:
        LIVE.register(name)(live)
    return DIAGNOSTICS.register(name)


def held_out(bundle, data, n: int, seed: int = 0):
    """The first n test images and labels on the model's device, binarized with a fixed seed."""
    device = bundle.device
    with seeded(device, seed):
        x, y = eval_split(data, n)
    return x.to(device), y.to(device)


def sampling(device, seed: int = 0):
    """A fixed random stream for a diagnostic's own draws of z, apart from the one that binarized
    the held-out images (seeded with `seed`), so the two are not the same numbers reused."""
    return seeded(device, seed + 1)


def run(name: str, model, data, objective=None, progress: bool = False, **options):
    """Run the named diagnostic on a bundle (or a bare network with the objective it was trained with),
    handing it the progress flag if it takes one."""
    fn = DIAGNOSTICS.get(name)
    extras = {"progress": progress} if "progress" in inspect.signature(fn).parameters else {}
    return fn(as_bundle(model, objective), data, **extras, **options)


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["DIAGNOSTICS", "LIVE", "as_bundle", "held_out", "register", "run", "sampling"]
