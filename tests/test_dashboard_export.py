"""The Train page with your own images, and its Export: the command, the script, TensorBoard and MLflow."""
import io
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, session_runs, train
from core import checkpoint, recipe, weights
from dashboard.views.train import OWN
from test_user_data import shapes

pytestmark = pytest.mark.slow  # the Train page's runs train in processes; the exports run the CLI and TensorBoard


def test_the_train_page_trains_on_a_folder_of_your_images(app, tmp_path, monkeypatch):
    folder = shapes(tmp_path / "my pictures", n=10)
    monkeypatch.setenv("VAELAB_DATA_ROOTS", str(tmp_path))
    app.sidebar.selectbox(key="dataset").set_value(OWN).run()
    assert not app.sidebar.toggle(key="binarize").value  # your pixels are taken as they are, by default
    app.sidebar.number_input(key="own-size").set_value(0)
    app.sidebar.text_input(key="own-path").set_value(str(folder)).run()
    assert not app.exception and not app.error
    assert any("20 images of 1x12x12 (2 held out), 2 classes; bernoulli likelihood" in c.value for c in app.sidebar.caption)
    t = train(app, 60)["vae"]
    assert t.config.data.name == str(folder.resolve()) and t.data.info.shape == (1, 12, 12)
    assert t.state == "recorded" and t.step_count == 60
    command = next(c.value for c in app.get("code") if "vaelab train" in c.value)
    assert "--dataset '" + str(folder.resolve()) + "'" in command and "--steps 60" in command


def test_a_bad_path_is_one_message_and_starts_nothing(app, tmp_path, monkeypatch):
    monkeypatch.setenv("VAELAB_DATA_ROOTS", str(tmp_path))
    app.sidebar.selectbox(key="dataset").set_value(OWN).run()
    app.sidebar.text_input(key="own-path").set_value(str(tmp_path / "nowhere")).run()
    assert not app.exception and app.sidebar.error[0].value == (
        f"{tmp_path / 'nowhere'}: not found, or not in a folder this server lets you read")
    app.sidebar.button[0].click().run()
    assert not app.exception and not session_runs(app)


def test_export_offers_tensorboard_and_mlflow_as_downloads_that_hold_the_run(app, tmp_path):
    """A shared server writes nothing into a folder a user names: Export offers zips. What the zips hold is
    the run, read back with TensorBoard's and MLflow's own readers."""
    import zipfile
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from core import track

    t = train(app, 100)["vae"]
    assert not any(w.key and w.key.startswith("track-dir") for w in app.get("text_input"))
    names = [b.proto.label for b in app.get("download_button")]
    assert "TensorBoard (.zip)" in names and "MLflow (.zip)" in names
    for kind in ("tensorboard", "mlflow"):
        with zipfile.ZipFile(io.BytesIO(track.archive(t.snapshot(), t.data, "run", kind))) as z:
            z.extractall(tmp_path / "unzipped")
    events = EventAccumulator(str(tmp_path / "unzipped" / "tensorboard" / "run"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")][-1] == 100
    assert [e.value for e in events.Scalars("heldout/au")] == [r["au"] for r in t.live]
    client = MlflowClient(f"sqlite:///{tmp_path / 'unzipped' / 'mlflow' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("vaelab").experiment_id])
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 100


def test_the_script_exported_from_the_page_trains_the_pages_run_again(app, tmp_path):
    """A run trained on the page (in a child process, with the threads the pool gave it) becomes a script
    that, with as many torch threads, logs the same losses and ends at the same weights."""
    t = train(app, 80)["vae"]
    (tmp_path / "again.py").write_text(recipe.script(t.snapshot(), "again"))
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(t.threads)}
    done = subprocess.run([sys.executable, "again.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    page = checkpoint.read_sidecar(checkpoint.paths(t.path)[1])
    again = checkpoint.read_sidecar(tmp_path / "checkpoints" / "again-again.json")
    assert [r["loss"] for r in again["history"]] == [r["loss"] for r in page["history"]]
    # the page's checkpoint also holds the optimizer's state, so compare the model's tensors, not the files
    mine, theirs = (weights.state_tensors(b.network, b.objective) for b in
                    (checkpoint.load(t.path), checkpoint.load(tmp_path / "checkpoints" / "again-again")))
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
