"""The remedies for a strong decoder's collapse, each against the floor its paper promises."""
import math

import pytest
import torch

from conftest import small_config
from core import checkpoint
from core.engine import Trainer
from core.models import VAE, ModelConfig
from core.objectives import build
from core.objectives.delta_vae import committed_std


def wild_model(seed=0):
    """An untrained model whose encoder outputs span a wide range (log-variances from about -30 to 30)."""
    torch.manual_seed(seed)
    m = VAE(ModelConfig(hidden=(32,), latent_dim=6, image_shape=(1, 8, 8), likelihood="bernoulli"))
    with torch.no_grad():
        m.encoder_head.weight.mul_(40)
    return m


def test_bn_vae_puts_its_floor_under_the_batch_kl():
    m = wild_model()
    objective = build("bn-vae", {"gamma": 0.7}, model=m)
    with torch.no_grad():
        objective.shift.copy_(torch.linspace(-1, 1, 6))
    x = torch.rand(200, 1, 8, 8)
    m.train()
    with torch.no_grad():
        q = objective.posterior(m, x)
    floor = (0.7 ** 2 + objective.shift ** 2).sum() / 2
    assert torch.allclose(q.mean.var(0, unbiased=False), torch.full((6,), 0.49), rtol=1e-3)  # gamma^2, fixed
    assert q.kl().mean() >= floor * (1 - 1e-3)
    assert floor > 6 * 0.7 ** 2 / 2
    # gamma = 0 is the collapse itself: every mean is its shift, here 0
    objective.gamma = 0.0
    with torch.no_grad():
        objective.shift.zero_()
    assert objective.posterior(m, x).mean.abs().max() < 1e-6


def test_bn_vae_evaluates_each_image_alone_with_its_running_statistics(digits, tmp_path):
    t = Trainer(small_config(objective="bn-vae", settings={"gamma": 0.5}, lr=3e-3), digits, live_every=0)
    t.step(40)
    bundle = t.snapshot()
    assert not torch.equal(bundle.objective.running_var, torch.ones(4))  # the batches' statistics were kept
    x = torch.as_tensor(digits.test_x[:10])
    with torch.no_grad():
        together, alone = bundle.posterior(x).mean, bundle.posterior(x[3:4]).mean
        assert torch.allclose(together[3], alone[0], atol=1e-6)
        checkpoint.save(tmp_path / "bn", bundle)
        assert torch.equal(checkpoint.load(tmp_path / "bn").posterior(x).mean, together)


@pytest.mark.parametrize("delta", [1e-3, 0.1, 2.0])
def test_the_committed_std_is_delta_nats_from_the_prior(delta):
    s2 = committed_std(delta) ** 2
    assert s2 < 1 and (s2 - math.log(s2) - 1) / 2 == pytest.approx(delta, rel=1e-9)


@pytest.mark.parametrize("delta", [0.05, 0.5])
def test_delta_vae_keeps_every_dimension_of_every_image_delta_nats_from_the_prior(delta):
    m = wild_model()
    objective = build("delta-vae", {"delta": delta}, model=m)
    x = torch.cat([torch.rand(300, 1, 8, 8), torch.zeros(1, 1, 8, 8), torch.ones(1, 1, 8, 8)])
    with torch.no_grad():
        per_dim = objective.posterior(m, x).kl_per_dim()
    assert per_dim.min() >= delta * (1 - 1e-5)
    # the floor binds: the smallest KL is near delta, not far above it
    plain = build("vae", model=m).posterior(m, x).kl_per_dim()
    assert plain.min() < delta and per_dim.min() < 3 * delta


def test_both_remedies_train_a_pixelcnn_with_their_floors_held(digits):
    model = ModelConfig(hidden=(64,), latent_dim=4, pixelcnn_layers=2, pixelcnn_channels=8)
    for name, settings, floor in [("bn-vae", {"gamma": 0.8}, 4 * 0.8 ** 2 / 2), ("delta-vae", {"delta": 0.3}, 4 * 0.3)]:
        t = Trainer(small_config(model=model, objective=name, settings=settings, lr=3e-3), digits, live_every=0)
        t.step(60)
        assert min(row["kl"] for row in t.history) >= floor * 0.999, name


def aggressive_trainer(digits, steps=0, **settings):
    model = ModelConfig(hidden=(64,), latent_dim=4, pixelcnn_layers=1, pixelcnn_channels=8)
    t = Trainer(small_config(model=model, objective="aggressive", settings=settings, lr=3e-3), digits, live_every=0)
    t.step(steps) if steps else None
    return t


def test_the_inner_loop_stops_when_its_windowed_loss_rises_or_at_its_cap(digits):
    t = aggressive_trainer(digits, check_every=3, inner_steps=40)
    seen = []
    for _ in range(12):
        t.step(1)
        seen.append(list(t.objective.inner_losses))
        assert t.history[-1]["inner_steps"] == len(seen[-1])
    for losses in seen:
        windows = [sum(losses[i:i + 3]) / 3 for i in range(0, len(losses) // 3 * 3, 3)]
        assert all(a >= b for a, b in zip(windows, windows[1:-1]))  # it went on while the loss fell ...
        assert len(losses) == 40 or (len(losses) % 3 == 0 and windows[-1] > windows[-2])  # ... and stopped as it rose
    assert any(len(losses) < 40 for losses in seen) and len({len(losses) for losses in seen}) > 1


def test_while_aggressive_the_training_step_moves_the_decoder_alone(digits):
    t = aggressive_trainer(digits)
    x = torch.as_tensor(digits.train_x[:32])
    t.model.train()
    out = t.objective(t.model, x, None, 0)
    out.loss.backward()
    assert all(p.grad is None for p in t.model.encoder_parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in t.model.decoder_parameters())
    t.objective.aggressive.fill_(False)
    t.model.zero_grad(set_to_none=True)
    t.objective(t.model, x, None, 0).loss.backward()
    assert all(p.grad is not None for p in t.model.encoder_parameters())
    # evaluated, its loss is the ELBO's gradient into both networks, aggressive or not (the gradient diagnostics)
    t.objective.aggressive.fill_(True)
    t.model.eval().zero_grad(set_to_none=True)
    t.objective(t.model, x, None, 0).loss.backward()
    assert all(p.grad is not None for p in t.model.encoder_parameters())


def test_aggressive_training_ends_when_the_mutual_information_stops_rising_and_a_resume_keeps_the_phase(digits, tmp_path):
    t = aggressive_trainer(digits, steps=120, mi_every=10, patience=2, inner_steps=5)
    phase = [row["aggressive"] for row in t.history]
    assert phase[0] == 1 and phase[-1] == 0 and sorted(phase, reverse=True) == phase  # once off, it stays off
    assert t.objective.worse_checks.item() == 2
    bundle = t.snapshot()
    checkpoint.save(tmp_path / "agg", bundle)
    assert not checkpoint.load(tmp_path / "agg").objective.aggressive
    # the inner loop draws from the run's own random stream: the same seed, the same run
    again = aggressive_trainer(digits, steps=120, mi_every=10, patience=2, inner_steps=5)
    assert [r["loss"] for r in again.history] == [r["loss"] for r in t.history]
