"""Take a run where you already work: TensorBoard event files, an MLflow tracking folder, Weights & Biases.

    tracker = Tracker("mnist-vae", config, tensorboard="tb", mlflow="mlruns", wandb="wandb-runs")
    tracker.log(history, live)      # as the run goes: rows not written yet
    tracker.finish(bundle, data)    # the model's pictures at its last step; closes the files

What each gets, under the same names:
    train/<term>         every logged step's loss, recon, kl, grad_norm, beta, lr, ... (the training batch)
    heldout/<name>       every live row: KL, active units, MI and its ceiling on the held-out batch
    heldout/kl_z<i>      that row's KL of dimension i
    kl_per_dim           the KL-per-dimension heatmap up to each live row, an image series
    reconstructions      test images over their reconstructions, at the last step
    samples              decodes of prior draws, at the last step

TensorBoard's files are written with torch.utils.tensorboard; `tensorboard --logdir DIR` shows them.
MLflow's folder holds an SQLite store and the artifacts beside it (MLflow's file store is retired):
`mlflow ui --backend-store-uri sqlite:///DIR/mlflow.db` shows them.
Weights & Biases runs offline: its files go to DIR/wandb/offline-run-*, with no account and no network;
`wandb sync DIR/wandb/offline-run-*` uploads one later, where there is a network and an account.
"""
from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import numpy as np
import torch

from .errors import LabError
from .pictures import image_grid, kl_heatmap_image

EXPERIMENT = "vaelab"
WANDB_LOCK = threading.Lock()
BATCH = 1000  # metrics per MLflow call: its limit


def scalars(history: list[dict], live: list[dict]):
    """(tag, value, step) of every number in the rows, in step order per tag; None (a NaN once) is left out."""
    for row in history:
        for key, value in row.items():
            if key not in ("step", "seconds", "kl_per_dim") and isinstance(value, (int, float)):
                yield f"train/{key}", float(value), int(row["step"])
    for row in live:
        for key, value in row.items():
            if key not in ("step", "kl_per_dim") and isinstance(value, (int, float)):
                yield f"heldout/{key}", float(value), int(row["step"])
        for i, value in enumerate(row.get("kl_per_dim") or []):
            if value is not None:
                yield f"heldout/kl_z{i}", float(value), int(row["step"])


def flat_params(config: dict, prefix: str = "") -> dict[str, str]:
    """A nested run config as MLflow params: data.name, model.latent_dim, settings.beta, ..."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out |= flat_params(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = str(value)[:500]
    return out


@torch.no_grad()
def pictures_of(bundle, data, n: int = 16) -> dict[str, np.ndarray]:
    """Test images over their reconstructions, and prior samples, as H x W x 3 uint8 pictures."""
    from .evaluate import eval_split
    from .explore import prior_samples
    from .rng import seeded

    with seeded(bundle.device, 0):
        x, y = eval_split(data, n)
        has_labels = bundle.network.cfg.n_classes > 0
        recon = bundle.reconstruct(x, y if has_labels else None)
    pairs = torch.cat([data.to_image(x), data.to_image(recon)])
    samples = data.to_image(prior_samples(bundle.network, n))

    def rgb(picture):
        return picture if picture.shape[-1] == 3 else np.repeat(picture, 3, axis=-1)
    return {"reconstructions": rgb(image_grid(pairs, nrow=n)), "samples": rgb(image_grid(samples, nrow=8))}


class Tracker:
    """Writes one run to TensorBoard and/or MLflow. Each log() writes the rows after the last step it wrote."""

    def __init__(self, name: str, config: dict, tensorboard: str | None = None, mlflow: str | None = None,
                 wandb: str | None = None):
        self.name, self.last_step, self.live_rows = name, -1, []
        self.tb = self.ml = self.wb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise LabError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
            self.tb = SummaryWriter(str(Path(tensorboard) / name))
            self.tb.add_text("config", f"```\n{json.dumps(config, indent=1)}\n```", 0)
        if mlflow:
            self.ml, self.run_id = self._start_mlflow(Path(mlflow), config)
        if wandb:
            self.wb = self._start_wandb(Path(wandb), config)

    def _start_wandb(self, folder: Path, config: dict):
        import os
        try:
            import wandb
        except ImportError:
            raise LabError("--wandb needs Weights & Biases: pip install wandb") from None
        os.environ.setdefault("WANDB_SILENT", "true")  # its banner and sync hints, once per run, on stderr
        folder.mkdir(parents=True, exist_ok=True)
        with WANDB_LOCK:  # one process may export several runs at once (the dashboard's sessions): each its own
            return wandb.init(project=EXPERIMENT, name=self.name, config=config, dir=str(folder), mode="offline",
                              reinit="create_new", settings=wandb.Settings(console="off", x_disable_stats=True))
    def _start_mlflow(self, folder: Path, config: dict):
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise LabError("--mlflow needs MLflow: pip install mlflow-skinny sqlalchemy alembic") from None
        for quiet in ("alembic", "mlflow"):
            logging.getLogger(quiet).setLevel(logging.WARNING)
        folder.mkdir(parents=True, exist_ok=True)
        client = MlflowClient(f"sqlite:///{folder.resolve() / 'mlflow.db'}")
        experiment = client.get_experiment_by_name(EXPERIMENT)
        experiment_id = (experiment.experiment_id if experiment else
                         client.create_experiment(EXPERIMENT, artifact_location=(folder.resolve() / "artifacts").as_uri()))
        run = client.create_run(experiment_id, run_name=self.name)
        from mlflow.entities import Param
        params = [Param(k, v) for k, v in flat_params(config).items()]
        for i in range(0, len(params), 100):
            client.log_batch(run.info.run_id, params=params[i:i + 100])
        return client, run.info.run_id

    def log(self, history: list[dict], live: list[dict]):
        new_history = [r for r in history if r["step"] > self.last_step]
        new_live = [r for r in live if r["step"] > self.last_step]
        if not new_history and not new_live:
            return
        points = list(scalars(new_history, new_live))
        if self.tb is not None:
            for tag, value, step in points:
                self.tb.add_scalar(tag, value, step)
        if self.ml is not None:
            from mlflow.entities import Metric
            metrics = [Metric(tag, value, 0, step) for tag, value, step in points]
            for i in range(0, len(metrics), BATCH):
                self.ml.log_batch(self.run_id, metrics=metrics[i:i + BATCH])
        pictures = {}
        for row in new_live:  # the heatmap as it stood at each live row
            self.live_rows.append(row)
            if row.get("kl_per_dim"):
                pictures[row["step"]] = kl_heatmap_image(self.live_rows)
                self._image("kl_per_dim", pictures[row["step"]], row["step"], wandb=False)
        if self.wb is not None:  # one call a step, in order: W&B drops a step logged after a later one
            import wandb
            by_step = {}
            for tag, value, step in points:
                by_step.setdefault(step, {})[tag] = value
            for step, picture in pictures.items():
                by_step.setdefault(step, {})["kl_per_dim"] = wandb.Image(picture)
            for step in sorted(by_step):
                self.wb.log(by_step[step], step=step)
        self.last_step = max(r["step"] for r in new_history + new_live)

    def _image(self, tag: str, picture: np.ndarray, step: int, wandb: bool = True):
        if self.wb is not None and wandb:
            import wandb as wb
            self.wb.log({tag: wb.Image(picture)}, step=max(step, self.last_step))
        if self.tb is not None:
            self.tb.add_image(tag, picture, step, dataformats="HWC")
        if self.ml is not None:
            from PIL import Image
            self.ml.log_image(self.run_id, Image.fromarray(picture), key=tag, step=step)

    def finish(self, bundle=None, data=None):
        """The last step's pictures (when given the model and its data), then close."""
        if bundle is not None and data is not None:
            for tag, picture in pictures_of(bundle, data).items():
                self._image(tag, picture, bundle.step)
        if self.tb is not None:
            self.tb.close()
        if self.ml is not None:
            self.ml.set_terminated(self.run_id)
        if self.wb is not None:
            self.wb.finish()


def export(bundle, data, name: str, tensorboard: str | None = None, mlflow: str | None = None,
           wandb: str | None = None) -> Tracker:
    """A finished model's whole record (its checkpoint's history and live rows, its pictures) written at once."""
    tracker = Tracker(name, bundle.config.to_dict() | {"settings": bundle.objective.settings()}, tensorboard, mlflow,
                      wandb)
    tracker.log(bundle.history, bundle.live)
    tracker.finish(bundle, data)
    return tracker


def archive(bundle, data, name: str, kind: str) -> bytes:
    """The same record as export(), written into a scratch folder and returned as a .zip: what a shared
    server offers as a download rather than writing into a folder of the user's choosing."""
    import shutil
    import tempfile
    if kind not in ("tensorboard", "mlflow", "wandb"):
        raise ValueError(f"kind must be tensorboard, mlflow or wandb, not {kind!r}")
    with tempfile.TemporaryDirectory(prefix="vaelab-export-") as scratch:
        folder = Path(scratch) / kind
        export(bundle, data, name, **{kind: str(folder)})
        return Path(shutil.make_archive(str(Path(scratch) / name), "zip", scratch, kind)).read_bytes()

