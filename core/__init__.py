"""VAE Lab core: datasets, models, objectives, the training engine, checkpoints. No UI here."""
__version__ = "0.1.0"
