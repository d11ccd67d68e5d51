"""Objectives, one file each. Every module in this folder is imported here, so a new file that
uses @register is all it takes to add one: the engine, the CLI and the dashboard read OBJECTIVES."""
import importlib
import pkgutil

from ..posterior import as_event, draw, kl_per_dim
from .base import (OBJECTIVES, FlowObjective, Knob, Objective, Output, build, elbo_parts, log_weights, register,
                   sample_and_score, score_output, shared_terms)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["OBJECTIVES", "FlowObjective", "Knob", "Objective", "Output", "as_event", "build", "draw",
           "elbo_parts", "kl_per_dim", "log_weights", "register", "sample_and_score", "score_output",
           "shared_terms"]
