"""Diagnostics on models whose answers are known by construction."""
import math

import pytest
import torch

from core.diagnostics import DIAGNOSTICS
from core.models import VAE, ModelConfig


def mnist_model(latent=10):
    torch.manual_seed(0)
    return VAE(ModelConfig(hidden=(64,), latent_dim=latent, likelihood="bernoulli"))


def test_registry_lists_the_diagnostics():
    assert {"kl", "active-units", "mutual-information"} <= set(DIAGNOSTICS.names())


def test_an_encoder_that_ignores_x_is_collapsed_on_every_measure(mnist):
    m = mnist_model()
    with torch.no_grad():  # q(z|x) = N(0, I) for every x: collapsed by construction
        m.encoder_head.weight.zero_()
        m.encoder_head.bias.zero_()
    assert DIAGNOSTICS.get("active-units")(m, mnist, n=500).count == 0
    kl = DIAGNOSTICS.get("kl")(m, mnist, n=500)
    assert kl.total == pytest.approx(0, abs=1e-6)
    mi = DIAGNOSTICS.get("mutual-information")(m, mnist, n=500)
    assert abs(mi.mi) < 0.05 and not mi.at_ceiling


def test_three_of_ten_dimensions_carrying_signal(mnist):
    m = mnist_model()
    with torch.no_grad():  # dims 3-9 of the mean and all log-variances ignore x
        m.encoder_head.weight[3:].zero_()
        m.encoder_head.bias.zero_()
        m.encoder_head.weight[:3] *= 20
    au = DIAGNOSTICS.get("active-units")(m, mnist)
    assert au.count == 3 and all(v > 0.01 for v in au.variances[:3])
    kl = DIAGNOSTICS.get("kl")(m, mnist)
    assert set(sorted(range(10), key=lambda d: -kl.per_dim[d])[:3]) == {0, 1, 2}
    assert max(kl.per_dim[3:]) < 1e-6


def test_mutual_information_decomposes_the_kl_and_respects_its_ceiling(mnist):
    m = mnist_model()
    with torch.no_grad():
        m.encoder_head.weight[:10] *= 50  # very informative means: MI pinned at log B
        m.encoder_head.bias[10:] = -6.0   # and narrow posteriors
    mi = DIAGNOSTICS.get("mutual-information")(m, mnist, n=256)
    assert mi.ceiling == pytest.approx(math.log(256))
    # log q(z_i) >= log q(z_i|x_i) - log B, so the estimate exceeds log B only by the noise of its
    # one-sample entropy term (about 0.15 nats here)
    assert mi.at_ceiling and mi.mi <= mi.ceiling + 0.5
    assert mi.kl == pytest.approx(mi.mi + mi.aggregate_kl)
    assert mi.kl > mi.mi  # the rest of the KL is the aggregate posterior's mismatch with the prior


def test_probe_reads_class_information_from_the_encoder_means(mnist, digits):
    m = mnist_model()
    informative = DIAGNOSTICS.get("probe")(m, mnist, n_train=5000, n_test=2000)
    with torch.no_grad():
        m.encoder_head.weight.zero_()
    blind = DIAGNOSTICS.get("probe")(m, mnist, n_train=5000, n_test=2000)
    # even an untrained encoder's 10-d code separates digits well above chance; a constant code cannot
    assert informative.logistic_accuracy > 0.3 and informative.knn_accuracy > 0.3  # chance is 0.1
    assert blind.logistic_accuracy < 0.15 and blind.n_train == 5000


def test_probe_needs_labels():
    from core.data import load
    from core.errors import ConfigError
    with pytest.raises(ConfigError, match="needs class labels"):
        DIAGNOSTICS.get("probe")(mnist_model(), load("binarized-mnist"))


def test_decoder_reliance_shows_no_gap_for_a_decoder_that_ignores_z(mnist, digits):
    m = mnist_model(latent=4)
    with torch.no_grad():  # the decoder's first layer reads nothing from z
        m.decoder[0][0].weight.zero_()
    collapsed = DIAGNOSTICS.get("decoder-reliance")(m, mnist, n=500)
    assert collapsed.gap == pytest.approx(0, abs=1e-5)
    assert collapsed.prior == pytest.approx(collapsed.posterior, abs=1e-5)
    assert max(collapsed.zeroed) == pytest.approx(min(collapsed.zeroed), abs=1e-5)

    from conftest import small_config
    from core.engine import Trainer
    t = Trainer(small_config(lr=3e-3), digits)
    t.step(400)
    used = DIAGNOSTICS.get("decoder-reliance")(t.snapshot(), digits, n=297)
    assert used.gap > 1.0 and used.posterior > used.prior
