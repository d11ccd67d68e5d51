"""Two stochastic layers (Burda et al. 2016, sec. 5; seed 002's IWAE): q(z1|x) q(z|z1), p(z) p(z1|z) p(x|z1).

Known answers come from a linear-Gaussian model of both layers, whose marginal p(x) and joint posterior
family are Gaussian in closed form."""
import math

import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from core.cli import main
from core.errors import ConfigError
from core.models import VAE, ModelConfig
from core.objectives import build, log_weights
from core.posterior import Layered

S1, SIGMA = 0.6, 0.5  # the std of p(z1|z) and of p(x|z1)


def linear_model(seed=0):
    """z ~ N(0, I_1), z1 = A z + a + S1 e (2 numbers), x = B z1 + b + SIGMA n (4 pixels): every layer linear, and
    p(z1|z)'s variance made constant (its log-variance weights zeroed)."""
    torch.manual_seed(seed)
    m = VAE(ModelConfig(hidden=(), latent_below=2, hidden_above=(), latent_dim=1, image_shape=(1, 2, 2),
                        likelihood="gaussian", obs_std=SIGMA))
    layer = m.decoder_above[0]
    with torch.no_grad():
        layer.weight[2:] = 0
        layer.bias[2:] = math.log(S1 ** 2)
    A, a = layer.weight[:2].detach(), layer.bias[:2].detach()
    B, b = m.decoder[0][0].weight.detach(), m.decoder[0][0].bias.detach()
    return m, A, a, B, b


def exact_log_px(x, A, a, B, b):
    cov = B @ (A @ A.T + S1 ** 2 * torch.eye(2)) @ B.T + SIGMA ** 2 * torch.eye(4)
    return MultivariateNormal(B @ a + b, cov).log_prob(x.flatten(1))


def test_the_importance_weighted_bound_of_two_layers_reaches_the_exact_log_likelihood():
    m, A, a, B, b = linear_model()
    x = torch.randn(6, 1, 2, 2)
    exact = exact_log_px(x, A, a, B, b)
    torch.manual_seed(1)
    with torch.no_grad():
        log_w = log_weights(m, x, None, *Layered.of(m, x).sample(40000))[0].double()

    def bound(k):  # the mean of the IW-k bound over the 40,000 draws split into groups of k
        groups = log_w[:len(log_w) // k * k].view(-1, k, len(x))
        return (torch.logsumexp(groups, 1) - math.log(k)).mean(0).float()

    gaps = [(exact - bound(k)).mean().item() for k in (1, 10, 100, 1000)]
    assert all(a > b > 0 for a, b in zip(gaps, gaps[1:])), gaps  # below log p(x), and tighter with every k
    assert gaps[0] > 1.0 and gaps[-1] < 0.3 * gaps[1], gaps  # an untrained encoder: far at k = 1, near at 1,000


def test_with_the_exact_posterior_every_importance_weight_is_the_likelihood():
    """One number per layer: z ~ N(0, 1), z1 = al z + a + S1 e, x = be z1 + b + SIGMA n. Then p(z1|x) and
    p(z|z1, x) = p(z|z1) are Gaussians with means linear in x and z1 and constant variances, which
    q(z1|x) q(z|z1) can be set to exactly; every log-weight is then log p(x), so the ELBO is too."""
    torch.manual_seed(3)
    m = VAE(ModelConfig(hidden=(), latent_below=1, hidden_above=(), latent_dim=1, image_shape=(1, 2, 2),
                        likelihood="gaussian", obs_std=SIGMA))
    with torch.no_grad():
        m.decoder_above[0].weight[1] = 0
        m.decoder_above[0].bias[1] = math.log(S1 ** 2)
        al, a = m.decoder_above[0].weight[0, 0].item(), m.decoder_above[0].bias[0].item()
        be, b = m.decoder[0][0].weight[:, 0], m.decoder[0][0].bias
        v1 = al ** 2 + S1 ** 2                                  # p(z1) = N(a, v1)
        post1 = 1 / (1 / v1 + be @ be / SIGMA ** 2)             # p(z1|x) = N(post1 (a / v1 + be.(x - b) / SIGMA^2), post1)
        m.below_head.weight[0] = post1 * be / SIGMA ** 2
        m.below_head.bias[0] = post1 * (a / v1 - be @ b / SIGMA ** 2)
        m.below_head.weight[1], m.below_head.bias[1] = 0, math.log(post1)
        post2 = 1 / (1 + al ** 2 / S1 ** 2)                     # p(z|z1) = N(post2 al (z1 - a) / S1^2, post2)
        m.encoder_head.weight[0], m.encoder_head.bias[0] = post2 * al / S1 ** 2, -post2 * al * a / S1 ** 2
        m.encoder_head.weight[1], m.encoder_head.bias[1] = 0, math.log(post2)
        x = torch.randn(5, 1, 2, 2)
        exact = MultivariateNormal(be * a + b, v1 * torch.outer(be, be) + SIGMA ** 2 * torch.eye(4)).log_prob(x.flatten(1))
        log_w = log_weights(m, x, None, *Layered.of(m, x).sample(50))[0]
    assert torch.allclose(log_w, exact.expand_as(log_w), atol=1e-4)


def test_the_joint_kl_estimate_equals_the_closed_form_of_two_linear_gaussian_layers():
    """With linear networks and constant variances, q(z1, z|x) and p(z1, z) are both Gaussian over (z1, z),
    so their KL is closed form; the posterior's Monte Carlo estimate must find it."""
    m, A, a, *_ = linear_model()
    with torch.no_grad():
        m.encoder_head.weight[1] = 0  # q(z|z1) = N(w z1 + c, exp(v)): (mu, log var) from one linear layer
    w, c, v = m.encoder_head.weight[0].detach(), m.encoder_head.bias[0].detach(), m.encoder_head.bias[1].detach()
    x = torch.randn(3, 1, 2, 2)
    with torch.no_grad():
        below = m.encode_below(x)
    G = torch.cat([A, torch.ones(1, 1)])  # (z1, z) = G z + (a, 0) + (S1 e, 0) under the prior
    p = MultivariateNormal(torch.cat([a, torch.zeros(1)]), G @ G.T + torch.diag(torch.tensor([S1 ** 2, S1 ** 2, 0.0])))
    J = torch.cat([torch.eye(2), w[None]])  # (z1, z) = J z1 + (0, c) + (0, e) under q
    for i in range(3):
        mu1, var1 = below.loc[i], below.scale[i] ** 2
        q = MultivariateNormal(torch.cat([mu1, (w @ mu1 + c)[None]]),
                               J @ torch.diag(var1) @ J.T + torch.diag(torch.stack([torch.tensor(0.0), torch.tensor(0.0), v.exp()])))
        torch.manual_seed(i)
        layered = Layered(m, torch.distributions.Normal(below.loc[i:i + 1], below.scale[i:i + 1]), samples=40000)
        with torch.no_grad():
            codes, log_q, _ = layered.draws()
            ratio = (log_q - m.log_prior(codes))[:, 0]
            estimate = layered.kl()[0].item()
        # the two densities of every drawn code are the closed-form ones, and their mean is the KL
        assert torch.allclose(log_q[:, 0], q.log_prob(codes[:, 0]), atol=1e-4)
        assert torch.allclose(m.log_prior(codes)[:, 0], p.log_prob(codes[:, 0]), atol=1e-4)
        se = ratio.std().item() / math.sqrt(len(ratio))
        assert abs(estimate - kl_divergence(q, p).item()) < 5 * se


def test_the_posterior_views_agree_and_the_top_layer_is_what_the_sliders_move():
    torch.manual_seed(0)
    m = VAE(ModelConfig(hidden=(16,), latent_below=5, hidden_above=(8,), latent_dim=3, image_shape=(1, 8, 8),
                        likelihood="bernoulli", activation="tanh"))
    x = (torch.rand(10, 1, 8, 8) > 0.5).float()
    q = Layered.of(m, x)
    with torch.no_grad():
        z, log_q = q.sample(1)
        assert z.shape == (1, 10, 8) and q.mean.shape == (10, 3) and q.kl_per_dim().shape == (10, 3)
        assert torch.allclose(q.log_prob_matrix(z[0]).diagonal(), log_q[0], atol=1e-4)  # the pairwise view agrees
        top = torch.randn(4, 3)  # a slider's code: decoded through the mean of p(z1|z)
        assert torch.equal(m.mean_image(top), m.decode(torch.cat([m.layer_below(top).mean, top], -1)).base_dist.mean)
    with pytest.raises(ConfigError, match="two stochastic layers"):
        m.encode(x)
    from core import explore
    assert explore.decoder_program(m) is None  # the browser's own decoder reads z1, not the sliders' z
    assert explore.traversal(m, [0.0, 0.0, 0.0], [1], [-1.0, 1.0]).shape == (2, 1, 8, 8)


def test_iwae_trains_two_layers_and_k_1_is_their_elbo():
    torch.manual_seed(0)
    m = VAE(ModelConfig(hidden=(16,), latent_below=5, hidden_above=(8,), latent_dim=3, image_shape=(1, 8, 8),
                        likelihood="bernoulli", activation="tanh"))
    x = (torch.rand(32, 1, 8, 8) > 0.5).float()
    out = build("iwae", {"k": 1}, m)(m, x)
    assert out.terms["kl_per_dim"].shape == (3,)
    assert out.loss.item() == pytest.approx((out.terms["recon"] + out.terms["kl"]).item(), rel=1e-5)  # -ELBO
    out.loss.backward()
    assert all(p.grad is not None for p in (m.below_head.weight, m.encoder_head.weight, m.decoder_above[0].weight))


def test_two_layers_from_the_command_line_and_refused_with_another_objective(tmp_path, capsys):
    args = ["train", "--dataset", "digits", "--steps", "20", "--out", str(tmp_path), "--hidden", "32",
            "--latent-below", "6", "--hidden-above", "16", "--latent", "3"]
    assert main(args + ["--objective", "iwae", "--k", "3"]) == 0
    assert main(["diagnose", str(next(tmp_path.glob("*.json"))), "--only", "kl,collapse"]) == 0
    out = capsys.readouterr().out
    assert "top layer's KL" in out and "zeroing a top dimension is not measured" in out
    assert main(args + ["--objective", "vae"]) != 0
    assert "iwae objective only" in capsys.readouterr().err
