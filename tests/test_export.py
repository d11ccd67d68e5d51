"""A run taken elsewhere: TensorBoard event files and an MLflow store hold its numbers (read back with their
own readers), and the exported command and script train the same run again, to the same weights."""
import json
import os
import shlex
import subprocess
import sys

import pytest

from conftest import ROOT, small_config
from core import checkpoint, recipe
from core.data import DataSpec
from core.engine import Trainer

pytestmark = pytest.mark.slow  # CLI runs in processes, written to TensorBoard and MLflow

ENV = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def python(*args, cwd):
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """A short CLI run written to TensorBoard, MLflow and Weights & Biases (offline) as it trained."""
    folder = tmp_path_factory.mktemp("tracked")
    python("-m", "core", "train", "--dataset", "digits", "--binarize", "dynamic", "--hidden", "32", "--latent", "3",
           "--steps", "120", "--live-every", "40", "--save-every", "0", "--out", str(folder), "--name", "run",
           "--tensorboard", str(folder / "tb"), "--mlflow", str(folder / "mlruns"), "--wandb", str(folder / "wb"),
           cwd=ROOT)
    return folder, json.loads((folder / "run.json").read_text())


def test_tensorboard_holds_the_runs_scalars_and_pictures(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    folder, meta = tracked
    events = EventAccumulator(str(folder / "tb" / "run"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [r["step"] for r in meta["history"]]
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in meta["history"]], rel=1e-4)
    assert [e.value for e in events.Scalars("heldout/au")] == [r["au"] for r in meta["live"]]
    assert [e.value for e in events.Scalars("heldout/kl_z2")] == pytest.approx([r["kl_per_dim"][2] for r in meta["live"]], rel=1e-4)
    assert [e.step for e in events.Images("kl_per_dim")] == [40, 80, 120]  # the heatmap at each live row
    assert {"reconstructions", "samples"} <= set(events.Tags()["images"])
    assert events.Images("samples")[-1].step == 120


def test_mlflow_holds_the_same_numbers(tracked):
    from mlflow.tracking import MlflowClient
    folder, meta = tracked
    client = MlflowClient(f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("vaelab").experiment_id])
    assert run.info.run_name == "run" and run.info.status == "FINISHED"
    assert run.data.params["objective"] == "vae" and run.data.params["model.latent_dim"] == "3"
    kl = sorted(client.get_metric_history(run.info.run_id, "train/kl"), key=lambda m: m.step)
    assert [m.value for m in kl] == pytest.approx([r["kl"] for r in meta["history"]], rel=1e-4)
    mi = sorted(client.get_metric_history(run.info.run_id, "heldout/mi"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in mi] == [(r["step"], pytest.approx(r["mi"], rel=1e-4)) for r in meta["live"]]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "images")}
    assert any("reconstructions" in p for p in artifacts) and any("kl_per_dim" in p for p in artifacts)


def wandb_history(run_file) -> list[dict]:
    """The history records of an offline W&B run file, read without W&B's reader (its Go core): a 7-byte header,
    then LevelDB's log format (32 KB blocks of records with a 7-byte header: CRC, length, type: whole, first,
    middle or last piece), each record a wandb Record protobuf."""
    import struct
    from wandb.proto import wandb_internal_pb2 as pb
    blob, pos, records, piece = run_file.read_bytes(), 7, [], b""
    while pos + 7 <= len(blob):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", blob[pos:pos + 7])
        data, pos = blob[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 1:
            records.append(data)
        elif kind in (2, 3):
            piece = (piece if kind == 3 else b"") + data
        elif kind == 4:
            records.append(piece + data)
    rows = []
    for data in records:
        record = pb.Record()
        record.ParseFromString(data)
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item})
    return rows


def test_weights_and_biases_offline_holds_the_same_numbers(tracked):
    """Written with no account and no network: the run file holds each step's terms and each live row."""
    folder, meta = tracked
    (run_file,) = (folder / "wb" / "wandb").glob("offline-run-*/run-*.wandb")
    rows = {r["_step"]: r for r in wandb_history(run_file)}
    assert [s for s in sorted(rows) if "train/loss" in rows[s]] == [r["step"] for r in meta["history"]]
    assert [rows[r["step"]]["train/kl"] for r in meta["history"]] == pytest.approx([r["kl"] for r in meta["history"]], rel=1e-4)
    assert [rows[r["step"]]["heldout/mi"] for r in meta["live"]] == pytest.approx([r["mi"] for r in meta["live"]], rel=1e-4)
    assert all("kl_per_dim/sha256" in rows[r["step"]] for r in meta["live"])  # the heatmap at each live row
    assert any("samples/sha256" in r for r in rows.values())


def test_the_exported_script_replays_the_run_with_its_changes_to_the_same_weights(tmp_path):
    config = small_config(data=DataSpec("digits", binarize="dynamic"), objective="beta-vae", settings={"beta": 2.0},
                          seed=7, batch_size=32)
    trainer = Trainer(config, live_every=25)
    trainer.step(30)
    trainer.set_beta(0.5)      # as a slider would, mid-run
    trainer.step(20)
    trainer.set_lr(3e-4)
    trainer.step(25)
    original = checkpoint.read_sidecar(trainer.save(tmp_path / "orig"))
    bundle = checkpoint.load(tmp_path / "orig")
    assert recipe.changes(bundle) == {31: {"beta": 0.5}, 51: {"lr": 3e-4}}
    (tmp_path / "again.py").write_text(recipe.script(bundle, "again"))
    out = python("again.py", cwd=tmp_path).stdout
    assert "step     75" in out
    again = checkpoint.read_sidecar(tmp_path / "checkpoints" / "again-again.json")
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(again["history"]) == drop(original["history"])  # every logged loss, exactly
    assert again["weights_sha256"] == original["weights_sha256"] and again["live"] == original["live"]


def test_the_exported_command_trains_the_same_weights(tmp_path):
    config = small_config(data=DataSpec("digits", binarize="dynamic"), objective="free-bits",
                          seed=2, batch_size=64, lr=2e-3)
    trainer = Trainer(config, live_every=0)
    trainer.step(40)
    original = checkpoint.read_sidecar(trainer.save(tmp_path / "orig"))
    words = shlex.split(recipe.command(checkpoint.load(tmp_path / "orig")))
    assert words[:2] == ["vaelab", "train"] and "--live-every" in words and "--lr" in words
    python("-m", "core", *words[1:], "--out", str(tmp_path), "--name", "again", "--save-every", "0", "--offline", cwd=ROOT)
    again = checkpoint.read_sidecar(tmp_path / "again.json")
    assert again["weights_sha256"] == original["weights_sha256"]
    assert [r["loss"] for r in again["history"]] == [r["loss"] for r in original["history"]]


def test_a_cli_runs_script_pins_the_torch_threads_it_trained_with(tracked):
    """A CPU run's numbers depend on the thread count (1 against 2 threads part at step 8 on MNIST), so the
    script repeats the count the run recorded."""
    folder, meta = tracked
    assert meta["threads"] >= 1
    text = recipe.script(checkpoint.load(folder / "run"), "run")
    assert f"torch.set_num_threads({meta['threads']})" in text and text.startswith('"""Train run again')
