"""Errors a user can cause and fix. The CLI and the dashboard print these as one line."""


class LabError(Exception):
    """Base class: the message alone must tell the user what went wrong and what to do."""


class DataError(LabError):
    """A dataset is missing, corrupt or incompatible with the options asked for."""


class CheckpointError(LabError):
    """A checkpoint is missing, truncated, tampered with or not a VAE Lab checkpoint."""


class ConfigError(LabError, ValueError):
    """A setting is out of range: latent size 0, a negative beta, a NaN learning rate, ..."""
