"""Each objective of the seed papers, tested by the property that defines it."""
import math

import pytest
import torch
from sklearn.linear_model import LogisticRegression

from conftest import small_config
from core.cli import main
from core.engine import Trainer
from core.errors import ConfigError
from core.models import VAE, ModelConfig
from core.objectives import OBJECTIVES, as_event, build, draw, elbo_parts, log_weights
from core.objectives.dvae import salt_and_pepper
from core.objectives.mmd_vae import mmd2_unbiased
from torch.distributions import kl_divergence


def model(latent=4, **kw):
    torch.manual_seed(0)
    kw.setdefault("likelihood", "bernoulli")
    return VAE(ModelConfig(hidden=(32,), latent_dim=latent, image_shape=(1, 8, 8), **kw))


# ---------------------------------------------------------------- IWAE

def test_iwae_bound_is_at_least_the_elbo_of_the_same_samples(digits):
    m, x = model(), digits.test_x[:64]
    log_w, _ = log_weights(m, x, None, *draw(as_event(m.encode(x)), 10))
    iwae = torch.logsumexp(log_w, 0) - math.log(10)
    assert (iwae >= log_w.mean(0) - 1e-5).all()  # log of a mean >= mean of logs, image by image


def test_iwae_with_k1_is_the_elbo(digits):
    m, x = model(), digits.test_x[:64]
    torch.manual_seed(5)
    out = build("iwae", {"k": 1})(m, x)
    torch.manual_seed(5)
    log_w, _ = log_weights(m, x, None, *draw(as_event(m.encode(x)), 1))
    assert torch.allclose(-out.loss, log_w.mean())  # the one-sample ELBO estimate, exactly
    with torch.no_grad():  # and in expectation the closed-form-KL ELBO
        draws = torch.stack([build("iwae", {"k": 1})(m, x).loss for _ in range(400)])
        elbos = torch.stack([sum(map(lambda t: t.sum(-1) if t.dim() > 1 else t, elbo_parts(m, x))).mean()
                             for _ in range(400)])
    se = math.hypot(draws.std().item(), elbos.std().item()) / math.sqrt(400)
    assert abs(draws.mean().item() - elbos.mean().item()) < 4 * se


def test_iwae_bound_does_not_decrease_with_k(digits):
    m, x = model(), digits.test_x[:32]
    with torch.no_grad():
        means = [torch.stack([-build("iwae", {"k": k})(m, x).loss for _ in range(100)]).mean().item()
                 for k in (1, 2, 10, 50)]
    assert means == sorted(means) and means[-1] - means[0] > 0.1


def test_iwae_is_stable_for_huge_negative_log_weights(digits):
    m = model(likelihood="gaussian", obs_std=1e-3)  # log p(x|z) of order -1e5
    out = build("iwae", {"k": 50})(m, digits.test_x[:8])
    assert torch.isfinite(out.loss) and out.loss > 1e4


# ---------------------------------------------------------------- denoising VAE

def test_salt_and_pepper_honours_the_noise_level():
    torch.manual_seed(0)
    x = torch.full((200, 1, 28, 28), 0.5)
    noisy = salt_and_pepper(x, 0.05)
    hit = noisy != 0.5
    n = hit.numel()
    assert abs(hit.float().mean().item() - 0.05) < 4 * math.sqrt(0.05 * 0.95 / n)
    assert set(noisy[hit].unique().tolist()) == {0.0, 1.0}
    assert abs(noisy[hit].mean().item() - 0.5) < 0.02
    assert torch.equal(salt_and_pepper(x, 0.0), x)


def test_dvae_corrupts_the_encoder_input_only(digits):
    m, x = model(), digits.train_x[:128]
    seen = []
    m.encoder_body.register_forward_pre_hook(lambda mod, args: seen.append(args[0].clone()))
    torch.manual_seed(9)
    out = build("dvae", {"noise": 0.2})(m, x)
    changed = (seen[0] != x).float().mean().item()
    assert 0.05 < changed < 0.2  # about 0.2 of pixels hit; those already at 0 or 1 may not change
    torch.manual_seed(9)  # replay the same draws: the corruption, then z
    noisy = salt_and_pepper(x, 0.2)
    recon_clean, _ = elbo_parts(m, noisy, target=x)
    assert torch.equal(noisy, seen[0])  # the encoder saw the corrupted images
    assert torch.allclose(out.terms["recon"], recon_clean.mean())  # the decoder was scored on clean x
    torch.manual_seed(9)
    noisy = salt_and_pepper(x, 0.2)
    recon_noisy, _ = elbo_parts(m, noisy, target=noisy)
    assert not torch.allclose(recon_noisy.mean(), recon_clean.mean())


# ---------------------------------------------------------------- conditional VAE

@pytest.mark.slow
def test_cvae_output_depends_on_the_label_and_generates_a_chosen_class(digits):
    t = Trainer(small_config(objective="cvae", lr=3e-3, model=ModelConfig(hidden=(128,), latent_dim=4)), digits)
    assert t.model.cfg.n_classes == 10
    t.step(1500)
    m = t.snapshot().network
    z = torch.zeros(10, 4)
    with torch.no_grad():
        images = m.mean_image(z, torch.arange(10))
    gaps = torch.cdist(images.flatten(1), images.flatten(1))
    assert gaps[~torch.eye(10, dtype=bool)].min() > 0.5  # every label draws a different picture at fixed z

    probe = LogisticRegression(max_iter=2000).fit(digits.train_x.flatten(1).numpy(), digits.train_y.numpy())
    assert probe.score(digits.test_x.flatten(1).numpy(), digits.test_y.numpy()) > 0.9
    wanted = torch.arange(10).repeat(20)
    gen = torch.Generator().manual_seed(0)
    samples = m.sample(len(wanted), generator=gen, y=wanted)
    accuracy = probe.score(samples.flatten(1).numpy(), wanted.numpy())
    assert accuracy > 0.8, accuracy


def test_cvae_needs_labels():
    from core.data import DataInfo
    with pytest.raises(ConfigError, match="needs class labels"):
        build("cvae").configure_model(ModelConfig(), DataInfo("frey", (1, 28, 20), 0, "gaussian"))


# ---------------------------------------------------------------- mu-VAE and latent clipping

def test_mu_vae_regularizer(digits):
    m, x = model(latent=10), digits.train_x[:50]
    out = build("mu-vae")(m, x)
    q = m.encode(x)
    var = q.scale ** 2
    expected = q.loc.sum().abs() / 50 + (var - var.log() - 1).sum() / 100
    assert torch.allclose(out.terms["mu_regularizer"], expected, rtol=1e-5)
    assert torch.allclose(out.loss, out.terms["recon"] + expected, rtol=1e-5)
    # bounded below by 0, reached exactly when the batch's means cancel and every sigma is 1
    with torch.no_grad():
        m.encoder_head.weight.zero_()
        m.encoder_head.bias.zero_()
    assert build("mu-vae")(m, x).terms["mu_regularizer"].abs() < 1e-6


@pytest.mark.parametrize("clip", [3.0, 6.0])
def test_mu_vae_means_stay_inside_the_clip_ball_after_every_step(digits, clip):
    t = Trainer(small_config(objective="mu-vae", settings={"clip": clip}, lr=1e-2,
                             model=ModelConfig(hidden=(64,), latent_dim=10)), digits)
    bound = clip * math.sqrt(10)
    longest = 0.0
    for _ in range(40):
        t.step(1)
        with torch.no_grad():
            longest = max(longest, t.model.encode(digits.train_x).loc.norm(dim=1).max().item())
        assert longest <= bound * (1 + 1e-5)
    with torch.no_grad():  # drive the means far out: they land on the sphere of radius c sqrt(d)
        t.model.encoder_head.bias[:10] += 1e3
        norms = t.model.encode(digits.train_x[:20]).loc.norm(dim=1)
    assert torch.allclose(norms, torch.full_like(norms, bound), rtol=1e-5)


def test_latent_clipping_is_an_option_for_any_gaussian_objective(digits):
    t = Trainer(small_config(objective="iwae", model=ModelConfig(hidden=(32,), latent_dim=4, latent_clip=0.1)),
                digits)
    t.step(10)
    with torch.no_grad():
        assert t.model.encode(digits.train_x).loc.norm(dim=1).max() <= 0.1 * 2 * (1 + 1e-5)


# ---------------------------------------------------------------- MMD

@pytest.mark.parametrize("kind", ["imq", "rbf"])
def test_unbiased_mmd_is_zero_in_expectation_for_prior_samples(kind):
    gen = torch.Generator().manual_seed(0)
    same = torch.stack([mmd2_unbiased(torch.randn(64, 8, generator=gen), torch.randn(64, 8, generator=gen), kind)
                        for _ in range(300)])
    assert abs(same.mean().item()) < 3 * same.std().item() / math.sqrt(300)
    assert (same < 0).any()  # unbiased, so it dips below zero; a biased estimate never would
    shifted = torch.stack([mmd2_unbiased(torch.randn(64, 8, generator=gen) + 0.5, torch.randn(64, 8, generator=gen),
                                         kind) for _ in range(50)])
    assert shifted.mean() > 10 * same.std() / math.sqrt(300) and shifted.mean() > same.mean()


def test_mmd_vae_with_alpha_1_has_no_kl_in_its_loss(digits):
    m, x = model(), digits.train_x[:64]
    out = build("mmd-vae", {"mmd_weight": 10.0})(m, x)
    assert torch.allclose(out.loss, out.terms["recon"] + 10.0 * out.terms["mmd"])


# ---------------------------------------------------------------- every objective from the CLI

@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_every_objective_trains_from_the_cli(name, tmp_path, capsys):
    code = main(["train", "--dataset", "digits", "--objective", name, "--steps", "30", "--hidden", "32",
                 "--latent", "4", "--out", str(tmp_path), "--name", "r"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "test ELBO" in out.out and (tmp_path / "r.safetensors").exists()


# ---------------------------------------------------------------- flows

def flow_jacobian(flow, z, h):
    """d z_T / d z_0 for one image, by autograd."""
    return torch.autograd.functional.jacobian(lambda v: flow(v[None], h[None])[0][0], z)


def test_householder_steps_preserve_volume_and_invert(digits):
    m = model(latent=5)
    obj = build("householder", {"flow_steps": 4}, m)
    h = m.encode_features(digits.test_x[:8]).detach()
    z = torch.randn(8, 5)
    zT, logdet = obj.flow(z, h)
    assert (logdet == 0).all()
    assert torch.allclose(obj.inverse(zT, h)[0], z, atol=1e-5)
    assert not torch.allclose(zT, z)  # it does move points
    J = flow_jacobian(obj.flow, z[0], h[0])
    assert torch.allclose(J.T @ J, torch.eye(5), atol=1e-5)  # orthogonal
    assert abs(torch.linalg.det(J).abs().item() - 1) < 1e-5   # volume-preserving
    out = obj(m, digits.train_x[:16])
    assert torch.allclose(out.terms["log_det"], torch.tensor(0.0))


@pytest.mark.parametrize("steps", [1, 3])
def test_iaf_log_det_equals_autograd_jacobian(digits, steps):
    torch.manual_seed(1)
    m = model(latent=4)
    obj = build("iaf", {"flow_steps": steps}, m)
    with torch.no_grad():  # move away from the near-identity start so the check has teeth
        for p in obj.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    h = m.encode_features(digits.test_x[:5]).detach()
    z = torch.randn(5, 4)
    _, logdet = obj.flow(z, h)
    for i in range(5):
        J = flow_jacobian(obj.flow, z[i], h[i])
        sign, logabs = torch.linalg.slogdet(J)
        assert torch.allclose(logdet[i], logabs, atol=1e-4)
        if steps == 1:  # one autoregressive step: output i depends only on inputs before it
            assert torch.allclose(J.triu(1), torch.zeros(4, 4), atol=1e-7)


# ---------------------------------------------------------------- SA-VAE

@pytest.mark.parametrize("grad, lr", [("per-image", 0.0005), ("batch-mean", 0.0005 * 64),
                                      ("batch-mean-as-written", 0.0005 * 64)])
def test_sa_vae_refined_elbo_is_at_least_the_amortized_elbo(digits, grad, lr):
    """Kim et al.'s ascent raises every image's ELBO; so does the VLAE authors' batch-mean gradient at
    B times the step; their code as written steps along the loss's gradient and lowers it."""
    torch.manual_seed(0)
    m = model(latent=4)
    obj = build("sa-vae", {"refine_steps": 4, "refine_grad": grad, "refine_lr": lr}, m)
    x = digits.test_x[:64]
    lam0 = m.encoder_head(m.encode_features(x)).detach()
    lamT = obj.refine(m, lam0, x, None, create_graph=False)[0].detach()
    assert not torch.equal(lam0, lamT)

    def expected_elbo(lam):  # many samples with common random numbers, per image
        gen = torch.Generator().manual_seed(3)
        q = m.posterior(lam)
        eps = torch.randn(500, *lam0[:, :4].shape, generator=gen)
        z = q.loc + q.scale * eps
        with torch.no_grad():
            log_px = m.decode(z.reshape(-1, 4)).log_prob(x.repeat(500, 1, 1, 1)).view(500, -1)
        return log_px.mean(0) - kl_divergence(q, m.prior()).sum(-1)

    amortized, refined = expected_elbo(lam0), expected_elbo(lamT)
    if grad == "batch-mean-as-written":
        amortized, refined = refined, amortized
    assert refined.mean() > amortized.mean()
    assert (refined >= amortized - 0.05).float().mean() > 0.9  # image by image, up to sampling noise


def test_sa_vae_batch_mean_gradient_is_each_images_own_over_b_with_its_squared_norm_clipped(digits):
    """yookoon/VLAE: grad of -mean(ELBO) over the batch, so image i's is 1/B of its own; each of the mu
    and log sigma^2 parts divided by max(1, |g|^2 / clip)."""
    m = model(latent=4)
    x = digits.test_x[:16]
    lam = m.encoder_head(m.encode_features(x)).detach()
    lam[:, 4:] = -14.0  # sigma ~ 1e-3: z ~ mu, so the mu part of the gradient barely depends on the draw
    lam.requires_grad_()

    def gradient(grad, clip, rows=slice(None)):
        obj = build("sa-vae", {"refine_grad": grad, "refine_clip": clip}, m)
        torch.manual_seed(7)
        return obj.authors_gradient(m, lam[rows], x[rows], None, create_graph=False)[1]

    whole = gradient("batch-mean", 1e9)
    for i in (0, 5):
        alone = gradient("batch-mean", 1e9, slice(i, i + 1))
        assert torch.allclose(whole[i, :4] * 16, alone[0, :4], rtol=0.02, atol=2e-3)
    assert torch.allclose(gradient("batch-mean-as-written", 1e9), -whole)
    lam.data[:, 4:] = 0.0
    clip = 1e-6
    whole, clipped = gradient("batch-mean", 1e9), gradient("batch-mean", clip)
    for raw, cut in zip(whole.chunk(2, -1), clipped.chunk(2, -1)):
        assert torch.allclose(cut.norm(dim=-1), clip / raw.norm(dim=-1), rtol=1e-4)  # |g| / (|g|^2 / clip)


def test_sa_vae_trains_the_encoder_through_the_refinement(digits):
    m = model()
    obj = build("sa-vae", {"refine_steps": 2, "refine_lr": 0.01}, m)
    out = obj(m, digits.train_x[:32])
    out.loss.backward()
    assert m.encoder_head.weight.grad is not None and m.encoder_head.weight.grad.abs().sum() > 0
    assert out.terms["elbo_gain"] > 0


# ---------------------------------------------------------------- VLAE

def linear_gaussian(latent=3, std=0.5):
    """A linear decoder with fixed Gaussian noise: probabilistic PCA, whose posterior is exact."""
    torch.manual_seed(4)
    m = VAE(ModelConfig(hidden=(), latent_dim=latent, image_shape=(1, 4, 4), likelihood="gaussian", obs_std=std))
    W, b = m.decoder[0][0].weight, m.decoder[0][0].bias  # (16, d), (16,)
    return m, W.detach(), b.detach()


def exact_posterior(W, b, x, std):
    S = torch.linalg.inv(W.T @ W / std**2 + torch.eye(W.shape[1]))
    mean = (x.flatten(1) - b) @ W / std**2 @ S.T
    return mean, S


def test_vlae_one_undamped_update_reaches_the_exact_posterior_of_a_linear_gaussian_decoder():
    m, W, b = linear_gaussian()
    x = torch.rand(5, 1, 4, 4)
    obj = build("vlae", {"mode_steps": 1, "damping": "none"}, m)
    q = obj.laplace(m, x)
    mean, S = exact_posterior(W, b, x, 0.5)
    assert torch.allclose(q.loc, mean, atol=1e-4)
    assert torch.allclose(q.covariance_matrix, S.expand(5, 3, 3), atol=1e-5)
    # With q the exact posterior, every importance weight is log p(x) itself (the pPCA marginal).
    z, log_q = draw(q, 50)
    log_w, _ = log_weights(m, x, None, z, log_q)
    marginal = torch.distributions.MultivariateNormal(b, W @ W.T + 0.25 * torch.eye(16))
    assert torch.allclose(log_w, marginal.log_prob(x.flatten(1)).expand(50, 5), atol=1e-3)


def test_vlae_refuses_a_squashed_gaussian_mean_its_linearization_would_get_wrong():
    cfg = ModelConfig(image_shape=(1, 4, 4), latent_dim=2, likelihood="gaussian", gaussian_mean="sigmoid")
    with pytest.raises(ConfigError, match="gaussian-mean identity"):
        build("vlae").configure_model(cfg, None)
    assert build("vlae").configure_model(ModelConfig(likelihood="bernoulli", gaussian_mean="sigmoid"), None)


def test_vlae_precision_is_exactly_symmetric_on_real_images(mnist):
    from core.objectives.vlae import linearize
    torch.manual_seed(0)
    m = VAE(ModelConfig(latent_dim=20, likelihood="bernoulli"))
    x = mnist.train_x[:64]
    precision, _ = linearize(m, torch.randn(64, 20) * 3, x)
    assert torch.equal(precision, precision.mT)
    torch.distributions.MultivariateNormal(torch.zeros(64, 20), precision_matrix=precision, validate_args=True)


def test_vlae_damping_and_conjugate_gradient():
    m, W, b = linear_gaussian()
    x = torch.rand(5, 1, 4, 4)
    mean, _ = exact_posterior(W, b, x, 0.5)
    mu0 = m.encode(x).loc
    damped = build("vlae", {"mode_steps": 1}, m).posterior(m, x)
    assert torch.allclose(damped.mean, mu0 + 0.5 * (mean - mu0), atol=1e-4)  # alpha_0 = 0.5
    cg = build("vlae", {"mode_steps": 3, "update": "polak-ribiere"}, m).posterior(m, x)
    assert torch.allclose(cg.mean, mean, atol=1e-3)  # a quadratic in d = 3 dimensions: 3 CG steps
    cg1 = build("vlae", {"mode_steps": 1, "update": "polak-ribiere"}, m).posterior(m, x)
    assert not torch.allclose(cg1.mean, mean, atol=1e-3)


def test_vlae_updates_climb_the_log_joint_of_a_bernoulli_relu_decoder(digits):
    m = model(latent=3)
    x = digits.test_x[:32]

    def log_joint(z):
        return m.decode(z).log_prob(x) + m.prior().log_prob(z).sum(-1)

    with torch.no_grad():
        start = log_joint(m.encode(x).loc)
    end = log_joint(build("vlae", {"mode_steps": 4}, m).posterior(m, x).mean).detach()
    assert (end > start).float().mean() > 0.9 and (end - start).mean() > 0.05
    out = build("vlae", {"mode_steps": 2}, m)(m, digits.train_x[:16])
    out.loss.backward()
    assert m.encoder_head.weight.grad.abs().sum() > 0  # the encoder learns through the updates


def test_importance_weighted_bound_uses_the_objectives_posterior():
    """On pPCA, the VLAE's one-step posterior is exact, so even k = 1 gives log p(x) exactly; the
    amortized encoder's bound is lower and rises with k."""
    from core.bundle import as_bundle
    from core.data import DataInfo, Dataset
    from core.evaluate import importance_weighted_bound
    m, W, b = linear_gaussian()
    x = torch.rand(40, 1, 4, 4)
    data = Dataset(DataInfo("toy", (1, 4, 4), 0, "gaussian"), x, torch.zeros(40, dtype=torch.long),
                   x, torch.zeros(40, dtype=torch.long))
    exact = torch.distributions.MultivariateNormal(b, W @ W.T + 0.25 * torch.eye(16)).log_prob(x.flatten(1)).mean()
    vlae = build("vlae", {"mode_steps": 1, "damping": "none"}, m)
    assert importance_weighted_bound(as_bundle(m, vlae), data, k=1).iwae == pytest.approx(exact.item(), abs=1e-3)
    loose = [importance_weighted_bound(m, data, k=k, chunk=7).iwae for k in (1, 10, 200)]
    assert loose[0] < loose[1] < loose[2] <= exact.item() + 1e-3


@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_every_objective_trains_a_conv_net(name, digits):
    t = Trainer(small_config(objective=name, model=ModelConfig(arch="conv", channels=(8, 16), latent_dim=4)), digits)
    rows = t.step(5)
    assert all(math.isfinite(r["loss"]) for r in rows)
