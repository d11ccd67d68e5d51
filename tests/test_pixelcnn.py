"""A PixelCNN decoder (core.pixelcnn): known answers for its mask, its normalization and its sampler, and
the lab's diagnostics on a model whose likelihood needs x."""
import itertools
import math

import pytest
import torch

from conftest import small_config
from core import checkpoint
from core.diagnostics import DIAGNOSTICS, run
from core.engine import Trainer
from core.errors import ConfigError
from core.evaluate import evaluate
from core.models import VAE, ModelConfig
from core.report import Skipped, run_all


def pixelcnn_model(side=8, kernels=(5, 3, 3), channels=6, latent=3, seed=0, by="map"):
    torch.manual_seed(seed)
    m = VAE(ModelConfig(hidden=(16,), latent_dim=latent, image_shape=(1, side, side), likelihood="bernoulli",
                        pixelcnn_layers=len(kernels), pixelcnn_kernels=kernels, pixelcnn_channels=channels, pixelcnn_z=by))
    with torch.no_grad():  # untrained gates sit near 0.5; larger weights make every dependence visible
        for p in m.pixelcnn.parameters():
            p.mul_(3)
    return m.eval()


@pytest.mark.parametrize("by", ["map", "bias"])
def test_a_pixels_logit_never_reads_that_pixel_or_any_after_it(by):
    m = pixelcnn_model(by=by)
    z = torch.randn(1, 3)
    x = (torch.rand(1, 1, 8, 8) < 0.5).float()
    batch = x.repeat(65, 1, 1, 1)  # the image, then 64 copies with one pixel flipped each
    batch.view(65, 64)[torch.arange(1, 65), torch.arange(64)] = 1 - x.view(64)
    with torch.no_grad():
        logits = m.decode(z.expand(65, 3)).logits(batch).view(65, 64)
    change = (logits[1:] - logits[0]).abs()  # [flipped pixel, logit]
    for i in range(64):
        assert change[i, :i + 1].max() < 1e-5, i          # its own logit and those before it: untouched
    assert (change[:-1].max(1).values > 1e-3).all()       # and the next pixels do read it


@pytest.mark.parametrize("side,kernels,by", [(2, (3,), "map"), (3, (5, 3), "map"), (3, (5, 3), "bias")])
def test_the_likelihood_sums_to_one_over_every_image(side, kernels, by):
    m = pixelcnn_model(side, kernels, by=by)
    pixels = side * side
    every = torch.tensor(list(itertools.product([0.0, 1.0], repeat=pixels))).view(-1, 1, side, side)
    z = torch.randn(1, 3).expand(len(every), 3)
    with torch.no_grad():
        total = torch.logsumexp(m.decode(z).log_prob(every).double(), 0)
    assert total.item() == pytest.approx(0.0, abs=1e-5)


def naive_sample(p, noise):
    """Pixel by pixel over the whole image, recording each drawn pixel's log-probability."""
    x, logs = torch.zeros_like(noise), torch.zeros(len(noise))
    for row, col in itertools.product(range(noise.shape[-2]), range(noise.shape[-1])):
        prob = p.probs(x)[:, 0, row, col]
        x[:, 0, row, col] = (noise[:, 0, row, col] < prob).float()
        logs += torch.where(x[:, 0, row, col] > 0, prob, 1 - prob).log()
    return x, logs


@pytest.mark.parametrize("by", ["map", "bias"])
def test_the_sampler_draws_what_teacher_forcing_scores(by):
    m = pixelcnn_model(side=10, kernels=(7, 5, 3), by=by)
    with torch.no_grad():
        p = m.decode(torch.randn(4, 3))
        noise = torch.rand(4, 1, 10, 10)
        x, logs = naive_sample(p, noise)
        assert torch.equal(p.sample(noise=noise), x)  # the sampler's cropped rows give the full pass's pixels
        assert torch.allclose(p.log_prob(x), logs, atol=1e-4)  # one teacher-forced pass: the sum of the draws' logs


def test_a_picture_is_a_draw_with_fixed_noise_so_only_z_changes_it():
    m = pixelcnn_model()
    z = torch.randn(5, 3)
    assert torch.equal(m.mean_image(z), m.mean_image(z))
    assert torch.equal(m.mean_image(z[:1]), m.mean_image(z)[:1])  # one picture per code, whatever the batch
    assert set(m.mean_image(z).unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("changes,message", [
    ({"image_shape": (3, 8, 8)}, "binary one-channel"),
    ({"likelihood": "gaussian"}, "binary one-channel"),
    ({"pixelcnn_kernels": (4, 3)}, "odd"),
    ({"pixelcnn_kernels": (5,)}, "one PixelCNN kernel size per layer"),
    ({"pixelcnn_layers": 17, "pixelcnn_kernels": ()}, "up to 16"),
    ({"pixelcnn_kernels": (17, 3)}, "up to 15"),
])
def test_a_pixelcnn_it_cannot_build_is_refused_by_name(changes, message):
    base = dict(image_shape=(1, 8, 8), likelihood="bernoulli", pixelcnn_layers=2, pixelcnn_kernels=(5, 3))
    with pytest.raises(ConfigError, match=message):
        ModelConfig(**(base | changes))


@pytest.fixture(scope="module")
def trained(digits):
    cfg = small_config(model=ModelConfig(hidden=(64,), latent_dim=4, pixelcnn_layers=2, pixelcnn_channels=8),
                       lr=3e-3)
    t = Trainer(cfg, digits, live_every=20)
    t.step(60)
    return t


def test_every_diagnostic_runs_on_a_pixelcnn_and_the_bound_is_above_the_elbo(trained, digits):
    bundle = trained.snapshot()
    assert bundle.network.autoregressive and {"kl", "au", "mi"} <= set(trained.live[-1])
    results = run_all(bundle, digits, names=DIAGNOSTICS.names())
    skipped = {name for name, r in results.items() if isinstance(r, Skipped)}
    assert skipped == {"code-usage"}, {name: results[name].skipped for name in skipped}  # Gaussian latents
    bound = run("iwae", bundle, digits, k=20, n=200)
    assert bound.iwae >= bound.elbo
    result = evaluate(bundle, digits, n=200)
    # evaluate's one-draw ELBO and the bound's k = 1 term estimate the same number
    assert abs(result.elbo - bound.elbo) < 4 * 30 / math.sqrt(200)


def test_a_pixelcnn_checkpoint_scores_and_draws_as_it_did(trained, digits, tmp_path):
    bundle = trained.snapshot()
    checkpoint.save(tmp_path / "m", bundle)
    again = checkpoint.load(tmp_path / "m")
    x = torch.as_tensor(digits.test_x[:8])
    z = torch.randn(8, 4)
    with torch.no_grad():
        assert torch.equal(again.network.decode(z).log_prob(x), bundle.network.decode(z).log_prob(x))
    assert torch.equal(again.network.mean_image(z), bundle.network.mean_image(z))


def test_one_teacher_forced_pass_shows_what_z_changes():
    from core import explore
    m = pixelcnn_model()
    x = (torch.rand(1, 8, 8) < 0.5).float()
    codes = torch.randn(3, 3)
    maps = explore.teacher_forced(m, codes, x)
    assert maps.shape == (3, 1, 8, 8) and not torch.allclose(maps[0], maps[1])
    with torch.no_grad():
        assert torch.allclose(maps[2], m.decode(codes[2:]).probs(x[None])[0])
    # with U z and the map of z removed, the decoder reads nothing of z: one map for every code
    with torch.no_grad():
        for layer in m.pixelcnn.layers:
            layer.from_z.weight.zero_()
            layer.from_map.weight.zero_()
        m.decoder[0][-1].weight.zero_()
    deaf = explore.teacher_forced(m, codes, x)
    assert torch.allclose(deaf[0], deaf[1]) and torch.allclose(deaf[0], deaf[2])
    assert explore.decoder_program(m) is None
