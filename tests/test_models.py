import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from core.errors import ConfigError
from core.models import VAE, ModelConfig, initialize


@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 28, 20), (1, 8, 8), (3, 32, 32)])
def test_decoder_returns_images_of_the_input_shape(arch, shape):
    for likelihood, obs_std in (("bernoulli", 0.0), ("gaussian", 0.0), ("gaussian", 0.1)):
        m = VAE(ModelConfig(arch=arch, image_shape=shape, latent_dim=5, likelihood=likelihood, obs_std=obs_std,
                            channels=(8, 16, 16) if min(shape[1:]) >= 8 else (8, 16)))
        x = torch.rand(3, *shape)
        q = m.encode(x)
        assert q.loc.shape == (3, 5) and (q.scale > 0).all()
        px = m.decode(q.rsample())
        assert px.event_shape == shape and px.log_prob(x).shape == (3,)
        assert m.reconstruct(x).shape == (3, *shape) and m.sample(2).shape == (2, *shape)


def test_gaussian_likelihood_matches_the_normal_density():
    m = VAE(ModelConfig(image_shape=(1, 4, 4), latent_dim=2, likelihood="gaussian", obs_std=0.5, hidden=(8,)))
    z, x = torch.randn(2, 2), torch.rand(2, 1, 4, 4)
    mean = m.decoder(z)
    expected = (-0.5 * ((x - mean) / 0.5) ** 2 - math.log(0.5) - 0.5 * math.log(2 * math.pi)).sum((1, 2, 3))
    assert torch.allclose(m.decode(z).log_prob(x), expected, atol=1e-4)


def test_sigmoid_gaussian_mean_stays_in_the_unit_interval_and_is_the_squashed_output():
    """Kingma & Welling (2014), app. C.2: for Frey Faces the decoder's mean is a sigmoid of the output."""
    for obs_std in (0.5, 0.0):
        m = VAE(ModelConfig(image_shape=(1, 4, 4), latent_dim=2, likelihood="gaussian", obs_std=obs_std, hidden=(8,),
                            gaussian_mean="sigmoid"))
        z = 10 * torch.randn(64, 2, generator=torch.Generator().manual_seed(0))  # far outside the prior too
        mean = m.decode(z).base_dist.loc
        # [0, 1], not (0, 1): a float32 sigmoid of an output past about 17 rounds to exactly 1
        assert ((mean >= 0) & (mean <= 1)).all()
        assert torch.allclose(mean, torch.sigmoid(m.decoder(z)[:, :1]))
    with pytest.raises(ConfigError, match="gaussian_mean"):
        ModelConfig(gaussian_mean="tanh")


def test_learned_gaussian_std_has_a_floor():
    m = VAE(ModelConfig(image_shape=(1, 4, 4), latent_dim=2, likelihood="gaussian", hidden=(8,)))
    with torch.no_grad():
        m.decoder[0][-1].bias[16:] = -1e4  # drive the std output as low as it goes
    assert m.decode(torch.zeros(1, 2)).base_dist.scale.min() >= 1e-2


@pytest.mark.parametrize("activation", ["relu", "leaky-relu", "tanh"])
def test_activations(activation):
    m = VAE(ModelConfig(activation=activation, image_shape=(1, 8, 8), likelihood="bernoulli"))
    assert any(type(layer).__name__.lower().startswith(activation.split("-")[0][:4]) for layer in m.modules())


@pytest.mark.parametrize("init,gain", [("vlae", 2 ** (1 / 3)), ("vlae-code", math.sqrt(2 / (1 + 2 ** (2 / 3))))])
def test_vlae_init_is_he_on_the_backward_pass_with_a_cube_root_of_two(init, gain):
    torch.manual_seed(0)
    m = VAE(ModelConfig(hidden=(1024, 512), init=init, image_shape=(1, 28, 28), likelihood="bernoulli"))
    layer = m.encoder_body[1][2]  # 1024 -> 512: fan-out 512, not fan-in
    assert layer.weight.std().item() == pytest.approx(gain / math.sqrt(layer.out_features), rel=0.01)
    assert (layer.bias == 0).all() == (init == "vlae")  # the authors' code leaves PyTorch's biases


def test_he_init_is_for_the_forward_pass():
    torch.manual_seed(0)
    he = VAE(ModelConfig(hidden=(1024, 1024), init="he", image_shape=(1, 28, 28), likelihood="bernoulli"))
    assert he.encoder_body[1][2].weight.std().item() == pytest.approx(math.sqrt(2 / 1024), rel=0.01)


def test_vlae_gain_preserves_the_gradient_variance_through_two_relu_layers_and_a_linear_one():
    """The supplement's argument for 2^(1/3): backward through ReLU-ReLU-linear at fan-out init, the
    gradient keeps its variance."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(400, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(), nn.Linear(400, 400))
    initialize(net, "vlae")
    x = torch.randn(4000, 400, requires_grad=True)
    g = torch.randn(4000, 400)
    net(x).backward(g)
    assert x.grad.var().item() == pytest.approx(g.var().item(), rel=0.1)


@pytest.mark.parametrize("kwargs,message", [
    ({"latent_dim": 0}, "latent size must be at least 1"),
    ({"arch": "transformer"}, "arch must be"),
    ({"activation": "gelu"}, "activation must be"),
    ({"obs_std": float("nan")}, "obs_std"),
    ({"hidden": (0,)}, "widths"),
    ({"arch": "conv", "channels": (4,) * 6}, "1 to 5 layers"),
])
def test_bad_model_configs_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig(**kwargs)


def test_too_many_conv_layers_for_a_small_image():
    with pytest.raises(ConfigError, match="shrink"):
        VAE(ModelConfig(arch="conv", channels=(4, 4, 4, 4), image_shape=(1, 8, 8), likelihood="bernoulli"))


@pytest.mark.parametrize("kwargs", [
    dict(likelihood="bernoulli"),
    dict(likelihood="gaussian"),  # a per-pixel std: the mean is the first half of the outputs
    dict(likelihood="gaussian", decoder_variance="shared", gaussian_mean="sigmoid"),
    dict(likelihood="mse", batch_norm=True, activation="leaky-relu", leaky_slope=0.2),
    dict(likelihood="bernoulli", n_classes=10, decoder_activation="tanh"),
])
def test_the_decoder_as_plain_layers_decodes_as_the_network_does(kwargs):
    """The Explore sliders decode in the browser from core.explore.decoder_program: batch norm and a fixed
    label folded into plain affine layers must give the network's own mean picture."""
    from core.explore import decoder_program
    torch.manual_seed(0)
    net = VAE(ModelConfig(hidden=(32, 16), latent_dim=5, **kwargs))
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm1d):  # statistics far from the identity, so folding them shows
            m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.3, 3), m.weight.data.uniform_(0.5, 2)
            m.bias.data.uniform_(-1, 1)
    net.eval()
    program = decoder_program(net, y=3)
    z = torch.randn(7, 5) * 2
    y = torch.full((7,), 3) if kwargs.get("n_classes") else None
    want = net.mean_image(z, y).clamp(0, 1).detach().numpy()
    assert np.abs(program(z.numpy()) - want).max() < 1e-5
    assert decoder_program(VAE(ModelConfig(arch="conv", latent_dim=5, likelihood="bernoulli"))) is None


def test_the_decoder_program_shows_a_mean_normalized_model_in_pixels(digits):
    from core import data as datasets
    from core.explore import decode, decoder_program
    normalized = datasets.load(datasets.DataSpec("digits", normalize="mean"))
    net = VAE(ModelConfig(hidden=(16,), latent_dim=3, likelihood="gaussian", image_shape=normalized.info.shape)).eval()
    z = torch.randn(4, 3)
    want = normalized.to_image(decode(net, z)).numpy()
    assert np.abs(decoder_program(net, data=normalized)(z.numpy()) - want).max() < 1e-5
