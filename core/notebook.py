"""A model or a run in a notebook cell, as the dashboard's Compare page shows it: its row of numbers (−ELBO,
IWAE NLL, KL, active units, MI, the verdict, ...) and Plotly figures of its KL per dimension and, where it has
a run behind it, its loss curves, its KL per dimension over the steps, and its active units and MI.

    from core import show
    show("checkpoints/mnist-vae")          # a checkpoint, measured on its own dataset
    show("~/vaelab-runs/my-run")           # a run folder of core.monitor, on its held-out examples
    show(monitor)                          # a Monitor while its loop trains
    show(model, x)                         # your own module (core.protocol) on examples of yours

In Jupyter the result displays itself (the table, then the figures); `.table` and `.figures` hold them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from . import checkpoint, figures, monitor
from . import data as datasets
from .bundle import Bundle, as_bundle
from .data import Dataset
from .errors import ConfigError
from .report import COMPARE, compare_row, run_all


@dataclass
class Shown:
    name: str
    table: pd.DataFrame                              # the Compare page's row, one model
    results: dict                                    # every diagnostic's result (or why it was skipped)
    figures: dict = field(default_factory=dict)      # name -> plotly Figure

    def _ipython_display_(self):
        from IPython.display import display
        display(self.table)
        for fig in self.figures.values():
            display(fig)


def show(model_or_run, data: Dataset | torch.Tensor | None = None, names=COMPARE, options: dict | None = None,
         name: str | None = None) -> Shown:
    """The Compare page's view of one model: a checkpoint's path, a run folder, a core.monitor.Monitor, a model
    value (core.bundle.Bundle) or a module, with the data to measure it on where it has none of its own (a
    dataset, or a tensor of held-out examples)."""
    bundle, data, label = _resolve(model_or_run, data)
    name = name or label
    module = getattr(bundle.network, "module", bundle.network)  # a user's module inside core.protocol's wrapper
    training = module.training
    module.eval()  # measured as evaluated (dropout off, batch norm's running statistics), then put back
    try:
        results = run_all(bundle, data, names, {"iwae": {"k": 100}} | (options or {}))
    finally:
        module.train(training)
    table = pd.DataFrame([compare_row(results)], index=[name])
    shown = {}
    kl = results.get("kl")
    if kl is not None and hasattr(kl, "per_dim"):
        shown["kl"] = figures.kl_compare({name: kl.per_dim})
    if bundle.history:
        shown["loss"] = figures.race_curves({name: bundle.history})
    if any(r.get("kl_per_dim") for r in bundle.live):
        shown["kl_over_steps"] = figures.kl_heatmap(bundle.live)
        shown["units_and_mi"] = figures.units_and_mi(bundle.live, bundle.latent_dim)
    return Shown(name, table, results, shown)


def _resolve(thing, data) -> tuple[Bundle, Dataset, str]:
    if isinstance(thing, monitor.Monitor):
        return thing.bundle, thing.data, thing.out.name
    if isinstance(thing, (str, os.PathLike)):
        path = Path(thing).expanduser()
        if (path / f"{monitor.RUN}.json").is_file():
            bundle, held = monitor.load_run(path)
            return bundle, _data(data, bundle) if data is not None else held, path.name
        bundle = checkpoint.load(path)
        return bundle, _data(data, bundle), checkpoint.paths(path)[1].with_suffix("").name
    if isinstance(thing, Bundle):
        return thing, _data(data, thing), thing.config.objective
    if isinstance(thing, torch.nn.Module):
        if hasattr(thing, "cfg") and hasattr(thing, "mean_image"):  # the lab's own network
            bundle = as_bundle(thing)
            return bundle, _data(data, bundle), bundle.config.objective
        if not isinstance(data, torch.Tensor):
            raise ConfigError("show(model, x): give your module a tensor of held-out examples to be measured on")
        from .bundle import Ref
        from .config import RunConfig
        from .objectives import build
        from .protocol import UserVAE
        held = monitor.held_out_data(data.detach().cpu(), type(thing).__name__)
        training = thing.training
        try:
            network = UserVAE(thing.eval(), data[:4], type(thing).__name__)
        finally:
            thing.train(training)
        config = RunConfig(data=held.spec, model=network.cfg)
        return Bundle(network, build("vae"), config, Ref("shown", 0), held.info, None, [], [], {}), held, type(thing).__name__
    raise ConfigError(f"show() takes a checkpoint path, a run folder, a Monitor, a Bundle or a module, not a "
                      f"{type(thing).__name__}")


def _data(data, bundle: Bundle) -> Dataset:
    """The data to measure a model on: the one given (a tensor: held-out examples), else its own dataset."""
    if isinstance(data, Dataset):
        return data
    if isinstance(data, torch.Tensor):
        return monitor.held_out_data(data.detach().cpu(), "examples")
    return datasets.load(bundle.config.data)
