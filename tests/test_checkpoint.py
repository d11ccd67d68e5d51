import json
import os
import pickle
from dataclasses import replace

import pytest
import torch

from conftest import small_config
from core import checkpoint, explore, snapshots
from core import weights as weights_io
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


# ---------------------------------------------------------------- lighter checkpoints

def rounded_to_float16(kept: torch.Tensor, exact: torch.Tensor) -> bool:
    """kept is exact rounded to float16 and widened back: a float32 within a relative 2**-11 of it (2**-25 below
    float16's normal range, where its steps are 2**-24 apart)."""
    return kept.dtype == torch.float32 and bool(((kept - exact).abs() <= exact.abs() * 2**-11 + 2**-25).all())


def test_kept_steps_are_stored_as_float16_and_the_budget_counts_them_so(digits, tmp_path):
    """A budget of N MB keeps twice the steps it kept as float32; the file stores them as float16, its own
    (latest) weights as float32; loading any kept step gives a float32 model."""
    first = Trainer(small_config(), digits, snapshot_mb=0)
    exact = weights_io.state_tensors(first.model, first.objective)
    compact = snapshots.compact(exact)
    assert snapshots.nbytes(compact) * 2 == snapshots.nbytes(exact)
    budget = 4 * snapshots.nbytes(compact) / 2**20  # 4 compact steps, 2 of float32
    assert snapshots.limit(budget, snapshots.nbytes(compact)) == 4
    assert snapshots.limit(budget, snapshots.nbytes(exact)) == 2
    t = Trainer(small_config(), digits, snapshot_mb=budget)
    t.step(120)
    assert sorted(t.kept.weights) == [0, 20, 50, 100]  # counted as float32, [0, 100]
    assert all(v.dtype == torch.float16 for s in t.kept.weights.values() for k, v in s.items() if k.startswith("model."))
    t.save(tmp_path / "run")
    _, tensors = checkpoint.read(tmp_path / "run")
    kept = [k for k in tensors if k.startswith(snapshots.PREFIX)]
    assert kept and all(tensors[k].dtype == torch.float16 for k in kept)
    assert all(tensors[k].dtype == torch.float32 for k in tensors if k.startswith("model."))
    for bundle in checkpoint.load_steps(tmp_path / "run"):
        assert all(p.dtype == torch.float32 for p in bundle.network.state_dict().values()), bundle.step


def test_a_value_past_float16s_range_keeps_its_tensor_float32():
    tensors = {"a": torch.tensor([1.0, -70_000.0]), "b": torch.tensor([1.0, 65_504.0]), "n": torch.tensor([3])}
    compact = snapshots.compact(tensors)
    assert compact["a"].dtype == torch.float32 and torch.equal(compact["a"], tensors["a"])
    assert compact["b"].dtype == torch.float16 and torch.isfinite(compact["b"]).all()
    assert compact["n"].dtype == torch.int64
    assert all(torch.equal(v, tensors[k]) for k, v in snapshots.widen(compact).items())


def old_format(trainer, digits, path, steps=(0, 10, 20, 50)):
    """A checkpoint as one was written before kept steps were compact: the run's float32 weights at `steps`,
    and its own at its last step. Returns those float32 weights by step."""
    kept = {}
    for step in steps:
        trainer.step(step - trainer.step_count)
        kept[step] = weights_io.state_tensors(trainer.model, trainer.objective)
    trainer.step(30)
    trainer.save(path, resumable=True)
    meta, tensors = checkpoint.read(path)
    fields = {"steps": list(steps), "every": snapshots.EVERY, "budget_mb": 1.0}
    checkpoint.save(path, checkpoint.load(path), training=({k: v for k, v in tensors.items() if k.startswith("train.")},
                                                           meta["training"]),
                    snapshots=(kept, fields), command="python -m core train --dataset digits")
    return kept


def test_an_old_checkpoint_with_float32_kept_steps_still_loads_exactly(digits, tmp_path):
    trainer = Trainer(small_config(), digits, snapshot_mb=0)
    kept = old_format(trainer, digits, tmp_path / "old")
    _, tensors = checkpoint.read(tmp_path / "old")
    assert {v.dtype for k, v in tensors.items() if k.startswith(snapshots.PREFIX)} == {torch.float32}
    for step, exact in kept.items():
        one = checkpoint.load(tmp_path / "old", step=step)
        got = one.network.state_dict()
        assert all(torch.equal(got[k[6:]], v) for k, v in exact.items() if k.startswith("model.")), step
    assert [b.step for b in checkpoint.load_steps(tmp_path / "old")] == [0, 10, 20, 50, 80]
    resumed = Trainer.load(tmp_path / "old", digits)  # its kept steps held as the run keeps them now
    assert sorted(resumed.kept.weights) == [0, 10, 20, 50]
    assert all(v.dtype == torch.float16 for k, v in resumed.kept.weights[10].items() if k.startswith("model."))
    resumed.step(5)
    trainer.step(5)
    mine, theirs = resumed.model.state_dict(), trainer.model.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)


def test_compacting_an_old_checkpoint_keeps_its_last_weights_bit_for_bit(digits, tmp_path):
    """checkpoints/regenerate.py --compact: the last weights and training state bit for bit, every sidecar
    field as it was, each kept step within float16's rounding of the float32 one, decoding nearly the same."""
    import regenerate
    trainer = Trainer(small_config(), digits, snapshot_mb=0)
    kept = old_format(trainer, digits, tmp_path / "old")
    before_meta, before = checkpoint.read(tmp_path / "old")
    regenerate.compact("old", tmp_path, budget=0.1)
    meta, after = checkpoint.read(tmp_path / "old")
    own = [k for k in before if not k.startswith(snapshots.PREFIX)]
    assert sorted(own) == sorted(k for k in after if not k.startswith(snapshots.PREFIX))
    assert all(after[k].dtype == before[k].dtype and torch.equal(after[k], before[k]) for k in own)
    assert {k: v for k, v in meta.items() if k not in ("snapshots", "weights_sha256")} == \
           {k: v for k, v in before_meta.items() if k not in ("snapshots", "weights_sha256")}
    assert meta["snapshots"] == {"steps": [0, 10, 20, 50], "every": snapshots.EVERY, "budget_mb": 0.1}
    z = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    for step, exact in kept.items():
        at = checkpoint.load(tmp_path / "old", step=step)
        got = at.network.state_dict()
        assert all(rounded_to_float16(got[k[6:]], v) for k, v in exact.items() if k.startswith("model.")), step
        float32 = Trainer(small_config(), digits, snapshot_mb=0).model.eval()
        float32.load_state_dict({k[6:]: v for k, v in exact.items() if k.startswith("model.")})
        images, exact_images = explore.decode(at.network, z), explore.decode(float32, z)
        assert 0 < (images - exact_images).abs().max() < 1e-3, step  # rounded, and invisibly so
    resumed = Trainer.load(tmp_path / "old", digits)
    assert resumed.step_count == 80 and torch.equal(next(resumed.model.parameters()), next(trainer.model.parameters()))


def full_history(steps: int, changes: dict[int, dict]) -> list[dict]:
    """Rows as a run logs them, one a step, with beta or the learning rate changed before the given steps."""
    beta, lr, rows = 1.0, 1e-3, []
    for step in range(1, steps + 1):
        beta, lr = changes.get(step, {}).get("beta", beta), changes.get(step, {}).get("lr", lr)
        rows.append({"loss": 100.0 + step % 7, "step": step, "kl_per_dim": [0.5, 0.25], "beta": beta, "lr": lr,
                     "seconds": step / 1000})
    return rows


def test_a_thinned_history_keeps_the_early_steps_the_last_every_change_and_the_rows_asked_for():
    changes = {500: {"beta": 2.0}, 1_234: {"lr": 3e-4}, 1_235: {"beta": 4.0}, 54_321: {"beta": 0.5, "lr": 1e-4}}
    rows = full_history(123_457, changes)
    thin = checkpoint.thin_history(rows, keep=[1_501, 77_777])
    steps = [r["step"] for r in thin]
    assert steps[:1000] == list(range(1, 1001)) and steps[-1] == 123_457 and steps == sorted(steps)
    assert all(r is rows[r["step"] - 1] for r in thin)  # rows whole, never averaged
    assert {1_233, 1_234, 1_235, 54_320, 54_321} <= set(steps)  # each change and the row before it
    assert {1_501, 77_777} <= set(steps)  # the rows asked for
    assert {1_010, 9_990, 10_100, 99_900, 100_000, 123_000} <= set(steps) and 1_011 not in steps and 10_110 not in steps
    assert len(thin) < 1000 + 900 * 3 + 10  # 900 rows for each tenfold of steps after the first 1,000
    assert checkpoint.thin_history(thin, keep=[1_501, 77_777]) == thin
    assert checkpoint.thin_history(rows[:900]) == rows[:900]


def test_a_thinned_history_gives_the_same_recipe(trained):
    """recipe.changes and recipe.script read mid-run changes from the history: a thinned one gives what the
    whole one does, changes past step 1,000 (off the grid, and two on consecutive steps) included."""
    from core import recipe
    from core.bundle import Ref
    changes = {601: {"beta": 2.0}, 1_234: {"lr": 5e-4}, 1_235: {"beta": 0.5}, 3_333: {"beta": 0.25, "lr": 1e-4}}
    rows = full_history(5_000, changes)
    whole = replace(trained.snapshot(), history=rows, ref=Ref("run", 5_000))
    thinned = replace(whole, history=checkpoint.thin_history(rows))
    assert len(thinned.history) == 1_000 + 400 + 5 and thinned.history[-1]["step"] == 5_000
    assert recipe.changes(thinned) == recipe.changes(whole) == changes
    assert recipe.script(thinned, "again") == recipe.script(whole, "again")
    assert recipe.command(thinned) == recipe.command(whole)
