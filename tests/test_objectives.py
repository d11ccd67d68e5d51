import math

import pytest
import torch
from torch.distributions import Normal

from core.errors import ConfigError
from core.models import VAE, ModelConfig
from core.objectives import OBJECTIVES, build, elbo_parts
from core.objectives.kl_annealing import cyclical, linear_warmup


def model(latent=6, **kw):
    torch.manual_seed(0)
    return VAE(ModelConfig(hidden=(32,), latent_dim=latent, image_shape=(1, 8, 8), likelihood="bernoulli", **kw))


def test_registry_holds_the_four_objectives_with_papers_and_equations():
    assert {"vae", "beta-vae", "kl-annealing", "free-bits"} <= set(OBJECTIVES.names())
    for name, cls in OBJECTIVES.items():
        assert cls.paper and cls.equation and cls.__doc__, name
        assert build(name).name == name


def test_closed_form_kl_equals_monte_carlo_estimate(digits):
    m = model()
    q = m.encode(digits.test_x[:8])
    # scale the posterior away from the prior so the KL is not trivially near 0
    q = Normal(q.loc * 3 + 1, q.scale * 0.5)
    z = q.sample((200_000,))
    mc = (q.log_prob(z) - m.prior().log_prob(z)).mean(0)
    closed = torch.distributions.kl_divergence(q, m.prior())
    assert torch.allclose(mc, closed, rtol=0.02, atol=0.01)
    closed_formula = 0.5 * (q.scale**2 + q.loc**2 - 1 - 2 * q.scale.log())  # Kingma & Welling, app. B
    assert torch.allclose(closed, closed_formula, atol=1e-5)


def test_every_objective_reports_recon_kl_and_kl_per_dim(digits):
    for name in OBJECTIVES.names():
        obj = build(name)
        torch.manual_seed(0)
        cfg = obj.configure_model(ModelConfig(hidden=(32,), latent_dim=6, image_shape=(1, 8, 8),
                                              likelihood="bernoulli"), digits.info)
        m = VAE(cfg)
        obj.attach(m)
        out = obj(m, digits.train_x[:16], digits.train_y[:16], step=10)
        assert out.loss.dim() == 0 and torch.isfinite(out.loss), name
        assert out.terms["kl_per_dim"].shape == (6,), name
        if obj.exact_kl_per_dim:
            assert torch.allclose(out.terms["kl_per_dim"].sum(), out.terms["kl"]), name
        assert out.terms["recon"] > 0, name


def test_vae_loss_is_negative_elbo_and_beta_scales_only_the_kl(digits):
    m, x = model(), digits.train_x[:32]
    torch.manual_seed(1)
    elbo = build("vae")(m, x)
    torch.manual_seed(1)
    beta = build("beta-vae", {"beta": 4.0})(m, x)
    torch.manual_seed(1)
    recon, kl = elbo_parts(m, x)
    assert torch.allclose(elbo.loss, (recon + kl.sum(1)).mean())
    assert torch.allclose(beta.terms["recon"], elbo.terms["recon"])
    assert torch.allclose(beta.loss - elbo.loss, 3 * elbo.terms["kl"])


def test_bernoulli_likelihood_is_bce_with_logits_and_stable_for_huge_logits():
    m = model()
    x = torch.bernoulli(torch.full((4, 1, 8, 8), 0.3))
    z = torch.randn(4, 6)
    logits = m.decoder(z)
    expected = -torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))
    assert torch.allclose(m.decode(z).log_prob(x), expected)
    huge = torch.distributions.Bernoulli(logits=torch.tensor([1e4, -1e4]), validate_args=False)
    assert torch.isfinite(huge.log_prob(torch.tensor([0.0, 1.0]))).all()


def test_linear_and_cyclical_schedules_hit_their_end_points():
    assert linear_warmup(0, 100) == 0 and linear_warmup(50, 100) == 0.5
    assert linear_warmup(100, 100) == 1 and linear_warmup(10_000, 100) == 1
    period, ratio, cycles = 100, 0.5, 3
    for c in range(cycles):
        start = c * period
        assert cyclical(start, period, ratio, cycles) == 0          # each cycle restarts at 0
        assert cyclical(start + 25, period, ratio, cycles) == 0.5   # linear ramp
        assert cyclical(start + 50, period, ratio, cycles) == 1     # reaches 1 at tau = R
        assert cyclical(start + 99, period, ratio, cycles) == 1     # and holds it
    assert cyclical(period * cycles, period, ratio, cycles) == 1    # after M cycles it stays at 1
    annealed = build("kl-annealing", {"schedule": "linear", "anneal_steps": 10, "beta": 2.0})
    assert annealed.weight(0) == 0 and annealed.weight(5) == 0.5 and annealed.weight(20) == 1


def test_kl_annealing_weight_is_applied_to_the_loss(digits):
    m, x = model(), digits.train_x[:32]
    obj = build("kl-annealing", {"schedule": "linear", "anneal_steps": 100})
    torch.manual_seed(2)
    start = obj(m, x, step=0)
    torch.manual_seed(2)
    half = obj(m, x, step=50)
    assert torch.allclose(start.loss, start.terms["recon"])
    assert torch.allclose(half.loss, half.terms["recon"] + 0.5 * half.terms["kl"])


def test_free_bits_clamp_each_dimension(digits):
    """Dimensions whose batch KL is under lambda get no gradient from the KL term; others do."""
    m, x = model(latent=6), digits.train_x[:64]
    with torch.no_grad():  # make dims 0-2 informative (large KL) and leave 3-5 near the prior
        head = m.encoder_head
        head.weight[3:6] *= 0.0
        head.weight[9:12] *= 0.0
        head.bias[:3] += 2.0
    lam = 0.5
    obj = build("free-bits", {"free_bits": lam})
    q = m.encode(x)
    kl = torch.distributions.kl_divergence(q, m.prior()).mean(0)
    assert (kl[:3] > lam).all() and (kl[3:] < lam).all()

    # Backpropagate the term free-bits charges through the objective's own graph.
    out = obj(m, x)
    m.zero_grad()
    out.terms["kl_clamped"].backward()
    rows = head.bias.grad  # encoder head: rows 0-5 are the means, 6-11 the log-variances
    assert (rows[[3, 4, 5, 9, 10, 11]] == 0).all()
    assert (rows[[0, 1, 2]] != 0).all()

    torch.manual_seed(3)
    out = obj(m, x)
    assert math.isclose(out.terms["kl_clamped"].item(),
                        out.terms["kl_per_dim"].clamp(min=lam).sum().item(), rel_tol=1e-6)
    assert out.terms["kl_clamped"] >= out.terms["kl"]


@pytest.mark.parametrize("name,settings,message", [
    ("beta-vae", {"beta": -1}, "beta must be at least 0"),
    ("beta-vae", {"beta": float("nan")}, "finite"),
    ("free-bits", {"free_bits": -0.1}, "free_bits must be at least 0"),
    ("kl-annealing", {"schedule": "sigmoid"}, "schedule must be one of linear, cyclical"),
    ("vae", {"lambda": 1}, "has no setting lambda"),
    ("iwae", {"k": 2.5}, "k must be a whole number"),
    ("iwae", {"k": 0}, "k must be at least 1"),
    ("iwae-typo", {}, "unknown objective"),
])
def test_bad_settings_are_refused_with_a_clear_message(name, settings, message):
    with pytest.raises(ConfigError, match=message):
        build(name, settings)
