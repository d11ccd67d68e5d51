"""Discrete latents: the importance-sampling and leave-one-out estimators are unbiased against
enumerating every z, and the relaxed / baselined estimators have lower variance."""
import itertools
import math

import pytest
import torch

from core.models import VAE, ModelConfig
from core.objectives import build, kl_per_dim


def setup(digits, name, latent, c, **settings):
    obj = build(name, {"latent_type": latent, **settings})
    torch.manual_seed(0)
    cfg = obj.configure_model(ModelConfig(hidden=(16,), latent_dim=c, image_shape=(1, 8, 8),
                                          likelihood="bernoulli"), digits.info)
    m = VAE(cfg)
    with torch.no_grad():  # spread the logits so q is far from uniform and the check has teeth
        m.encoder_head.bias.copy_(torch.linspace(-1.5, 1.5, c))
    return obj, m, digits.train_x[:4]


def every_z(latent, c):
    if latent == "bernoulli":
        return torch.tensor(list(itertools.product([0.0, 1.0], repeat=c)))
    return torch.eye(c)


def exact_loss(m, x, latent):
    """-ELBO by summing over every latent state: sum_z q(z|x) log p(x|z) - KL."""
    q = m.encode(x)
    zs = every_z(latent, m.latent_dim)
    log_px = torch.stack([m.decode(zs).log_prob(xb.expand(len(zs), *xb.shape)) for xb in x], 1)  # (S, B)
    log_q = q.log_prob(zs[:, None, :])
    log_q = log_q.sum(-1) if log_q.dim() == 3 else log_q
    elbo = (log_q.exp() * log_px).sum(0) - kl_per_dim(q, m.prior()).sum(-1)
    return -elbo.mean()


def grads(m, loss):
    m.zero_grad()
    loss.backward()
    return torch.cat([m.encoder_head.bias.grad.clone(), m.decoder[0][-1].bias.grad[:8].clone()])


def estimates(obj, m, x, repeats):
    return torch.stack([grads(m, obj(m, x).loss) for _ in range(repeats)])


def test_enumeration_covers_every_state():
    assert len(every_z("bernoulli", 8)) == 256 and len(every_z("categorical", 6)) == 6


ESTIMATORS = [("discrete-is", {}), ("reinforce-loo", {}),
              # the general estimator, eqs. 14-17: a proposal q_I flatter and sharper than q
              ("discrete-is", {"proposal_temperature": 3.0}), ("discrete-is", {"proposal_temperature": 0.7})]


@pytest.mark.parametrize("name,settings", ESTIMATORS)
@pytest.mark.parametrize("latent,c", [("bernoulli", 4), ("bernoulli", 8), ("categorical", 6)])
def test_estimator_is_unbiased_against_enumeration(digits, name, settings, latent, c):
    obj, m, x = setup(digits, name, latent, c, samples=4, **settings)
    exact = grads(m, exact_loss(m, x, latent))
    torch.manual_seed(1)
    est = estimates(obj, m, x, 400)
    mean, se = est.mean(0), est.std(0) / len(est) ** 0.5
    assert ((mean - exact).abs() <= 3 * se + 1e-6).all(), (mean - exact) / se
    assert exact[:c].abs().max() > 1e-3  # the encoder gradient is not trivially zero


@pytest.mark.parametrize("latent,c", [("bernoulli", 8), ("categorical", 6)])
def test_gumbel_and_leave_one_out_have_lower_variance_than_plain_importance_sampling(digits, latent, c):
    def encoder_variance(name, **settings):
        obj, m, x = setup(digits, name, latent, c, **settings)
        torch.manual_seed(2)
        return estimates(obj, m, x, 300)[:, :c].var(0).sum()

    plain_1 = encoder_variance("discrete-is", samples=1)
    gumbel = encoder_variance("gumbel-softmax", temperature=1.0)
    assert gumbel < plain_1
    plain_10 = encoder_variance("discrete-is", samples=10)
    loo_10 = encoder_variance("reinforce-loo", samples=10)
    assert loo_10 < plain_10


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_reported_loss_is_the_negative_elbo(digits, temperature):
    obj, m, x = setup(digits, "discrete-is", "bernoulli", 4, samples=2000, proposal_temperature=temperature)
    torch.manual_seed(0)
    assert obj(m, x).loss.item() == pytest.approx(exact_loss(m, x, "bernoulli").item(), rel=0.01)


def test_a_proposal_other_than_q_draws_from_the_proposal(digits):
    """With a high temperature q_I is nearly uniform: its draws ignore q's confident logits."""
    obj, m, x = setup(digits, "discrete-is", "bernoulli", 4, samples=500, proposal_temperature=100.0)
    with torch.no_grad():
        m.encoder_head.bias.copy_(torch.tensor([-8.0, -8.0, 8.0, 8.0]))
    seen = []
    m.decoder.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
    obj(m, x)
    assert seen[0].mean(0).sub(0.5).abs().max() < 0.1  # q itself would give about (0, 0, 1, 1)


def test_gumbel_softmax_averages_its_samples(digits):
    def encoder_variance(samples):
        obj, m, x = setup(digits, "gumbel-softmax", "bernoulli", 8, samples=samples)
        torch.manual_seed(3)
        return estimates(obj, m, x, 200)[:, :8].var(0).sum()

    assert encoder_variance(8) < encoder_variance(1) / 3  # about 1/8 for independent draws


def test_straight_through_decodes_hard_codes(digits):
    obj, m, x = setup(digits, "gumbel-softmax", "categorical", 5, estimator="straight-through")
    seen = []
    m.decoder.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
    out = obj(m, x)
    z = seen[0]
    assert torch.allclose(z, z.round(), atol=1e-6) and torch.allclose(z.sum(-1), torch.ones(len(z)))
    out.loss.backward()
    assert m.encoder_head.bias.grad.abs().sum() > 0  # gradients pass straight through


@pytest.mark.parametrize("latent", ["bernoulli", "categorical"])
def test_kl_of_a_confident_posterior_has_a_finite_gradient(latent):
    logits = torch.tensor([[60.0, -60.0, 0.0, 200.0]], requires_grad=True)
    q = torch.distributions.OneHotCategorical(logits=logits) if latent == "categorical" else \
        torch.distributions.Bernoulli(logits=logits)
    prior = (torch.distributions.OneHotCategorical(probs=torch.full((4,), 0.25)) if latent == "categorical"
             else torch.distributions.Bernoulli(probs=torch.full((4,), 0.5)))
    kl = kl_per_dim(q, prior)
    kl.sum().backward()
    assert torch.isfinite(kl).all() and torch.isfinite(logits.grad).all()
    if latent == "categorical":  # nearly one-hot: KL to the uniform prior is log 4
        assert kl.sum().item() == pytest.approx(math.log(4), abs=1e-4)
