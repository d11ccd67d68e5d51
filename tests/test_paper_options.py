"""The model and training options the reproductions need: batch norm, separate encoder and decoder
activations, the paper networks' convolutions, the squared-error and tanh-variance decoders, the
mu-VAE's variance terms, Adagrad and Adam's betas and the seed's binarization. (The classifier the
mu-VAE reproduction trains alongside a VAE is the experiment's own: tests/test_classifier.py.)"""
import math

import pytest
import torch
import torch.nn as nn

from conftest import needs_shared, small_config
from core.config import RunConfig
from core.engine import Trainer
from core.errors import ConfigError
from core.models import MSE_STD, VAE, ModelConfig
from core.objectives import build

# Table 4 of Ucar (2019): 3x3 convs of 64 channels at strides 1, 2, 2; decoder 7x7x64 -> 7x7x64 -> 14x14x32 -> 28x28x1.
TABLE4 = ModelConfig(arch="conv", channels=(64, 64, 64), strides=(1, 2, 2), kernel=3, activation="leaky-relu",
                     leaky_slope=0.2, decoder_channels=(64, 64, 32), decoder_strides=(1, 2, 2), latent_dim=10,
                     likelihood="mse", init="he")


def layers(module, kind):
    return [m for m in module.modules() if isinstance(m, kind)]


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_batch_norm_sits_after_every_hidden_layer_and_every_parameter_gets_a_gradient(arch):
    cfg = ModelConfig(arch=arch, hidden=(32, 16), channels=(8, 16), batch_norm=True, latent_dim=3, likelihood="bernoulli")
    m = VAE(cfg)
    norms = layers(m, (nn.BatchNorm1d, nn.BatchNorm2d))
    # MLP: 2 encoder + 2 decoder hidden layers; conv: 2 convs, the decoder's linear head and 1 hidden deconv.
    assert len(norms) == 4
    x = torch.rand(5, 1, 28, 28).round()
    q = m.encode(x)
    loss = -m.decode(q.rsample()).log_prob(x).mean() + q.loc.pow(2).mean()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())
    assert m.decode(q.rsample()).mean.shape == x.shape


def test_batch_norm_in_eval_mode_scores_each_image_alone():
    """In eval mode an image's code must not depend on which images share its batch."""
    m = VAE(ModelConfig(arch="conv", channels=(8, 16), batch_norm=True, latent_dim=3, likelihood="bernoulli"))
    m.train()
    m.encode(torch.rand(16, 1, 28, 28))  # move the running statistics away from their start
    m.eval()
    x = torch.rand(4, 1, 28, 28)
    alone = torch.cat([m.encode(x[i:i + 1]).loc for i in range(4)])
    assert torch.allclose(m.encode(x).loc, alone, atol=1e-5)


def test_encoder_and_decoder_take_their_own_activations():
    m = VAE(ModelConfig(arch="conv", channels=(8, 16), activation="leaky-relu", leaky_slope=0.2,
                        decoder_activation="relu", latent_dim=3, likelihood="bernoulli"))
    enc, dec = layers(m.encoder_body, nn.Module), layers(m.decoder, nn.Module)
    assert [type(a) for a in enc if isinstance(a, (nn.ReLU, nn.LeakyReLU))] == [nn.LeakyReLU] * 2
    assert all(a.negative_slope == 0.2 for a in enc if isinstance(a, nn.LeakyReLU))
    assert [type(a) for a in dec if isinstance(a, (nn.ReLU, nn.LeakyReLU))] == [nn.ReLU] * 2
    with pytest.raises(ConfigError, match="decoder activation"):
        ModelConfig(decoder_activation="swish")


def test_table4_network_has_the_papers_shapes():
    m = VAE(TABLE4)
    convs = layers(m.encoder_body, nn.Conv2d)
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (1, 64, (3, 3), (1, 1)), (64, 64, (3, 3), (2, 2)), (64, 64, (3, 3), (2, 2))]
    assert m.features == 7 * 7 * 64 and m.encoder_head.out_features == 2 * 10
    assert m.decoder.head[0].out_features == 7 * 7 * 64
    x = torch.rand(2, 1, 28, 28)
    sizes, h = [], m.decoder.head(m.encode(x).loc).view(-1, 64, 7, 7)
    for layer in m.decoder.deconv:
        h = layer(h)
        if isinstance(layer, nn.ConvTranspose2d):
            sizes.append(tuple(h.shape[1:]))
    assert sizes == [(64, 7, 7), (32, 14, 14), (1, 28, 28)]


@pytest.mark.parametrize("latent,c", [("bernoulli", 50), ("categorical", 100)])
def test_the_discrete_papers_cnn_has_its_table1_shapes(latent, c):
    """Seed 003, Table 1: 3x3 convs of 32/64/64/128 at stride 2, flatten, FC c; the decoder back up
    through 3x3 transposed convs of 64/64/32/1 at stride 2 to 28x28."""
    # as experiments/discrete_curves.py builds it
    m = VAE(ModelConfig(arch="conv", channels=(32, 64, 64, 128), kernel=3, hidden=(), latent_dim=c, latent=latent,
                        likelihood="bernoulli"))
    convs = layers(m.encoder_body, nn.Conv2d)
    assert [(c_.in_channels, c_.out_channels, c_.kernel_size, c_.stride) for c_ in convs] == [
        (1, 32, (3, 3), (2, 2)), (32, 64, (3, 3), (2, 2)), (64, 64, (3, 3), (2, 2)), (64, 128, (3, 3), (2, 2))]
    assert m.encoder_body.sizes == [(28, 28), (14, 14), (7, 7), (4, 4), (2, 2)]
    assert m.encoder_head.out_features == c  # one logit per bit, or per category
    h = m.decoder.head(torch.zeros(2, c)).view(-1, 128, 2, 2)
    sizes = []
    for layer in m.decoder.deconv:
        h = layer(h)
        if isinstance(layer, nn.ConvTranspose2d):
            sizes.append(tuple(h.shape[1:]))
    assert sizes == [(64, 4, 4), (64, 7, 7), (32, 14, 14), (1, 28, 28)]


@pytest.mark.parametrize("shape", [(1, 28, 20), (1, 28, 28), (3, 32, 32)])
def test_explicit_decoder_strides_restore_odd_image_sizes(shape):
    m = VAE(ModelConfig(arch="conv", channels=(8, 8, 8), strides=(2, 2, 2), kernel=3, decoder_channels=(8, 8, 4),
                        decoder_strides=(2, 2, 2), image_shape=shape, latent_dim=2, likelihood="bernoulli"))
    assert m.sample(3).shape == (3, *shape)


def test_mse_likelihood_is_the_squared_error_plus_its_constant():
    """-log N(x; x', 1/2) summed over J pixels = ||x - x'||^2 + (J/2) log pi."""
    m = VAE(ModelConfig(image_shape=(1, 6, 5), hidden=(8,), latent_dim=2, likelihood="mse"))
    z, x = torch.randn(4, 2), torch.rand(4, 1, 6, 5)
    mean = torch.sigmoid(m.decoder(z))
    squared_error = (x - mean).pow(2).sum((1, 2, 3))
    assert MSE_STD ** 2 == pytest.approx(0.5)
    assert torch.allclose(-m.decode(z).log_prob(x), squared_error + 15 * math.log(math.pi), atol=1e-4)
    assert torch.equal(m.mean_image(z), mean)


def test_tanh_decoder_variance_stays_between_one_over_e_and_e():
    m = VAE(ModelConfig(image_shape=(1, 4, 4), hidden=(8,), latent_dim=2, likelihood="gaussian",
                        gaussian_mean="sigmoid", decoder_variance="tanh"))
    last = m.decoder[0][-1]  # the linear layer writing (mean, raw variance) maps
    with torch.no_grad():
        last.weight.fill_(0)
        for sign in (1e4, -1e4):  # saturate the tanh both ways
            last.bias[16:] = sign
            var = m.decode(torch.randn(3, 2)).base_dist.scale.pow(2)
            assert torch.allclose(var, torch.full_like(var, math.e if sign > 0 else 1 / math.e), rtol=1e-5)
    # So the NLL of an image in [0, 1] is at least (J/2)(log 2 pi - 1): the floor under seed 002's Frey bounds.
    x = torch.rand(3, 1, 4, 4)
    assert (-m.decode(torch.randn(3, 2)).log_prob(x) >= 8 * (math.log(2 * math.pi) - 1)).all()


def regularizer(variance, loc, logvar):
    """The mu-VAE's 'mu_regularizer' for a model whose encoder outputs (loc, logvar) for every image."""
    obj = build("mu-vae", {"variance": variance, "clip": 100.0})
    m = VAE(obj.configure_model(ModelConfig(image_shape=(1, 4, 4), hidden=(8,), latent_dim=2, likelihood="bernoulli"), None))
    with torch.no_grad():
        m.encoder_head.weight.zero_()
        m.encoder_head.bias.copy_(torch.tensor([*loc, *logvar]))
    return obj(m, torch.rand(6, 1, 4, 4).round()).terms["mu_regularizer"].item()


def test_mu_vae_variance_terms_are_the_papers():
    loc, logvar = (0.5, -0.25), (0.4, -1.0)
    var = [math.exp(v) for v in logvar]
    mean_term = 6 * abs(sum(loc)) / 6
    assert regularizer("log", loc, logvar) == pytest.approx(mean_term + sum(logvar), rel=1e-5)
    assert regularizer("exp-minus-one", loc, logvar) == pytest.approx(mean_term + sum(v - 1 for v in var), rel=1e-5)
    bounded = sum((v - math.log(v) - 1) / 2 for v in var)
    assert regularizer("bounded", loc, logvar) == pytest.approx(mean_term + bounded, rel=1e-5)
    assert regularizer("bounded", (0, 0), (0, 0)) == pytest.approx(0, abs=1e-6)


def test_the_papers_log_variance_term_has_no_lower_bound_and_the_default_does():
    """Eq. 6 as written: shrinking sigma lowers the loss without end; the bounded term is >= 0."""
    log = [regularizer("log", (0, 0), (v, v)) for v in (0.0, -10.0, -100.0)]
    assert log[0] > log[1] > log[2] and log[2] < -100
    assert min(regularizer("bounded", (0, 0), (v, v)) for v in (3.0, 0.0, -10.0, -100.0)) >= 0


def test_optimizer_and_betas_are_part_of_the_run_config(digits):
    config = small_config(optimizer="adagrad", lr=0.02)
    assert isinstance(Trainer(config, digits).optimizer, torch.optim.Adagrad)
    adam = Trainer(small_config(betas=(0.9, 0.99)), digits).optimizer
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["betas"] == (0.9, 0.99)
    back = RunConfig.from_dict(config.to_dict() | {"betas": [0.9, 0.99]})
    assert back.optimizer == "adagrad" and back.betas == (0.9, 0.99)
    assert RunConfig.from_dict({k: v for k, v in config.to_dict().items() if k not in ("optimizer", "betas")}).optimizer == "adam"
    for bad in ({"optimizer": "sgd"}, {"betas": (0.9, 1.0)}, {"betas": (0.9,)}):
        with pytest.raises(ConfigError):
            small_config(**bad)


@needs_shared
def test_invert_nonzero_binarization_is_the_seeds():
    from core import data as datasets
    raw = datasets.load("mnist")
    inv = datasets.load(datasets.DataSpec("mnist", binarize="invert-nonzero"))
    assert torch.equal(inv.train_x, (raw.train_x == 0).float()) and torch.equal(inv.test_x, (raw.test_x == 0).float())
    assert inv.info.likelihood == "bernoulli"
    assert 0.75 < inv.train_x.mean() < 0.85  # mostly background, now 1


def test_live_rows_leave_batch_norm_statistics_alone(digits):
    """Watching a run must not change it: the live rows read held-out images in eval mode."""
    cfg = small_config(model=ModelConfig(hidden=(32,), latent_dim=3, batch_norm=True))
    watched, unwatched = Trainer(cfg, digits, live_every=1), Trainer(cfg, digits, live_every=0)
    watched.step(5), unwatched.step(5)
    assert len(watched.live) == 5
    for a, b in zip(watched.model.state_dict().values(), unwatched.model.state_dict().values()):
        assert torch.equal(a, b)


def test_a_shared_decoder_variance_is_one_learned_number_that_starts_at_one():
    m = VAE(ModelConfig(image_shape=(1, 4, 4), hidden=(8,), latent_dim=2, likelihood="gaussian",
                        decoder_variance="shared"))
    assert m.decoder[0][-1].out_features == 16  # no second map for the variance
    p = m.decode(torch.randn(3, 2))
    assert torch.equal(p.base_dist.scale, torch.ones(3, 1, 4, 4))
    x = torch.rand(3, 1, 4, 4)
    (-p.log_prob(x).sum()).backward()
    assert m.decoder.log_var.grad is not None and m.decoder.log_var.grad.abs() > 0
    with torch.no_grad():
        m.decoder.log_var.fill_(math.log(4.0))
    assert torch.allclose(m.decode(torch.randn(2, 2)).base_dist.scale, torch.full((2, 1, 4, 4), 2.0))
