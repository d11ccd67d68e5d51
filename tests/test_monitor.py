"""Your own loop watched by the lab (core.monitor): the rows it records are the lab's diagnostics of the same
model on the same examples, watching changes nothing the loop computes, the run folder reads back as the same
model at every kept step, and the examples in examples/ run with it."""
import json
import os
import shutil
import sys

import pytest
import torch
from streamlit.testing.v1 import AppTest

from conftest import APP, ROOT
from test_cli import inline
from core import checkpoint
from core.diagnostics import run
from core.errors import LabError
from core.monitor import Monitor, load_run
from core.protocol import import_factory

EXAMPLE = f"{ROOT / 'examples' / 'my_vae.py'}:digits_vae"


def example(name: str):
    """An example's module, imported as --model imports a file (its folder goes on the path, as for a script)."""
    return sys.modules[import_factory(f"{ROOT / 'examples' / name}.py:main").__module__]


my_vae = example("my_vae")


def train(steps: int, monitor_folder=None, every: int = 50):
    """The example's model (examples/my_vae.py) in a loop of its own, with the monitor's lines when a folder is given."""
    return loop_of(my_vae.digits_vae, steps, monitor_folder, every=every, held=300, batch=64, factory=EXAMPLE)


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    folder = tmp_path_factory.mktemp("watched") / "my-run"
    return train(200, folder)


def test_watching_changes_nothing_the_loop_computes(watched):
    model, losses, monitor = watched
    _, plain, _ = train(200)
    assert losses == plain  # its own random stream and eval mode, put back as they were
    assert model.training
    assert [r["step"] for r in monitor.live] == [50, 100, 150, 200]
    row = monitor.live[-1]
    assert len(row["kl_per_dim"]) == 4 and 0 <= row["au"] <= 4 and sum(row["verdicts"].values()) == 4
    assert [r["step"] for r in monitor.live if "verdicts" in r] == [50, 200]  # every 5th row, and the last
    assert row["mi_raw"] <= row["mi_ceiling"] + 1 and row["mi"] >= 0
    assert [r["step"] for r in monitor.history] == list(range(1, 201))


def test_the_run_folder_is_the_same_model_on_the_same_examples(watched):
    """Two views: the live row the loop recorded, and the lab's own diagnostics of the folder read back."""
    model, _, monitor = watched
    folder = monitor.out
    assert {p.name for p in folder.iterdir()} >= {"run.json", "run.safetensors", "held_out.safetensors", "pictures.png"}
    bundle, data = load_run(folder)
    assert bundle.step == 200 and len(data.test_x) == 300
    kl = run("kl", bundle, data, n=300)
    assert kl.total == pytest.approx(monitor.live[-1]["kl"], rel=1e-5)
    with torch.no_grad():  # the weights are the loop's, not a copy made at another step
        x = data.test_x[:5]
        assert torch.allclose(bundle.network.encode(x).mean, model.encode(x).mean)
    earlier, _ = load_run(folder, step=50)  # a kept step: the model as it was then
    assert earlier.step == 50 and run("kl", earlier, data, n=300).total == pytest.approx(monitor.live[0]["kl"], rel=1e-3)
    assert [r["step"] for r in earlier.live] == [50]
    meta = checkpoint.read_sidecar(folder / "run.json")
    assert meta["command"] == "core.monitor" and meta["model"] == EXAMPLE and 50 in meta["snapshots"]["steps"]


def test_the_cli_reads_a_run_folder(watched, capsys):
    _, _, monitor = watched
    done = inline(capsys, "diagnose", str(monitor.out), "--only", "kl,active-units", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["step"] == 200 and out["diagnostics"]["kl"]["total"] == pytest.approx(monitor.live[-1]["kl"], rel=1e-5)
    done = inline(capsys, "evaluate", str(monitor.out), "--step", "100")
    assert done.returncode == 0 and "step 100" in done.stdout
    done = inline(capsys, "evaluate", str(monitor.out), "--dataset", "digits")
    assert done.returncode == 1 and "a run folder holds its weights and held-out data" in done.stderr


def test_bad_arguments_get_one_message(tmp_path):
    model = my_vae.digits_vae()
    x = torch.bernoulli(my_vae.digits()[:10])
    for kwargs, says in [({"every": 0}, "every must be a whole number"), ({"x": x[:1]}, "at least two held-out"),
                         ({"x": x.flatten(1)}, "refuses this data's images"),
                         ({"x": x[:, :, :4]}, r"running .* on a batch of \(1, 4, 8\) examples failed")]:
        with pytest.raises(LabError, match=says):
            Monitor(model, **({"x": x} | kwargs), out=tmp_path / "bad")


def test_a_folder_without_a_factory_shows_its_rows_but_is_not_rebuilt(tmp_path):
    model, _, monitor = train(50, tmp_path / "anonymous")
    monitor.meta.pop("model")
    monitor.save()
    with pytest.raises(LabError, match="names no factory"):
        load_run(tmp_path / "anonymous")


@pytest.mark.skipif(not os.path.exists("/usr/share/dict/words"), reason="Debian's word list (wamerican) is not here")
def test_a_text_vae_whose_likelihood_needs_x_is_watched(tmp_path, capsys, monkeypatch):
    """examples/text_vae.py: token ids, log_likelihood(x, z) and sample(z); its rows carry the words."""
    text_vae = example("text_vae")
    monitor = text_vae.main(["--steps", "40", "--every", "20", "--out", str(tmp_path / "text")])
    row = monitor.live[-1]
    assert [r["step"] for r in monitor.live] == [20, 40] and sum(row["verdicts"].values()) == 16
    assert len(row["samples"]) == 8 and all(isinstance(w, str) for w in row["samples"])
    assert not (tmp_path / "text" / "pictures.png").exists()  # not images: no pictures, words instead
    done = inline(capsys, "diagnose", str(tmp_path / "text"), "--only", "kl,decoder-reliance,iwae", "--k", "4", "--json")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)["diagnostics"]
    assert found["iwae"]["iwae"] >= found["iwae"]["elbo"]  # the k-sample bound is at least the ELBO
    assert found["kl"]["total"] == pytest.approx(row["kl"], rel=1e-4)
    done = inline(capsys, "diagnose", str(tmp_path / "text"), "--only", "aggregate-posterior")
    assert done.returncode == 0
    # the pages: the words where pictures would be, the picture pages saying why they have none, Compare measuring it
    monkeypatch.setenv("VAELAB_WATCH_ROOTS", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["watch"] = "text"
    at.run()
    assert not at.exception and not at.error
    words = at.dataframe[0].value
    assert list(words["held-out example"]) == monitor.meta["monitor"]["held_out_text"]
    assert list(words["its reconstruction"]) == row["reconstructions"]
    for page in ("views/explore.py", "views/latent_map.py"):
        at.switch_page(page)
        at.query_params["model"] = "watch: text"
        at.run()
        assert not at.exception and not at.error and any("not images" in i.value for i in at.info)
    at.switch_page("views/compare.py").run()
    assert not at.exception and not at.error


@pytest.mark.slow
def test_the_pytorch_examples_loop_and_the_lightning_module_are_watched(tmp_path):
    lightning_vae, pytorch_examples_vae = example("lightning_vae"), example("pytorch_examples_vae")
    plain = pytorch_examples_vae.main(["--steps", "60", "--every", "30", "--out", str(tmp_path / "plain")])
    lit = lightning_vae.main(["--max-steps", "60", "--every", "30", "--out", str(tmp_path / "lightning")])
    for monitor in (plain, lit):
        assert [r["step"] for r in monitor.live] == [30, 60] and monitor.live[-1]["au"] > 0
        assert {"loss", "recon", "kl"} <= set(monitor.history[-1])
        assert (monitor.out / "pictures.png").stat().st_size > 0
    assert lit.history[-1]["loss"] == pytest.approx(lit.history[-1]["recon"] + lit.history[-1]["kl"], rel=1e-4)


@pytest.mark.slow
def test_the_notebook_runs(tmp_path, monkeypatch):
    import nbclient
    import nbformat
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    (tmp_path / "checkpoints").symlink_to(ROOT / "checkpoints")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel's torch: one thread beside the other test worker
    notebook = nbformat.read(tmp_path / "examples" / "notebook.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, resources={"metadata": {"path": str(tmp_path / "examples")}}).execute()
    shown = notebook.cells[5].outputs
    kinds = [next(iter(o.get("data", {})), None) for o in shown]
    assert kinds.count("application/vnd.plotly.v1+json") == 4  # KL per dimension, loss, KL over steps, AU and MI


def test_the_train_page_watches_a_run_folder_and_explore_opens_it(watched, monkeypatch):
    _, _, monitor = watched
    monkeypatch.setenv("VAELAB_WATCH_ROOTS", str(monitor.out.parent))
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["watch"] = "my-run"
    at.run()
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["active units"] == f"{monitor.live[-1]['au']} / 4"
    assert any("my-run" in m.value and "step 200" in m.value for m in at.markdown)
    assert len(at.get("imgs")) >= 1 or len(at.get("image")) >= 1  # the loop's pictures
    at.switch_page("views/explore.py")
    at.query_params["model"] = "watch: my-run"
    at.run()
    assert not at.exception and not at.error
    at.switch_page("views/compare.py").run()
    assert not at.exception and not at.error
    at.switch_page("views/gallery.py").run()  # its card among the checkpoints, with the pages that open it
    assert not at.exception and not at.error and any(h.value == "Your own training loops" for h in at.subheader)
    at.button(key="open-Compare-watch: my-run").click().run()
    assert not at.exception and not at.error
    at.switch_page("views/train.py").run()
    assert at.sidebar.selectbox(key="watch").value == "my-run"
    at.sidebar.button[0].click().run()  # Train, pressed while watching: the page shows the run it started
    assert at.sidebar.selectbox(key="watch").value == "none" and "watch" not in at.query_params
    from conftest import session_runs
    for started in session_runs(at).values():
        started.stop()


@pytest.mark.skipif(not os.path.exists("/usr/share/dict/words"), reason="Debian's word list (wamerican) is not here")
def test_an_npz_of_token_rows_goes_through_diagnose_and_evaluate(tmp_path, capsys):
    """Data that are not images: `--dataset words.npz` (N x T token ids) with a --model that scores them."""
    import numpy as np
    from safetensors.torch import save_file
    text_vae = example("text_vae")
    train, held_out = text_vae.read_words()
    rows = torch.cat([train[:900], held_out[:100]]).numpy().astype(np.int32)
    np.savez(tmp_path / "words.npz", x=rows)
    torch.manual_seed(0)
    save_file(text_vae.build().state_dict(), str(tmp_path / "text.safetensors"))
    model = f"{ROOT / 'examples' / 'text_vae.py'}:build"
    args = ["--model", model, "--weights", str(tmp_path / "text.safetensors"), "--dataset", str(tmp_path / "words.npz")]
    done = inline(capsys, "diagnose", *args, "--only", "kl,iwae,decoder-reliance,collapse", "--k", "4", "--json")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)["diagnostics"]
    assert found["iwae"]["iwae"] >= found["iwae"]["elbo"] and len(found["collapse"]["verdicts"]) == 16
    done = inline(capsys, "evaluate", *args, "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["n"] == 100  # the fixed tenth held out
    np.savez(tmp_path / "bad.npz", x=-rows)
    done = inline(capsys, "evaluate", "--model", model, "--dataset", str(tmp_path / "bad.npz"))
    assert done.returncode == 1 and "token ids must be whole numbers from 0" in done.stderr


NOISY = '''
import torch, torch.nn as nn
from torch.distributions import Bernoulli, Independent, Normal

class Noisy(nn.Module):
    """Dropout and batch norm in the encoder: running it in train mode would draw from the loop's stream and
    move the running statistics."""
    latent_dim = 3
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.3),
                                     nn.Linear(32, 6))
        self.decoder = nn.Linear(3, 64)
    def encode(self, x):
        mu, log_var = self.encoder(x).chunk(2, -1)
        return Normal(mu, torch.exp(0.5 * log_var))
    def decode(self, z):
        return Independent(Bernoulli(logits=self.decoder(z).view(-1, 1, 8, 8)), 3)
    def prior(self):
        return Normal(torch.zeros(3), torch.ones(3))

class Scored(Noisy):
    """The same, its likelihood given as log_likelihood(x, z), and no sample(z): nothing to draw pictures with."""
    decode = None
    def log_likelihood(self, x, z):
        return Independent(Bernoulli(logits=self.decoder(z).view(-1, 1, 8, 8)), 3).log_prob(x)

def noisy(): return Noisy()
def scored(): return Scored()
def broken(): raise RuntimeError("my bug")
'''


def loop_of(make, steps: int, folder=None, every: int = 10, held: int = 200, batch: int = 32, **kwargs):
    """A plain loop (Adam on -ELBO, one draw) over binarized digits, watched every `every` steps when a folder
    is given; (the model, its losses, the monitor)."""
    torch.manual_seed(0)
    x = torch.bernoulli(my_vae.digits(), generator=torch.Generator().manual_seed(1))
    model = make()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    monitor = Monitor(model, x[-held:], every=every, out=folder, **kwargs) if folder else None
    losses = []
    for step in range(1, steps + 1):
        data = x[torch.randint(1400, (batch,))]
        q = model.encode(data)
        z = q.rsample()
        scored = getattr(model, "decode", None) is None
        log_p = model.log_likelihood(data, z) if scored else model.decode(z).log_prob(data)
        loss = (torch.distributions.kl_divergence(q, model.prior()).reshape(len(data), -1).sum(-1) - log_p).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if monitor:
            monitor.step(step, loss=loss.item())
    if monitor:
        monitor.close()
    return model, losses, monitor


def test_dropout_and_batch_norm_see_nothing_of_the_monitor(tmp_path):
    """Its protocol check and its rows run in eval mode on a stream of their own: the loop's dropout masks and
    batch-norm statistics are the ones it has unwatched."""
    (tmp_path / "noisy_models.py").write_text(NOISY)
    make = import_factory(f"{tmp_path / 'noisy_models.py'}:noisy")
    watched, losses, monitor = loop_of(make, 30, tmp_path / "noisy", factory=f"{tmp_path / 'noisy_models.py'}:noisy")
    plain, unwatched, _ = loop_of(make, 30)
    assert losses == unwatched and watched.training
    bn_a, bn_b = watched.encoder[2], plain.encoder[2]
    assert torch.equal(bn_a.running_mean, bn_b.running_mean) and bn_a.num_batches_tracked == bn_b.num_batches_tracked
    assert [r["step"] for r in monitor.live] == [10, 20, 30]


def test_a_likelihood_without_sample_is_watched_without_pictures(tmp_path):
    (tmp_path / "noisy_models.py").write_text(NOISY)
    make = import_factory(f"{tmp_path / 'noisy_models.py'}:scored")
    _, losses, monitor = loop_of(make, 20, tmp_path / "scored")
    assert [r["step"] for r in monitor.live] == [10, 20] and "verdicts" in monitor.live[-1]
    assert not (tmp_path / "scored" / "pictures.png").exists()


def test_a_loss_that_diverges_stops_the_monitor_and_keeps_the_last_good_folder(tmp_path):
    model, x = my_vae.digits_vae(), torch.bernoulli(my_vae.digits()[:100])
    monitor = Monitor(model, x, every=5, out=tmp_path / "diverged")
    for step in range(1, 11):
        monitor.step(step, loss=1.0)
    with pytest.warns(UserWarning, match="the loss is nan at step 11"):
        monitor.step(11, loss=float("nan"))
    monitor.step(15, loss=1.0)  # nothing more is measured
    monitor.close()
    meta = checkpoint.read_sidecar(tmp_path / "diverged" / "run.json")
    assert meta["step"] == 10 and meta["stopped"] == "the loss is nan at step 11" and meta["closed"]
    assert all(isinstance(r["loss"], float) for r in meta["history"])
    with pytest.raises(LabError, match="give the loss"):
        Monitor(model, x, every=5, out=tmp_path / "no-loss").step(1, kl=1.0)


def test_a_run_folder_is_never_overwritten_unasked(tmp_path):
    model, x = my_vae.digits_vae(), torch.bernoulli(my_vae.digits()[:100])
    first = Monitor(model, x, every=5, out=tmp_path / "same")
    first.step(5, loss=1.0)
    with pytest.warns(UserWarning, match="holds another run"):
        second = Monitor(model, x, every=5, out=tmp_path / "same")
    assert second.out.name == "same-2" and (tmp_path / "same" / "run.json").exists()
    third = Monitor(model, x, every=5, out=tmp_path / "same", overwrite=True)
    assert third.out.name == "same" and not (tmp_path / "same" / "run.json").exists()


def test_hostile_or_broken_run_folders_are_one_message(tmp_path, monkeypatch, capsys):
    """A sidecar that is not what a Monitor writes, or a factory that fails: one line, and the pages go on."""
    (tmp_path / "noisy_models.py").write_text(NOISY)
    _, _, monitor = loop_of(import_factory(f"{tmp_path / 'noisy_models.py'}:noisy"), 10, tmp_path / "root" / "good",
                            factory=f"{tmp_path / 'noisy_models.py'}:noisy")
    broken = tmp_path / "root" / "broken"
    shutil.copytree(monitor.out, broken)
    meta = json.loads((broken / "run.json").read_text())
    (broken / "run.json").write_text(json.dumps(meta | {"model": f"{tmp_path / 'noisy_models.py'}:broken"}))
    with pytest.raises(LabError, match="RuntimeError: my bug"):
        load_run(broken)
    odd = tmp_path / "root" / "odd"
    shutil.copytree(monitor.out, odd)
    (odd / "run.json").write_text(json.dumps(meta | {"step": None, "monitor": [1, 2], "live": [{"step": 10, "verdicts": 3}]}))
    assert inline(capsys, "diagnose", str(odd), "--only", "kl").returncode == 0  # its weights read; "step": null as 0
    monkeypatch.setenv("VAELAB_WATCH_ROOTS", str(tmp_path / "root"))
    for name in ("broken", "odd", "good"):
        at = AppTest.from_file(APP, default_timeout=60)
        at.query_params["watch"] = name
        at.run()
        assert not at.exception, name
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["watch"] = "odd"
    at.run()
    assert any("Cannot show the run folder odd" in e.value for e in at.error)
    at.switch_page("views/explore.py")
    at.query_params["model"] = "watch: broken"
    at.run()
    assert not at.exception and any("my bug" in e.value for e in at.error)


FLAKY = NOISY + '''
class Flaky(Noisy):
    """Its decoder breaks once the monitor has called it a dozen times: a bug of the user's that shows only later."""
    calls = 0
    def decode(self, z):
        Flaky.calls += 1
        if Flaky.calls > 12:
            raise RuntimeError("index out of range in my decoder")
        return super().decode(z)

def flaky(): return Flaky()
'''


def test_a_measurement_that_fails_never_ends_the_loop(tmp_path):
    (tmp_path / "flaky_models.py").write_text(FLAKY)
    make = import_factory(f"{tmp_path / 'flaky_models.py'}:flaky")
    make.__globals__["Flaky"].calls = -10**9  # its loop may call it freely; the monitor's calls come later
    model = make()
    x = torch.bernoulli(my_vae.digits()[:200])
    monitor = Monitor(model, x, every=10, out=tmp_path / "flaky")
    type(model).calls = 0
    with pytest.warns(UserWarning, match="measuring step .* failed: RuntimeError: index out of range in my decoder"):
        for step in range(1, 101):
            monitor.step(step, loss=1.0)
    assert monitor.stopped and monitor.live and monitor.live[-1]["step"] < 100
    meta = checkpoint.read_sidecar(tmp_path / "flaky" / "run.json")
    assert "index out of range" in meta["stopped"]
