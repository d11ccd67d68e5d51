"""The classifier the mu-VAE reproduction (experiments/mu_vae_probe.py) trains alongside a VAE on its
latent codes: experiments/classifier.py, imported from its file as the reproduction scripts are."""
import importlib.util

import torch

from conftest import ROOT, small_config
from core.engine import Trainer
from core.models import ModelConfig

spec = importlib.util.spec_from_file_location("_experiments_classifier", ROOT / "experiments" / "classifier.py")
classifier_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(classifier_module)
LatentClassifier = classifier_module.LatentClassifier


def test_classifier_and_vae_updates_leave_each_other_untouched(digits):
    trainer = Trainer(small_config(model=ModelConfig(hidden=(32,), latent_dim=3, batch_norm=True)), digits, live_every=0)
    trainer.step(3)
    classifier = LatentClassifier(3, 10, width=32, lr=1e-3)
    x, y = digits.train_x[:64], digits.train_y[:64]
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    losses = [classifier.update(trainer.model, x, y)[0] for _ in range(60)]
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())  # weights and BN buffers
    assert trainer.model.training  # left in the mode it was in
    assert losses[-1] < losses[0]  # and the classifier did learn
    kept = [p.clone() for p in classifier.parameters()]
    trainer.step(3)
    assert all(torch.equal(a, b) for a, b in zip(kept, classifier.parameters()))
    assert 0.0 <= classifier.accuracy(trainer.model, digits.test_x, digits.test_y) <= 1.0


def test_a_saved_classifier_goes_on_exactly_as_one_that_never_stopped(digits, tmp_path):
    """The mu-VAE reproduction resumes a stopped run: weights, Adam's state and both random streams."""
    trainer = Trainer(small_config(model=ModelConfig(hidden=(32,), latent_dim=3)), digits, live_every=0)
    x, y = digits.train_x, digits.train_y

    def steps(c, order, n):
        for _ in range(n):
            idx = torch.randint(len(x), (32,), generator=order)
            c.update(trainer.model, x[idx], y[idx])

    torch.manual_seed(0)
    a, order_a = LatentClassifier(3, 10, width=16, lr=1e-3), torch.Generator().manual_seed(1)
    steps(a, order_a, 5)
    a.save(tmp_path / "c.safetensors", 5, order=order_a)
    steps(a, order_a, 5)
    torch.manual_seed(9)  # another start: everything must come from the file
    b, order_b = LatentClassifier(3, 10, width=16, lr=1e-3, seed=4), torch.Generator().manual_seed(2)
    assert not b.restore(tmp_path / "c.safetensors", 6, order=order_b)  # another step: refused, nothing changed
    assert b.restore(tmp_path / "c.safetensors", 5, order=order_b)
    steps(b, order_b, 5)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
