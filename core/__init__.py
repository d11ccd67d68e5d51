"""VAE Lab core: datasets, models, objectives, the training engine, checkpoints. No UI here."""
from .version import __version__  # noqa: F401


def __getattr__(name: str):
    # `core.show(model_or_run)` for a notebook (core/notebook.py), imported on first use: plotly and pandas
    # are no cost to the commands that never show anything.
    if name == "show":
        from .notebook import show
        return show
    raise AttributeError(f"module 'core' has no attribute {name!r}")
