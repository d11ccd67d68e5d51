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
                       (["evaluate", "--model", EXAMPLE, "--dataset", "digits"], "grey; binary pixels: --binarize dynamic)"),
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


def test_a_model_file_imports_the_modules_beside_it(tmp_path, binary_digits):
    """`--model adapter.py:build` where adapter.py imports a module of its own folder, as `python adapter.py`
    would find it."""
    (tmp_path / "parts_beside_adapter.py").write_text(MODELS)
    (tmp_path / "adapter_beside.py").write_text("from parts_beside_adapter import Base\n\ndef build():\n    return Base()\n")
    bundle = user_bundle(f"{tmp_path / 'adapter_beside.py'}:build", None, binary_digits)
    assert bundle.latent_dim == 2


WRONG_SHAPE = MODELS + '''
class WrongShape(Base):
    def decode(self, z):
        return Independent(Bernoulli(logits=self.out(z)[:, :16].view(-1, 1, 4, 4)), 3)

def wrong_shape(): return WrongShape()
def strict(): return PerPixelStrict()

class PerPixelStrict(Base):
    def decode(self, z):
        return Independent(Bernoulli(logits=self.out(z).view(-1, 1, 8, 8)), 3)
'''


def test_the_binarize_hint_comes_only_for_grey_pixels(tmp_path, binary_digits):
    (tmp_path / "hint_models.py").write_text(WRONG_SHAPE)
    with pytest.raises(LabError) as e:  # a shape error on binary data: nothing about binarizing
        user_bundle(f"{tmp_path / 'hint_models.py'}:wrong_shape", None, binary_digits)
    assert "refuses this data's images" in str(e.value) and "--binarize dynamic" not in str(e.value)
    grey = datasets.load(datasets.DataSpec("digits"))
    with pytest.raises(LabError, match="its pixels are grey; binary pixels: --binarize dynamic"):
        user_bundle(f"{tmp_path / 'hint_models.py'}:strict", None, grey)
    assert user_bundle(f"{tmp_path / 'hint_models.py'}:strict", None, binary_digits).latent_dim == 2


SHIFTED = '''
import torch, torch.nn as nn
from torch.distributions import ContinuousBernoulli, Independent, Normal

class Shifted(nn.Module):
    """z = 3 + 5 * (the image's mean grey), and a decoder whose mean is 0.3 + z: it reads z, and it scores the
    images far better at z = 0 than at the codes the encoder gives it."""
    latent_dim = 1
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
    def encode(self, x):
        return Normal(3 + 5 * x.flatten(1).mean(1, keepdim=True), 0.1 * self.scale.expand(len(x), 1))
    def decode(self, z):
        return Independent(Normal((0.3 + z).view(-1, 1, 1, 1).expand(-1, 1, 8, 8), 1.0), 3)
    def prior(self):
        return Normal(torch.zeros(1), torch.ones(1))

class Continuous(Shifted):
    def decode(self, z):
        return Independent(ContinuousBernoulli(logits=(z - 3).view(-1, 1, 1, 1).expand(-1, 1, 8, 8)), 3)

class IgnoresX(Shifted):
    latent_dim = 4
    def encode(self, x):
        return Normal(torch.zeros(len(x), 4), torch.ones(len(x), 4))
    def decode(self, z):
        return Independent(Normal(z[:, :1].view(-1, 1, 1, 1).expand(-1, 1, 8, 8), 1.0), 3)
    def prior(self):
        return Normal(torch.zeros(4), torch.ones(4))

class Binary(Shifted):
    """Refuses anything but the binary images the other diagnostics encode."""
    def encode(self, x):
        assert ((x == 0) | (x == 1)).all(), "grey pixels reached the encoder"
        return super().encode(x)

def shifted(): return Shifted()
def continuous(): return Continuous()
def ignores_x(): return IgnoresX()
def binary(): return Binary()
'''


@pytest.fixture(scope="module")
def grey_digits():
    return datasets.load(datasets.DataSpec("digits"))


@pytest.fixture()
def shifted(tmp_path):
    (tmp_path / "shifted_models.py").write_text(SHIFTED)
    return lambda name: f"{tmp_path / 'shifted_models.py'}:{name}"


def test_a_dimension_whose_zeroing_raises_the_likelihood_is_used_by_the_decoder(shifted, grey_digits):
    """Unused means zeroing changes nothing: a decoder that scores z = 0 hundreds of nats better reads z."""
    from core.diagnostics import run
    report = run("collapse", user_bundle(shifted("shifted"), None, grey_digits), grey_digits, n=300)
    assert report.zeroing_cost[0] < -100 and report.au_variances[0] > 0.01
    assert report.verdicts == ["active"]
    assert any("zeroing it raises log p(x|z)" in flag for flag in report.flags)


def test_a_continuous_bernoulli_decoder_is_named_as_itself(shifted, grey_digits):
    bundle = user_bundle(shifted("continuous"), None, grey_digits)
    assert bundle.network.family == "ContinuousBernoulli" and bundle.network.cfg.likelihood == "other"
    assert run_all(bundle, grey_digits, ["kl", "decoder-reliance"])["kl"].total > 0


def test_the_live_mi_is_never_below_zero(shifted, grey_digits):
    """An encoder that ignores x has MI 0: its raw estimate is noise around 0, half the time below it."""
    from core.diagnostics.mutual_information import live_mi
    from core.rng import seeded
    bundle = user_bundle(shifted("ignores_x"), None, grey_digits)
    x, _ = held_out(bundle, grey_digits, 300)
    rows = []
    for seed in range(8):
        with seeded(torch.device("cpu"), seed):
            rows.append(live_mi(bundle.posterior(x)))
    assert min(r["mi_raw"] for r in rows) < 0 and all(r["mi"] == max(r["mi_raw"], 0) for r in rows)
    assert all(abs(r["mi_raw"]) < 4 * r["mi_se"] for r in rows)


def test_the_probe_encodes_the_images_the_other_diagnostics_encode(shifted, binary_digits):
    bundle = user_bundle(shifted("binary"), None, binary_digits)
    result = run_all(bundle, binary_digits, ["probe", "kl"], {"probe": {"n_train": 500, "n_test": 200}})
    assert result["probe"].n_test == 200 and result["kl"].total > 0


def test_a_users_model_is_not_given_a_step(trained, capsys):
    _, path = trained
    done = inline(capsys, "evaluate", "--model", EXAMPLE, "--weights", str(path), "--dataset", "digits",
                  "--binarize", "dynamic")
    assert done.returncode == 0 and "step" not in done.stdout.splitlines()[0], done.stdout
    done = inline(capsys, "evaluate", "--model", EXAMPLE, "--weights", str(path), "--dataset", "digits",
                  "--binarize", "dynamic", "--json")
    assert json.loads(done.stdout)["step"] is None


SCORED = MODELS + '''
class Scored(Base):
    """Base's decoder given as log_likelihood(x, z), the way a teacher-forced decoder is: no decode(z)."""
    decode = None
    def log_likelihood(self, x, z):
        return Independent(Bernoulli(logits=self.out(z).view(-1, 1, 8, 8)), 3).log_prob(x)

class Drawn(Scored):
    def sample(self, z):
        return torch.bernoulli(torch.sigmoid(self.out(z).view(-1, 1, 8, 8)))

def base(): torch.manual_seed(0); return Base()
def scored(): torch.manual_seed(0); return Scored()
def drawn(): torch.manual_seed(0); return Drawn()
'''


def test_a_model_with_log_likelihood_instead_of_decode_measures_the_same(tmp_path, binary_digits):
    """Two views of one network: p(x|z) as decode(z) and as log_likelihood(x, z) give the same numbers."""
    from core.evaluate import evaluate
    (tmp_path / "scored_models.py").write_text(SCORED)
    plain, scored = (user_bundle(f"{tmp_path / 'scored_models.py'}:{name}", None, binary_digits)
                     for name in ("base", "scored"))
    assert scored.network.family == "log_likelihood"
    a, b = evaluate(plain, binary_digits, n=300), evaluate(scored, binary_digits, n=300)
    assert a.elbo == pytest.approx(b.elbo, abs=1e-4)
    names = ["iwae", "kl", "active-units", "decoder-reliance", "collapse"]
    options = {"iwae": {"k": 8}}
    one, two = run_all(plain, binary_digits, names, options), run_all(scored, binary_digits, names, options)
    assert one["iwae"].iwae == pytest.approx(two["iwae"].iwae, abs=1e-4)
    assert one["decoder-reliance"].zeroed == pytest.approx(two["decoder-reliance"].zeroed, abs=1e-4)
    assert one["collapse"].verdicts == two["collapse"].verdicts
    with pytest.raises(LabError, match="no sample"):
        scored.reconstruct(binary_digits.test_x[:4])
    drawn = user_bundle(f"{tmp_path / 'scored_models.py'}:drawn", None, binary_digits)
    pictures = drawn.reconstruct(binary_digits.test_x[:4])
    assert pictures.shape == (4, 1, 8, 8) and set(pictures.unique().tolist()) <= {0.0, 1.0}


def test_a_pythae_style_model_is_measured_through_its_adapter(tmp_path, binary_digits):
    """examples/pythae_style_vae.py: the lab's KL of the adapted model is the model's own closed-form KL term
    (Pythae's reg_loss) on the same images, and its ELBO is minus the model's own loss, within the noise of
    one draw of z."""
    from core.evaluate import evaluate
    factory = f"{ROOT / 'examples' / 'pythae_style_vae.py'}:build"
    example = sys.modules[import_factory(factory).__module__]
    example.main(["--steps", "200", "--out", str(tmp_path / "ps.safetensors")])
    bundle = user_bundle(factory, str(tmp_path / "ps.safetensors"), binary_digits)
    x, _ = held_out(bundle, binary_digits, 297)
    torch.manual_seed(0)
    with torch.no_grad():
        own = [bundle.network.module.model(x) for _ in range(20)]
    kl = run_all(bundle, binary_digits, ["kl"])["kl"].total
    assert kl == pytest.approx(own[0]["reg_loss"].item(), rel=1e-5)
    own_loss = sum(o["loss"].item() for o in own) / len(own)
    assert -evaluate(bundle, binary_digits).elbo == pytest.approx(own_loss, abs=0.5)
