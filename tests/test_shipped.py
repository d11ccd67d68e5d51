"""The shipped checkpoints: every one loads, fits its size budget, and reproduces the metrics its sidecar
records when re-evaluated on the same fixed slice of its test set."""
import json

import pytest
import torch

from conftest import ROOT, needs_shared
from core import checkpoint, report, snapshots, sweep
from core import data as datasets
from core.evaluate import evaluate
from dashboard.lessons import LESSONS

from regenerate import SHIPPED, SHIPPED_MB, SNAPSHOT_MB, SNAPSHOT_MB_OTHERS

HERE = ROOT / "checkpoints"
MB = 2**20


def size(name: str) -> int:
    return sum((HERE / f"{name}{ext}").stat().st_size for ext in (".safetensors", ".json"))


def test_every_listed_checkpoint_is_shipped_within_its_budget():
    missing = [n for n in SHIPPED if not (HERE / f"{n}.json").exists() or not (HERE / f"{n}.safetensors").exists()]
    assert not missing
    for name in SHIPPED:  # the latest weights and the sidecar in 2 MB, the kept steps within their own budget
        budget = SNAPSHOT_MB.get(name, SNAPSHOT_MB_OTHERS)
        kept = json.loads((HERE / f"{name}.json").read_text())["snapshots"]
        assert kept["budget_mb"] == budget and (len(kept["steps"]) >= 9 if budget else kept["steps"] == []), name
        assert size(name) <= (2 + budget) * MB, name
    # the lesson "Watch a dimension collapse" names steps 600, 1,400 and 2,000
    lesson = json.loads((HERE / "mnist-kl-annealing-beta8.json").read_text())["snapshots"]["steps"]
    assert {600, 1_400, 2_000} <= set(lesson)
    # every pair together, as `du -cb checkpoints/*.safetensors checkpoints/*.json` counts them
    assert sum(size(n) for n in SHIPPED) <= SHIPPED_MB * MB


def test_kept_steps_are_float16_and_the_last_weights_float32():
    _, tensors = checkpoint.read(HERE / "mnist-kl-annealing-beta8")
    kept = {k: v for k, v in tensors.items() if k.startswith(snapshots.PREFIX)}
    assert len(kept) == 17 * 10 and {v.dtype for v in kept.values()} == {torch.float16}
    assert {v.dtype for k, v in tensors.items() if k not in kept} == {torch.float32}
    at = checkpoint.load(HERE / "mnist-kl-annealing-beta8", step=1_400)
    assert at.step == 1_400 and {p.dtype for p in at.network.state_dict().values()} == {torch.float32}


def test_the_readme_tables_every_checkpoint_and_the_lessons_use_shipped_ones():
    readme = (HERE / "README.md").read_text()
    assert all(f"| `{n}` |" in readme for n in SHIPPED)
    assert all(name in SHIPPED for lesson in LESSONS.values() for name in lesson["shipped"])
    assert all((HERE / "sweeps" / lesson["sweep"] / "results.csv").exists() for lesson in LESSONS.values()
               if "sweep" in lesson)


@pytest.fixture(scope="module")
def loaded():
    cache = {}

    def get(spec):
        key = (spec.name, spec.binarize, spec.normalize)
        if key not in cache:
            cache[key] = datasets.load(spec, download=False)
        return cache[key]
    return get


@needs_shared
@pytest.mark.parametrize("name", list(SHIPPED))
def test_shipped_checkpoint_reproduces_its_recorded_metrics(name, loaded):
    ck = checkpoint.load(HERE / name)
    meta = ck.meta
    assert meta["command"].startswith("python -m core train") and ck.history and ck.live
    steps = [r["step"] for r in ck.history]  # thinned (core.checkpoint.thin_history): every step to 1,000, the last
    assert steps[:1000] == list(range(1, 1001)) and steps[-1] == ck.step
    assert checkpoint.thin_history(ck.history) == ck.history
    assert set(ck.steps) - {0} <= set(steps)  # each kept step's row
    data = loaded(ck.config.data)
    # The recorded numbers were measured on this very data (the full dataset, same binarization).
    recorded = report.recorded(ck, data, "evaluation")
    assert recorded is not None, meta["evaluation"]["data"]
    now = evaluate(ck, data, n=recorded.n)
    assert now.elbo == pytest.approx(recorded.elbo, abs=0.05)
    assert now.kl == pytest.approx(recorded.kl, abs=0.02)
    assert now.kl_per_dim == pytest.approx(recorded.kl_per_dim, abs=0.01)
    assert now.recon + now.kl == pytest.approx(-now.elbo, abs=1e-9)
    d = report.recorded(ck, data)
    assert d["iwae"].iwae >= d["iwae"].elbo - 1e-6  # the bound is at least the ELBO
    # Two views of one posterior: evaluate's one-sample ELBO and the mean of IWAE's 100 log-weights, on the
    # same 1,000 images. Their difference has a standard error of (the spread of log w within an image, a few
    # nats) / sqrt(1,000), about 0.2 nats: 1 nat is four of them.
    assert d["iwae"].n == recorded.n and now.elbo == pytest.approx(d["iwae"].elbo, abs=1.0)
    assert d["kl"].total == pytest.approx(now.kl, abs=0.05 if d["kl"].exact else 0.5)
    assert 0 <= d["active-units"].count <= ck.config.model.latent_dim
    budget = SHIPPED[name].split()  # the data it was trained on: its epochs or steps
    asked = budget[budget.index("--epochs") + 1] if "--epochs" in budget else budget[budget.index("--steps") + 1]
    assert (ck.epoch if "--epochs" in budget else ck.step) == float(asked)
    json.dumps(meta, allow_nan=False)  # strict JSON, no NaN anywhere


def test_the_shipped_sweep_is_complete_within_its_budget_and_was_made_by_its_spec():
    from core import sweep
    folder = HERE / "sweeps" / "digits-collapse"
    spec = sweep.read_spec(ROOT / "experiments" / "sweeps" / "digits-collapse.toml")
    trials = spec.trials
    assert (folder / "spec.toml").read_text() == spec.path.read_text()
    assert all(sweep.status(folder, t)[0] == "done" for t in trials)  # each trained by its own command
    rows = sweep.read_rows(folder)
    assert [r["trial"] for r in rows] == [t.id for t in trials] and {r["status"] for r in rows} == {"done"}
    assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) <= 8 * MB


def test_the_strong_decoder_lessons_numbers_are_its_checkpoints():
    """Every number the lesson "A strong decoder ignores z" quotes, from the shipped sidecars and from
    experiments/strong_decoder_lesson.py's measurement of the sliders (experiments/results)."""
    text = LESSONS["A strong decoder ignores z"]["text"]
    live = {n: {r["step"]: r for r in json.loads((HERE / f"digits-pixelcnn-{n}.json").read_text())["live"]}
            for n in ("vae", "aggressive", "bn-vae", "delta-vae")}
    early = [r for step, r in live["vae"].items() if step <= 300]
    assert all(r["au"] == 0 for r in early) and live["vae"][350]["au"] > 0  # collapsed for its first 300 steps
    assert f"{min(r['kl'] for r in early):.2f} to {max(r['kl'] for r in early):.2f} nats" == "0.04 to 0.05 nats"
    assert "(0.65 nats, 5 active units at step 1,500)" in text and live["vae"][1500]["au"] == 5
    assert f"{live['vae'][1500]['kl']:.2f}" == "0.65"
    measured = json.loads((ROOT / "experiments" / "results" / "strong_decoder_lesson.json").read_text())
    at_200 = measured["digits-pixelcnn-vae"]["slider_reach_at_200"]
    assert f"by at most {min(at_200):.2f} to {max(at_200):.2f}" in text
    alive = measured["digits-pixelcnn-bn-vae"]["slider_reach"] + measured["digits-pixelcnn-delta-vae"]["slider_reach"]
    assert f"by {min(alive):.2f} to {max(alive):.2f}" in text
    history = json.loads((HERE / "digits-pixelcnn-aggressive.json").read_text())["history"]
    aggressive = [r for r in history if r["aggressive"] == 1]
    inner = sum(r["inner_steps"] for r in aggressive) / len(aggressive)
    assert f"({aggressive[-1]['step']} steps, {inner:.0f} encoder steps each)" in text
    active = [r["au"] for step, r in live["aggressive"].items() if step >= 50]
    assert f"{min(active)} to {max(active)} units active from step 50" in text
    assert f"{live['aggressive'][1500]['kl']:.1f} nats at the end" in text
    assert min(r["kl"] for r in live["bn-vae"].values()) >= 8 * 0.5 ** 2 / 2  # its floor, from step 50
    assert f"({live['delta-vae'][50]['kl']:.1f} nats at step 50)" in text and live["delta-vae"][50]["au"] == 1
    nll = [measured[f"digits-pixelcnn-{n}"]["nll"] for n in ("vae", "aggressive", "bn-vae", "delta-vae")]
    assert f"(IWAE NLL {min(nll):.1f} to {max(nll):.1f})" in text and max(nll) - min(nll) < 0.4 + 0.05
    # the sweep: one PixelCNN layer takes the plain VAE from its plain decoder's KL to a fifth of a nat
    rows = {(r["objective"], r["pixelcnn_layers"]): r for r in sweep.read_rows(HERE / "sweeps" / "digits-strong-decoder")}
    assert float(rows["vae", "0"]["KL"]) > 4 and float(rows["vae", "1"]["KL"]) < 0.25
    assert "one layer is enough to collapse the plain VAE" in text
