"""Collapse diagnostics, one file each: pure functions (model, data, **options) -> a result
dataclass, registered by name so the CLI and the dashboard find them. A new file with @register is
all it takes.

A diagnostic with a cheap batch-level form also registers it as `live`: a function of the encoder's
q(z|x) on a fixed held-out batch and the prior, returning a dict of numbers. The training engine runs
every live diagnostic every N steps (see Trainer.live_every).

Options a diagnostic may take, passed by the runner when its signature names them: `objective`
(the objective the model was trained with), `step` (the training step), `progress` (show a bar).
"""
import importlib
import inspect
import pkgutil

from ..evaluate import eval_split, seeded
from ..objectives import build
from ..registry import Registry

DIAGNOSTICS = Registry("diagnostic")
LIVE = Registry("live diagnostic")


def register(name: str, live=None):
    """Decorator: put a diagnostic in DIAGNOSTICS, and its batch-level form live(q, prior) -> dict in LIVE."""
    if live is not None:
        LIVE.register(name)(live)
    return DIAGNOSTICS.register(name)


def held_out(model, data, n: int, seed: int = 0):
    """The first n test images and labels on the model's device, binarized with a fixed seed."""
    device = model.prior_loc.device
    with seeded(device, seed):
        x, y = eval_split(data, n)
    return x.to(device), y.to(device)


def sampling(device, seed: int = 0):
    """A fixed random stream for a diagnostic's own draws of z, apart from the one that binarized
    the held-out images (seeded with `seed`), so the two are not the same numbers reused."""
    return seeded(device, seed + 1)


def objective_or_elbo(objective, model):
    """The objective a diagnostic was given, or the plain ELBO, whose posterior is the encoder's q."""
    return objective if objective is not None else build("vae", model=model)


def run(name: str, model, data, objective=None, step: int = 0, progress: bool = False, **options):
    """Run the named diagnostic, handing it the objective, step and progress flag if it takes them."""
    fn = DIAGNOSTICS.get(name)
    takes = inspect.signature(fn).parameters
    extras = {"objective": objective, "step": step, "progress": progress}
    return fn(model, data, **{k: v for k, v in extras.items() if k in takes}, **options)


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["DIAGNOSTICS", "LIVE", "held_out", "objective_or_elbo", "register", "run", "sampling"]
