"""Your own VAE (core.protocol): the example in examples/ is diagnosed as itself, and bad models, factories
and weight files each get one message."""
import json
import os
import pickle
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file
from torch.distributions import kl_divergence

from conftest import ROOT
from test_cli import inline
from core import data as datasets
from core.diagnostics import held_out
from core.errors import LabError
from core.protocol import import_factory, user_bundle
from core.report import Skipped, run_all

EXAMPLE = f"{ROOT / 'examples' / 'my_vae.py'}:digits_vae"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The example trained for a few hundred steps by its own loop, its weights saved as a user would."""
    my_vae = sys.modules[import_factory(EXAMPLE).__module__]
    torch.manual_seed(0)
    model, x = my_vae.digits_vae(), my_vae.digits()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(300):
        loss = model.loss(torch.bernoulli(x[torch.randint(len(x), (64,))]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    path = tmp_path_factory.mktemp("user") / "my_vae.safetensors"
    save_file(model.state_dict(), str(path))
    return model, path


@pytest.fixture(scope="module")
def binary_digits():
    return datasets.load(datasets.DataSpec("digits", binarize="dynamic"))


def test_every_diagnostic_runs_on_the_example_and_reads_its_own_posterior(trained, binary_digits):
    model, path = trained
    bundle = user_bundle(EXAMPLE, str(path), binary_digits)
    results = run_all(bundle, binary_digits, options={"iwae": {"k": 16}, "gradient-variance": {"repeats": 5}})
    skipped = {name: r.skipped for name, r in results.items() if isinstance(r, Skipped)}
    assert set(skipped) == {"code-usage"}, skipped  # for discrete latents; this one is Gaussian
    # Two views of one model: the lab's KL is the user's own closed-form KL of the same images.
    x, _ = held_out(bundle, binary_digits, 1000)
    with torch.no_grad():
        theirs = kl_divergence(model.encode(x), model.prior()).mean().item()
    assert results["kl"].total == pytest.approx(theirs, rel=1e-5)
    assert results["iwae"].elbo <= results["iwae"].iwae  # the k-sample bound is at least the ELBO
    assert results["active-units"].count == 4 and results["probe"].logistic_accuracy > 0.5
    assert bundle.ref.id == __import__("hashlib").sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_python_m_core_diagnose_takes_the_model_and_its_weights(trained, capsys):
    _, path = trained
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "core", "diagnose", "--model", EXAMPLE, "--weights", str(path),
                           "--dataset", "digits", "--binarize", "dynamic", "--only", "kl,active-units,collapse",
                           "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["checkpoint"] == EXAMPLE and set(out["diagnostics"]) == {"kl", "active-units", "collapse"}
    assert len(out["diagnostics"]["collapse"]["verdicts"]) == 4
    # the rest in this process: the same main() as `python -m core`
    evaluated = inline(capsys, "evaluate", "--model", EXAMPLE, "--weights", str(path), "--dataset", "digits",
                       "--binarize", "dynamic", "--json")
    assert evaluated.returncode == 0 and json.loads(evaluated.stdout)["elbo"] < 0
    for args, says in [(["diagnose", "--model", EXAMPLE], "--model needs --dataset"),
                       (["diagnose", "--model", "nowhere:make", "--dataset", "digits"], "importing nowhere failed"),
                       (["diagnose", "--model", EXAMPLE, "--weights", str(path), "--dataset", "digits", "--record"],
                        "a --model has none"),
                       (["evaluate", "--model", EXAMPLE, "--dataset", "digits"], "(binary pixels: --binarize dynamic)"),
                       (["diagnose", "--model", EXAMPLE, "--dataset", "digits", "--objective", "iaf"],
                        "has its own posterior"),
                       (["diagnose", "checkpoints/mnist-vae", "--dataset", "digits"], "go with --model")]:
        failed = inline(capsys, *args)
        assert failed.returncode == 1 and says in failed.stderr and failed.stderr.count("\n") == 1, failed.stderr


def test_weights_are_never_unpickled_and_must_fit(trained, binary_digits, tmp_path, monkeypatch):
    model, path = trained
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled"))
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load called"))
    torch.save(model.state_dict(), tmp_path / "w.pt", _use_new_zipfile_serialization=True)
    with pytest.raises(LabError, match="must be a .safetensors file"):
        user_bundle(EXAMPLE, str(tmp_path / "w.pt"), binary_digits)
    (tmp_path / "disguised.safetensors").write_bytes((tmp_path / "w.pt").read_bytes())
    with pytest.raises(LabError, match="cannot be read as safetensors"):
        user_bundle(EXAMPLE, str(tmp_path / "disguised.safetensors"), binary_digits)
    wrong = {k: torch.zeros(3) if k == "encoder.1.bias" else v for k, v in model.state_dict().items()}
    save_file(wrong, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(LabError, match="does not fit"):
        user_bundle(EXAMPLE, str(tmp_path / "wrong.safetensors"), binary_digits)
    save_file({"other.weight": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(LabError, match="missing encoder.1.weight"):
        user_bundle(EXAMPLE, str(tmp_path / "other.safetensors"), binary_digits)
    nan = {k: v.clone().fill_(float("nan")) for k, v in model.state_dict().items()}
    save_file(nan, str(tmp_path / "nan.safetensors"))
    with pytest.raises(LabError, match="non-finite"):
        user_bundle(EXAMPLE, str(tmp_path / "nan.safetensors"), binary_digits)


MODELS = '''
import torch, torch.nn as nn
from torch.distributions import Bernoulli, Independent, Normal

class Base(nn.Module):
    latent_dim = 2
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(64, 4)
        self.out = nn.Linear(2, 64)
    def encode(self, x):
        mu, lv = self.net(x.flatten(1)).chunk(2, -1)
        return Normal(mu, lv.exp())
    def decode(self, z):
        return Independent(Bernoulli(logits=self.out(z).view(-1, 1, 8, 8), validate_args=False), 3)
    def prior(self):
        return Normal(torch.zeros(2), torch.ones(2))

class PerPixel(Base):
    def decode(self, z):
        return Bernoulli(logits=self.out(z).view(-1, 1, 8, 8))

class NoLatentDim(Base):
    latent_dim = None

class WrongPrior(Base):
    def prior(self):
        return Normal(torch.ones(2), torch.ones(2))

class NotADistribution(Base):
    def encode(self, x):
        return self.net(x.flatten(1))

def base(): return Base()
def per_pixel(): return PerPixel()
def no_latent_dim(): return NoLatentDim()
def wrong_prior(): return WrongPrior()
def not_a_distribution(): return NotADistribution()
def not_a_module(): return 3
def broken(): raise RuntimeError("my bug")
'''


@pytest.mark.parametrize("factory, says", [
    ("per_pixel", "wrap a per-pixel distribution in Independent"),
    ("no_latent_dim", "must have an attribute latent_dim"),
    ("wrong_prior", "must be the standard normal"),
    ("not_a_distribution", "encode(x) must return a torch.distributions object"),
    ("not_a_module", "not a torch.nn.Module"),
    ("broken", "calling the factory failed: RuntimeError: my bug"),
    ("missing", "has no callable 'missing'"),
])
def test_a_model_that_breaks_the_protocol_is_told_how(tmp_path, binary_digits, factory, says):
    (tmp_path / "user_models.py").write_text(MODELS)
    with pytest.raises(LabError) as e:
        user_bundle(f"{tmp_path / 'user_models.py'}:{factory}", None, binary_digits)
    assert says in str(e.value)


def test_without_named_halves_the_gradient_diagnostics_say_why(tmp_path, binary_digits):
    (tmp_path / "user_models.py").write_text(MODELS)
    bundle = user_bundle(f"{tmp_path / 'user_models.py'}:base", None, binary_digits)
    results = run_all(bundle, binary_digits, ["gradient-variance", "gradient-sources", "kl"])
    assert "submodule named 'encoder'" in results["gradient-variance"].skipped
    assert "submodule named 'encoder'" in results["gradient-sources"].skipped
    assert len(results["kl"].per_dim) == 2
