"""Collapse diagnostics, one file each: pure functions (model, x) -> a result dataclass, registered
by name so the CLI and the dashboard find them. A new file with @register is all it takes."""
import importlib
import pkgutil

from ..registry import Registry

DIAGNOSTICS = Registry("diagnostic")


def register(name: str):
    return DIAGNOSTICS.register(name)


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["DIAGNOSTICS", "register"]
