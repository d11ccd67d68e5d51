"""The version of VAE Lab: in every checkpoint sidecar, and the package's (pyproject.toml reads it here)."""
__version__ = "0.1.0"
