import json
import os
import pickle
from dataclasses import replace

import pytest
import torch

from conftest import small_config
from core import checkpoint
from core.engine import Trainer
from core.errors import CheckpointError
from core.evaluate import evaluate


@pytest.fixture
def trained(digits):
    t = Trainer(small_config(objective="free-bits", settings={"free_bits": 0.25}), digits, live_every=10)
    t.step(20)
    return t


def test_round_trip_is_bit_exact(trained, digits, tmp_path):
    path = trained.save(tmp_path / "run")
    assert path == tmp_path / "run.json" and (tmp_path / "run.safetensors").exists()
    ck = checkpoint.load(tmp_path / "run.safetensors")
    saved = trained.model.state_dict()
    loaded = ck.network.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    assert ck.config == replace(trained.config, settings=trained.objective.settings())
    assert ck.objective.settings() == {"free_bits": 0.25, "beta": 1.0}
    assert ck.step == 20 and ck.history == checkpoint.rounded(trained.history)  # 5 significant digits
    assert [r["loss"] for r in ck.history] == pytest.approx([r["loss"] for r in trained.history], rel=1e-4)
    assert ck.live == checkpoint.rounded(trained.live) and [r["step"] for r in ck.live] == [10, 20]
    assert evaluate(ck, digits) == evaluate(trained.snapshot(), digits)
    assert ck.ref.id == json.loads(path.read_text())["weights_sha256"] and ck.ref.version == 20
    assert ck.n_train == len(digits.train_x) and ck.data_info == digits.info
    meta = json.loads(path.read_text())
    assert meta["format_version"] == checkpoint.FORMAT_VERSION and meta["versions"]["torch"] == torch.__version__
    assert meta["data"]["spec"]["name"] == "digits" and meta["data"]["info"]["shape"] == [1, 8, 8]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_beta_changed_mid_run_is_saved(trained, tmp_path):
    trained.set_beta(3.0)
    trained.save(tmp_path / "run")
    assert checkpoint.load(tmp_path / "run").objective.beta == 3.0


def test_truncated_weights_are_refused_by_name(trained, tmp_path):
    trained.save(tmp_path / "run")
    weights = tmp_path / "run.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"run\.safetensors: does not match the checksum.*truncated"):
        checkpoint.load(tmp_path / "run")


def test_tampered_weights_are_refused_even_with_a_matching_checksum(trained, tmp_path):
    trained.save(tmp_path / "run")
    weights, meta_path = checkpoint.paths(tmp_path / "run")
    blob = bytearray(weights.read_bytes())
    blob[0] ^= 0xFF  # break the header length; then forge the sidecar's checksum to match
    weights.write_bytes(bytes(blob))
    meta = json.loads(meta_path.read_text())
    import hashlib
    meta["weights_sha256"] = hashlib.sha256(bytes(blob)).hexdigest()
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        checkpoint.load(tmp_path / "run")


def test_truncated_or_foreign_sidecar_is_refused(trained, tmp_path):
    path = trained.save(tmp_path / "run")
    path.write_text(path.read_text()[:200])
    with pytest.raises(CheckpointError, match=r"run\.json: not valid JSON"):
        checkpoint.load(path)
    path.write_text(json.dumps({"hello": 1}))
    with pytest.raises(CheckpointError, match="not a VAE Lab checkpoint"):
        checkpoint.load(path)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        checkpoint.load(tmp_path / "missing")


def test_sidecar_describing_another_model_is_refused(trained, tmp_path):
    path = trained.save(tmp_path / "run")
    meta = json.loads(path.read_text())
    meta["config"]["model"]["latent_dim"] = 9
    path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not fit the model"):
        checkpoint.load(path)
    meta["config"]["model"]["hidden"] = [10**9, 10**9]  # would need exabytes if it were allocated
    path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not build: a layer width must be a whole number up to 16,384"):
        checkpoint.load(path)
    meta["config"]["model"]["hidden"] = "wide"
    path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not fit the model"):
        checkpoint.load(path)


class Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_posing_as_a_checkpoint_never_runs(trained, tmp_path):
    path = trained.save(tmp_path / "run")
    marker = tmp_path / "pwned"
    exploit = Exploit()
    exploit.marker = marker
    blob = pickle.dumps({"model.x": exploit})
    (tmp_path / "run.safetensors").write_bytes(blob)
    meta = json.loads(path.read_text())
    import hashlib
    meta["weights_sha256"] = hashlib.sha256(blob).hexdigest()
    path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError):
        checkpoint.load(path)
    assert not marker.exists()


def test_nan_weights_are_never_saved(trained, tmp_path):
    trained.save(tmp_path / "run")
    good = (tmp_path / "run.safetensors").read_bytes()
    with torch.no_grad():
        next(trained.model.parameters())[0] = float("nan")
    with pytest.raises(CheckpointError, match="non-finite"):
        trained.save(tmp_path / "run")
    assert (tmp_path / "run.safetensors").read_bytes() == good  # the old checkpoint is untouched


def test_a_crash_mid_write_leaves_the_old_checkpoint_whole(trained, tmp_path, monkeypatch):
    trained.save(tmp_path / "run")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    trained.step(5)

    def crash(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(checkpoint.os, "fsync", crash)  # the disk fills up during the write
    with pytest.raises(OSError):
        trained.save(tmp_path / "run")
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert checkpoint.load(tmp_path / "run").step == 20


def test_annotate_adds_sidecar_fields_atomically_and_refuses_a_broken_checkpoint(trained, tmp_path):
    trained.save(tmp_path / "run")
    weights = (tmp_path / "run.safetensors").read_bytes()
    checkpoint.annotate(tmp_path / "run", diagnostics={"data": {"dataset": "digits"}, "results": {"kl": {"total": 1.5}}})
    ck = checkpoint.load(tmp_path / "run")
    assert ck.meta["diagnostics"]["results"]["kl"]["total"] == 1.5 and ck.step == 20
    assert (tmp_path / "run.safetensors").read_bytes() == weights
    with pytest.raises(ValueError):  # strict JSON: a NaN is refused, and the old sidecar stays whole
        checkpoint.annotate(tmp_path / "run", bad=float("nan"))
    assert checkpoint.load(tmp_path / "run").meta["diagnostics"]["results"]["kl"]["total"] == 1.5
    (tmp_path / "run.safetensors").write_bytes(weights[:-10])
    with pytest.raises(CheckpointError, match="checksum"):
        checkpoint.annotate(tmp_path / "run", extra=1)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
