"""Runs that survive their process: resumable checkpoints, exact resume, branches, hostile sidecars."""
import json
import os
import time
from dataclasses import replace

import pytest
import torch

from conftest import small_config
from core import checkpoint
from core.cli import main
from core.config import save_every
from core.engine import Trainer
from core.errors import CheckpointError, ConfigError
from core.models import ModelConfig

# digits: 1,500 training images, so 12 steps an epoch at batch 128; 25 + 25 steps cross epoch boundaries
# on both sides of the resume.
OBJECTIVES = {
    "gaussian": small_config(objective="beta-vae", settings={"beta": 2.0}),
    "flow": small_config(objective="iaf", settings={"flow_steps": 2}),
    "discrete": small_config(objective="discrete-is", model=ModelConfig(hidden=(64,), latent_dim=6, latent="bernoulli")),
}


def without_seconds(rows):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def all_state(trainer) -> dict:
    """Every tensor a step depends on: weights, the objective's, the optimizer's, the random stream."""
    tensors, fields = trainer.training_state()
    tensors |= {f"model.{k}": v for k, v in trainer.model.state_dict().items()}
    tensors |= {f"objective.{k}": v for k, v in trainer.objective.state_dict().items()}
    return tensors


@pytest.mark.parametrize("kind", OBJECTIVES)
def test_resume_is_bit_identical_to_the_uninterrupted_run(kind, digits, tmp_path):
    config = OBJECTIVES[kind]
    straight = Trainer(config, digits, live_every=10)
    straight.step(50)
    first = Trainer(config, digits, live_every=10)
    first.step(25)
    first.save(tmp_path / "run", resumable=True)
    del first
    resumed = Trainer.load(tmp_path / "run", digits)
    assert resumed.step_count == 25
    resumed.step(25)
    a, b = all_state(straight), all_state(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), kind
    # The steps after the resume are computed again: equal to the last bit. Those before come from the
    # sidecar, written at 5 significant digits, so both runs' saved histories are the same.
    assert without_seconds(resumed.history[25:]) == without_seconds(straight.history[25:])
    assert without_seconds(checkpoint.rounded(resumed.history)) == without_seconds(checkpoint.rounded(straight.history))
    assert checkpoint.rounded(resumed.live) == checkpoint.rounded(straight.live) and len(resumed.live) == 5


def test_a_run_saved_past_step_1000_resumes_exactly_from_its_thinned_history(digits, tmp_path):
    """Past step 1,000 a saved history keeps every 10th row (core.checkpoint.thin_history); the run resumes
    from it bit for bit, a beta changed off that grid is kept and replayed, and saved again it writes the
    history the uninterrupted run writes."""
    from core import recipe
    straight = Trainer(small_config(), digits, live_every=50)
    straight.step(1_004)
    straight.set_beta(2.0)
    straight.step(9)
    straight.save(tmp_path / "run", resumable=True)  # at step 1,013
    saved = json.loads((tmp_path / "run.json").read_text())["history"]
    assert [r["step"] for r in saved[998:]] == [999, 1_000, 1_004, 1_005, 1_010, 1_013]
    straight.step(37)
    resumed = Trainer.load(tmp_path / "run", digits)
    assert resumed.step_count == 1_013 and resumed.objective.beta == 2.0
    resumed.step(37)
    a, b = all_state(straight), all_state(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert without_seconds(resumed.history[-37:]) == without_seconds(straight.history[-37:])
    again, whole = resumed.save(tmp_path / "again"), straight.save(tmp_path / "whole")
    history = [without_seconds(json.loads(p.read_text())["history"]) for p in (again, whole)]
    assert history[0] == history[1] and len(history[0]) == 1_000 + 2 + 5  # 1,004 and the change, 1,010 to 1,050
    assert recipe.changes(checkpoint.load(again)) == {1_005: {"beta": 2.0}}


def test_a_resumed_run_keeps_its_identity_and_beta_changed_mid_run(digits, tmp_path):
    t = Trainer(small_config(), digits, live_every=0)
    t.step(5)
    t.set_beta(3.0)
    t.set_lr(2e-4)
    t.step(5)
    t.save(tmp_path / "run", resumable=True)
    r = Trainer.load(tmp_path / "run", digits)
    assert r.run_id == t.run_id and r.objective.beta == 3.0 and r.lr == 2e-4 and r.live_every == 0
    assert r.snapshot().ref == t.snapshot().ref


def test_autosave_writes_a_resumable_checkpoint_on_schedule(digits, tmp_path):
    t = Trainer(small_config(), digits, live_every=0)
    t.autosave(tmp_path / "auto", "7", command="test")
    t.step(20)
    meta = json.loads((tmp_path / "auto.json").read_text())
    assert meta["step"] == 14 and meta["training"]["step"] == 14 and meta["command"] == "test"
    assert Trainer.load(tmp_path / "auto", digits).step_count == 14
    t.autosave(tmp_path / "timed", "0.001s")
    time.sleep(0.01)  # a step of this small model can take less than the millisecond: let the time pass first
    t.step(1)
    assert json.loads((tmp_path / "timed.json").read_text())["step"] == 21


@pytest.mark.parametrize("text,parsed", [("500", ("steps", 500)), ("90s", ("seconds", 90)), ("5m", ("seconds", 300)),
                                         ("2h", ("seconds", 7200)), ("0", ("off", 0)), (" 10M ", ("seconds", 600))])
def test_save_every_reads_steps_and_times(text, parsed):
    assert save_every(text) == parsed


@pytest.mark.parametrize("text", ["", "m", "-5", "5x", "1.5", "nanm", "infs"])
def test_save_every_refuses_anything_else(text):
    with pytest.raises(ConfigError, match="save-every must be"):
        save_every(text)


def test_a_branch_records_its_parent_and_changes_only_what_it_was_asked(digits, tmp_path):
    parent = Trainer(small_config(objective="free-bits", settings={"free_bits": 0.5}), digits, live_every=0)
    parent.step(30)
    parent.save(tmp_path / "parent", resumable=True)
    branch = Trainer.branch(tmp_path / "parent", digits, settings={"beta": 4.0}, lr=1e-4)
    assert branch.run_id != parent.run_id and branch.step_count == 30
    assert branch.objective.beta == 4.0 and branch.objective.free_bits == 0.5 and branch.lr == 1e-4
    assert branch.history == checkpoint.rounded(parent.history)
    assert branch.parent["run_id"] == parent.run_id and branch.parent["step"] == 30
    # It starts from the parent's optimizer state and random stream: with the parent's settings, a
    # branch takes exactly the parent's next step.
    twin = Trainer.branch(tmp_path / "parent", digits)
    assert twin.step(1)[0]["loss"] == parent.step(1)[0]["loss"]
    branch.step(5)
    meta = json.loads(branch.save(tmp_path / "branch").read_text())
    assert meta["parent"]["weights_sha256"] == json.loads((tmp_path / "parent.json").read_text())["weights_sha256"]
    assert meta["step"] == 35 and meta["config"]["settings"]["beta"] == 4.0 and "training" not in meta


def test_a_checkpoint_without_training_state_branches_but_does_not_resume(digits, tmp_path):
    t = Trainer(small_config(), digits, live_every=0)
    t.step(10)
    t.save(tmp_path / "plain")
    with pytest.raises(CheckpointError, match="saved without its training state.*branch"):
        Trainer.load(tmp_path / "plain", digits)
    b = Trainer.branch(tmp_path / "plain", digits, settings={"beta": 0.5})
    assert b.step_count == 10 and b.step(2)[-1]["step"] == 12


def test_a_diverged_run_is_not_resumed(digits, tmp_path):
    t = Trainer(small_config(lr=1e9), digits, live_every=0)
    with pytest.raises(Exception, match="diverged"):
        t.step(200)
    t.save(tmp_path / "bad", resumable=True)
    with pytest.raises(CheckpointError, match="diverged.*lower learning rate"):
        Trainer.load(tmp_path / "bad", digits)


def edit_sidecar(tmp_path, digits, change):
    t = Trainer(small_config(), digits, live_every=0)
    t.step(12)
    meta_path = t.save(tmp_path / "run", resumable=True)
    meta = json.loads(meta_path.read_text())
    change(meta)
    meta_path.write_text(json.dumps(meta))  # the weights' checksum still matches
    return meta_path


@pytest.mark.parametrize("change,message", [
    (lambda m: m.update(step=20), "sidecar and the weights disagree"),
    (lambda m: m.update(history=m["history"][:5]), "sidecar and the weights disagree"),
    (lambda m: (m.update(step=8, history=m["history"][:8]), m["training"].update(step=8)), "optimizer's state is at step"),
    (lambda m: m["training"].pop("optimizer"), "sidecar and the weights disagree"),
    (lambda m: m["training"].update(batch_position="x"), "sidecar and the weights disagree"),
])
def test_a_resume_whose_sidecar_and_weights_disagree_is_refused_by_name(change, message, digits, tmp_path):
    path = edit_sidecar(tmp_path, digits, change)
    with pytest.raises(CheckpointError, match=message) as e:
        Trainer.load(path, digits)
    assert str(path) in str(e.value)


def test_optimizer_state_of_the_wrong_shape_is_refused(digits, tmp_path):
    small = Trainer(small_config(), digits, live_every=0)
    small.step(3)
    big = Trainer(small_config(model=ModelConfig(hidden=(32,), latent_dim=4)), digits, live_every=0)
    big.step(3)
    tensors, fields = big.training_state()
    bundle = small.snapshot()
    checkpoint.save(tmp_path / "mixed", bundle, training=(tensors, fields))
    with pytest.raises(CheckpointError, match="disagree.*shape"):
        Trainer.load(tmp_path / "mixed", digits)


@pytest.mark.parametrize("name,text,message", [
    ("deep", '{"format": "vaelab-checkpoint", "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested deeper"),
    ("deepish", '{"format": "vaelab-checkpoint", "format_version": 1, "x": ' + "[" * 40 + "]" * 40 + "}", "nested deeper"),
])
def test_a_deeply_nested_sidecar_is_refused(name, text, message, tmp_path):
    (tmp_path / f"{name}.json").write_text(text)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.load(tmp_path / name)


@pytest.mark.parametrize("change,message", [
    (lambda m: m.update(command="x" * 200_000), "field command is 200,000 characters"),
    (lambda m: m["config"]["model"].update(activation="y" * 200_000), "field config.model.activation is"),
    (lambda m: m.update(history=5), "'history' should be list, not int"),
    (lambda m: m.update(history=[1, 2]), "'history' should be a list of rows"),
    (lambda m: m.update(step="12"), "'step' should be int, not str"),
    (lambda m: m.update(step=True), "'step' should be int, not bool"),
    (lambda m: m.update(step=-3), "'step' is -3"),
    (lambda m: m.update(config=[]), "'config' should be dict, not list"),
    (lambda m: m.update(training="yes"), "'training' should be dict, not str"),
    (lambda m: m.update(weights_sha256=7), "'weights_sha256' should be str"),
])
def test_a_wrong_typed_or_oversized_sidecar_gets_one_clear_message(change, message, digits, tmp_path):
    path = edit_sidecar(tmp_path, digits, change)
    for read in (checkpoint.load, lambda p: Trainer.load(p, digits)):
        with pytest.raises(CheckpointError, match=message):
            read(path)
    assert main(["evaluate", str(path)]) == 1


def test_a_sidecar_larger_than_any_is_not_read(digits, tmp_path, monkeypatch):
    path = edit_sidecar(tmp_path, digits, lambda m: None)
    monkeypatch.setattr(checkpoint, "MAX_SIDECAR_BYTES", 1000)
    with pytest.raises(CheckpointError, match="more than the 1,000 bytes such a file may be"):
        checkpoint.load(path)


# ---------------------------------------------------------------- the command line

def test_cli_resume_continues_the_run_to_the_same_weights(tmp_path, capsys):
    args = ["train", "--dataset", "digits", "--hidden", "32", "--latent", "4", "--out", str(tmp_path), "--live-every", "0"]
    assert main(args + ["--steps", "40", "--name", "straight"]) == 0
    assert main(args + ["--steps", "25", "--name", "run", "--save-every", "10"]) == 0
    assert main(["train", "--resume", "run", "--out", str(tmp_path), "--steps", "40"]) == 0
    a, b = checkpoint.load(tmp_path / "straight"), checkpoint.load(tmp_path / "run")
    assert a.ref.id == b.ref.id and b.step == 40  # the same weights, byte for byte
    assert without_seconds(a.history) == without_seconds(b.history)
    meta = json.loads((tmp_path / "run.json").read_text())
    assert meta["target_steps"] == 40 and "--name run" in meta["command"]
    assert main(["train", "--resume", str(tmp_path / "run.json")]) == 0
    assert "already at step 40 of 40" in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["--resume", "nope"], "no checkpoint 'nope'"),
    (["--resume", "run", "--beta", "2"], "--resume continues the run with its own settings; leave out --beta"),
    (["--resume", "run", "--branch", "run"], "not both"),
    (["--branch", "run", "--latent", "8"], "a branch keeps its parent's data, model and objective; leave out --latent"),
    (["--save-every", "often"], "save-every must be"),
])
def test_cli_resume_and_branch_mistakes_get_one_line(args, message, tmp_path, capsys):
    assert main(["train", "--dataset", "digits", "--steps", "5", "--out", str(tmp_path), "--name", "run"]) == 0
    capsys.readouterr()
    assert main(["train", "--out", str(tmp_path), *args]) in (1, 2)
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_cli_branch_changes_beta_and_keeps_the_parent(tmp_path):
    base = ["train", "--out", str(tmp_path)]
    assert main(base + ["--dataset", "digits", "--hidden", "32", "--latent", "4", "--steps", "30", "--name", "p"]) == 0
    assert main(base + ["--branch", "p", "--beta", "4", "--lr", "5e-4", "--steps", "10"]) == 0
    b = checkpoint.load(tmp_path / "p-branch30")
    assert b.step == 40 and b.objective.beta == 4.0 and b.config.lr == 5e-4
    assert b.meta["parent"]["step"] == 30 and b.meta["parent"]["path"].endswith("p.json")


# ---------------------------------------------------------------- crash safety

def test_a_run_killed_at_random_moments_always_resumes(tmp_path):
    """bench/crash_safety.py's loop (20 kills there), shortened."""
    from crash_safety import kill_and_resume
    counts = kill_and_resume(tmp_path, kills=3)
    assert counts["resumed"] == 3, counts["failures"]


def save_killed_after(trainer, path, renames: int, monkeypatch):
    """A resumable save that stops dead after `renames` of its renames, as a kill would stop it."""
    real_replace, calls = os.replace, []

    def replace_then_die(src, dst):
        if len(calls) == renames:
            raise KeyboardInterrupt  # the process stops here; nothing after this line of save() runs
        calls.append(dst)
        real_replace(src, dst)
    monkeypatch.setattr(checkpoint.os, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        trainer.save(path, resumable=True)
    monkeypatch.undo()


@pytest.mark.parametrize("renames_done", [0, 1, 2])
def test_a_save_killed_between_its_renames_leaves_a_checkpoint_that_loads(renames_done, digits, tmp_path, monkeypatch):
    """A kill can land between any two of the renames that put a new pair in place; the sidecar on disk
    must then still find its own weights (the old pair's, waiting beside it)."""
    t = Trainer(small_config(), digits, live_every=0)
    t.step(6)
    t.save(tmp_path / "run", resumable=True)
    old = checkpoint.load(tmp_path / "run").ref
    t.step(3)
    save_killed_after(t, tmp_path / "run", renames_done, monkeypatch)
    loaded = checkpoint.load(tmp_path / "run")
    assert loaded.ref == old and loaded.step == 6
    assert Trainer.load(tmp_path / "run", digits).step(1)[0]["step"] == 7
    t.save(tmp_path / "run", resumable=True)  # the next save puts everything in order
    assert checkpoint.load(tmp_path / "run").step == 9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json", "run.safetensors"]


@pytest.mark.parametrize("change,message", [
    (lambda m: m["config"]["model"].update(hidden=[1e999]), "cannot be read|do not fit"),
    (lambda m: m.update(history=[{"loss": 1.0}] * 12), "row without a whole-number 'step'"),
    (lambda m: m.update(history=[{"step": 1}] * 12), "row without a numeric 'loss'"),
    (lambda m: m.update(live=[{"step": "x"}]), "'live' has a row without a whole-number 'step'"),
    (lambda m: m.update(target_steps="many"), "'target_steps' should be int"),
    (lambda m: m["training"].update(live_every="x"), "training state is malformed"),
])
def test_more_hostile_sidecars_end_in_one_message(change, message, digits, tmp_path):
    path = edit_sidecar(tmp_path, digits, change)
    with pytest.raises(CheckpointError, match=message):
        Trainer.load(path, digits)


def test_an_integer_too_long_to_parse_is_refused(digits, tmp_path):
    path = edit_sidecar(tmp_path, digits, lambda m: m.update(step="HUGE"))
    path.write_text(path.read_text().replace('"HUGE"', "9" * 5000))  # past Python's 4,300-digit limit
    with pytest.raises(CheckpointError, match="not valid JSON"):
        checkpoint.load(path)


def test_two_kills_in_a_row_between_renames_still_leave_a_checkpoint_that_loads(digits, tmp_path, monkeypatch):
    t = Trainer(small_config(), digits, live_every=0)
    t.step(3)
    t.save(tmp_path / "run", resumable=True)
    for extra in (3, 3):
        t.step(extra)
        save_killed_after(t, tmp_path / "run", 2, monkeypatch)
        assert checkpoint.load(tmp_path / "run").step == 3  # the pair the sidecar names, each time


def test_a_resume_on_other_data_is_refused(digits, tmp_path):
    t = Trainer(small_config(), digits, live_every=0)
    t.step(3)
    t.save(tmp_path / "run", resumable=True)
    fewer = replace(digits, train_x=digits.train_x[:1000], train_y=digits.train_y[:1000])
    with pytest.raises(CheckpointError, match="trained on 1,500 images and 1,000 are here"):
        Trainer.load(tmp_path / "run", fewer)


def test_a_ctrl_c_inside_the_optimizers_update_waits_for_the_step_to_finish(digits, tmp_path):
    """SIGINT landing inside optimizer.step() (here: raised from its post-hook, after the update and
    before the step counter moves) once left a checkpoint whose optimizer was a step ahead of its
    weights' step, which no resume accepted. Now it is raised after the step, and the run resumes."""
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a plain `python -m core train`
    trainer = Trainer(small_config(), digits, live_every=0)
    trainer.optimizer.register_step_post_hook(
        lambda *_: signal.raise_signal(signal.SIGINT) if trainer.step_count == 6 else None)
    with pytest.raises(KeyboardInterrupt):
        trainer.step(20)
    assert trainer.step_count == 7
    trainer.save(tmp_path / "cut", resumable=True)
    resumed = Trainer.load(tmp_path / "cut", digits)
    assert resumed.step_count == 7
    resumed.step(3)
    reference = Trainer(small_config(), digits, live_every=0)
    reference.step(10)
    assert without_seconds(resumed.history[7:]) == without_seconds(reference.history[7:])  # saved rows are rounded
    assert all(torch.equal(a, b) for a, b in zip(resumed.model.state_dict().values(),
                                                 reference.model.state_dict().values()))


def test_a_signal_handler_of_the_hosts_own_hears_the_ctrl_c_after_the_step(digits):
    """A host with its own SIGINT handler (a server, a notebook) gets the signal too, between two steps."""
    import signal

    trainer = Trainer(small_config(), digits, live_every=0)
    heard = []
    previous = signal.signal(signal.SIGINT, lambda *_: heard.append(trainer.step_count))
    try:
        trainer.optimizer.register_step_post_hook(
            lambda *_: signal.raise_signal(signal.SIGINT) if trainer.step_count == 6 else None)
        trainer.step(20)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert heard == [7] and trainer.step_count == 20  # after step 7 was whole; its handler let the run go on
