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
    mi = DIAGNOSTICS.get("mutual-information")(m, mnist, n=1000)
    # With q(z|x) the same for every x, log q(z) = log q(z|x) exactly and the estimate is -H minus a
    # 1000-sample mean of log N(z; 0, I), whose standard error is sqrt(d/2 / n) = 0.07 nats.
    assert abs(mi.mi) < 4 * math.sqrt(10 / 2 / 1000) and not mi.at_ceiling


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


# ---------------------------------------------------------------- known answers on toy models

def toy_data(x):
    """A dataset whose test split is x (real-valued, no labels), for models with known answers."""
    from core.data import DataInfo, Dataset
    y = torch.zeros(len(x), dtype=torch.long)
    return Dataset(DataInfo("toy", tuple(x.shape[1:]), 0, "gaussian"), x, y, x, y)


def ppca(orthogonal: bool, std=0.5, n=500):
    """Probabilistic PCA, z ~ N(0, I_3), x = W z + b + N(0, std^2 I_16): log p(x) is exact. The encoder
    is set to the exact posterior mean and the mean-field variances 1 / diag(precision); when W has
    orthogonal columns the posterior is diagonal and q is exactly it."""
    torch.manual_seed(4)
    m = VAE(ModelConfig(hidden=(), latent_dim=3, image_shape=(1, 4, 4), likelihood="gaussian", obs_std=std))
    linear = m.decoder[0][0]
    with torch.no_grad():
        if orthogonal:
            linear.weight.copy_(torch.linalg.qr(torch.randn(16, 3))[0] * torch.tensor([2.0, 1.0, 0.5]))
        W, b = linear.weight.clone(), linear.bias.clone()
        precision = W.T @ W / std**2 + torch.eye(3)
        cov = torch.linalg.inv(precision)
        m.encoder_head.weight[:3] = cov @ W.T / std**2
        m.encoder_head.bias[:3] = -cov @ W.T @ b / std**2
        m.encoder_head.weight[3:] = 0
        m.encoder_head.bias[3:] = (1 / precision.diagonal()).log()
    marginal = torch.distributions.MultivariateNormal(b, W @ W.T + std**2 * torch.eye(16))
    x = marginal.sample((n,))
    return m, toy_data(x.view(n, 1, 4, 4)), marginal.log_prob(x).mean().item(), cov


def test_elbo_equals_log_likelihood_when_q_is_the_exact_posterior():
    m, data, exact, cov = ppca(orthogonal=True)
    assert torch.allclose(cov, torch.diag(cov.diagonal()), atol=1e-6)  # the posterior is diagonal
    bound = DIAGNOSTICS.get("iwae")(m, data, n=500)
    assert bound.elbo == pytest.approx(exact, abs=1e-4)
    assert bound.iwae == pytest.approx(exact, abs=1e-4) and bound.gap == pytest.approx(0, abs=1e-4)


def test_iwae_converges_to_the_exact_log_likelihood_of_ppca():
    m, data, exact, cov = ppca(orthogonal=False)
    corr = cov / cov.diagonal().sqrt().outer(cov.diagonal().sqrt())
    assert (corr - torch.eye(3)).abs().max() > 0.3  # the mean-field q misses real correlations
    bound = DIAGNOSTICS.get("iwae")(m, data, n=500)
    assert bound.k == 100  # the CPU default
    assert exact - bound.elbo > 0.05         # the ELBO is visibly loose ...
    assert abs(bound.iwae - exact) < 0.1     # ... and IWAE_100 is within 0.1 nat of log p(x)
    assert bound.iwae <= exact + 1e-3 and bound.gap > 0


def test_total_correlation_of_a_correlated_gaussian_aggregate_posterior():
    """x ~ N(0, [[1, .8], [.8, 1]]) and q(z|x) = N(x, 0.5^2 I), so q(z) = N(0, [[1.25, .8], [.8, 1.25]])
    with TC = -1/2 log(1 - 0.64^2) = 0.263 nats; an encoder that ignores x has TC = 0 exactly."""
    gen = torch.Generator().manual_seed(123)
    x = torch.randn(2000, 2, generator=gen) @ torch.linalg.cholesky(torch.tensor([[1, 0.8], [0.8, 1.0]])).T
    data = toy_data(x.view(-1, 1, 1, 2))
    m = VAE(ModelConfig(hidden=(), latent_dim=2, image_shape=(1, 1, 2), likelihood="gaussian", obs_std=1.0))
    with torch.no_grad():
        m.encoder_head.weight.zero_()
        m.encoder_head.bias.zero_()
    blind = DIAGNOSTICS.get("aggregate-posterior")(m, data, n=1000)
    assert blind.total_correlation == pytest.approx(0, abs=1e-5)
    assert max(abs(v) for v in blind.mmd) < 0.01  # q(z_d) is the prior itself
    with torch.no_grad():
        m.encoder_head.weight[:2] = torch.eye(2)
        m.encoder_head.bias[2:] = math.log(0.25)
    agg = DIAGNOSTICS.get("aggregate-posterior")(m, data, n=2000)
    assert agg.total_correlation == pytest.approx(-0.5 * math.log(1 - 0.64**2), abs=0.03)
    assert agg.std == pytest.approx([1.25**0.5] * 2, abs=0.05)
    assert sum(agg.q_mass[0]) == pytest.approx(1) and sum(agg.prior_mass) == pytest.approx(1, abs=1e-4)


def discrete_model(latent, c, bias):
    torch.manual_seed(0)
    m = VAE(ModelConfig(hidden=(16,), latent_dim=c, image_shape=(1, 8, 8), likelihood="bernoulli", latent=latent))
    with torch.no_grad():
        m.encoder_head.weight.zero_()
        m.encoder_head.bias.copy_(bias)
    return m


def test_code_usage_perplexity(digits):
    usage = DIAGNOSTICS.get("code-usage")
    one_code = usage(discrete_model("categorical", 6, torch.tensor([12.0, 0, 0, 0, 0, 0])), digits)
    assert one_code.perplexity == pytest.approx(1, abs=0.01) and one_code.max_perplexity == 6
    uniform = discrete_model("categorical", 6, torch.zeros(6))
    assert usage(uniform, digits).perplexity == pytest.approx(6, rel=1e-5)
    # every code used equally, yet the encoder ignores x: usage alone does not rule out collapse
    assert abs(DIAGNOSTICS.get("mutual-information")(uniform, digits).mi) < 1e-5
    bits = usage(discrete_model("bernoulli", 4, torch.tensor([0.0, 0, 0, 30])), digits)
    assert bits.perplexity == pytest.approx(8, rel=1e-4) and bits.per_dim_entropy[3] < 1e-6


def test_code_usage_is_for_discrete_latents(mnist):
    from core.errors import ConfigError
    with pytest.raises(ConfigError, match="discrete latents"):
        DIAGNOSTICS.get("code-usage")(mnist_model(), mnist)


def test_measured_gradient_variance_of_the_discrete_estimator_matches_enumeration(digits):
    """Every pair (z_1, z_2) of the 8 states of 3 bits, weighted by q(z_1) q(z_2), gives the exact mean
    and covariance of the M = 2 importance-sampling gradient on one image; the diagnostic's variance
    from 3000 fresh estimates must agree within 4 standard errors (also from the enumeration)."""
    import itertools
    from core.bundle import as_bundle
    from core.objectives import as_event, build, log_weights, score_output
    m = discrete_model("bernoulli", 3, torch.tensor([-1.5, 0.2, 1.0]))
    with torch.no_grad():
        m.encoder_head.weight.normal_(0, 0.05)
    obj = build("discrete-is", {"latent_type": "bernoulli", "samples": 2}, m)
    x = digits.test_x[:1]
    states = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)))
    groups = {"encoder": [*m.encoder_body.parameters(), *m.encoder_head.parameters()],
              "decoder": list(m.decoder.parameters())}
    probs, grads = [], {g: [] for g in groups}
    for pair in itertools.product(range(8), repeat=2):
        q = m.encode(x)
        z = states[list(pair)][:, None, :]  # (M, B, d)
        log_q = as_event(q).log_prob(z)
        _, log_px = log_weights(m, x, None, z, log_q)
        m.zero_grad()
        score_output(m, q, log_px, log_q, log_px, 1.0).loss.backward()
        probs.append(log_q.sum().exp().item())
        for g, params in groups.items():
            grads[g].append(torch.cat([p.grad.flatten() for p in params]).double())
    probs = torch.tensor(probs, dtype=torch.float64)
    assert probs.sum() == pytest.approx(1)
    repeats = 3000
    measured = DIAGNOSTICS.get("gradient-variance")(as_bundle(m, obj), toy_data(x), n=1, repeats=repeats)
    for g in groups:
        G = torch.stack(grads[g])
        mean = probs @ G
        dev = ((G - mean) ** 2).sum(1)          # ||g - E g||^2 for each pair
        exact = (probs @ dev).item()            # trace of the covariance
        se = ((probs @ dev**2 - exact**2) / repeats).sqrt().item()
        assert abs(getattr(measured, g).variance - exact) < 4 * se, (g, getattr(measured, g).variance, exact, se)
        assert se < 0.1 * exact  # the check is sharp
    assert measured.encoder.snr < measured.decoder.snr  # the score-function gradient is the noisy one


def test_collapse_report_names_each_dimension_and_flags_disagreements(digits):
    from conftest import small_config
    from core.engine import Trainer
    from core.models import ModelConfig as MC
    t = Trainer(small_config(lr=3e-3, model=MC(hidden=(64,), latent_dim=5)), digits)
    t.step(500)
    m = t.snapshot().network
    before = DIAGNOSTICS.get("collapse")(m, digits, n=297)
    a, b = sorted(range(5), key=lambda d: -before.zeroing_cost[d])[:2]  # the two dimensions used most
    assert before.verdicts[a] == before.verdicts[b] == "active" and before.zeroing_cost[b] > 1
    with torch.no_grad():
        m.decoder[0][0].weight[:, a] = 0              # the decoder stops reading z_a
        m.encoder_head.weight[[b, 5 + b]] = 0         # z_b: the same q for every x ...
        m.encoder_head.bias[[b, 5 + b]] = torch.tensor([2.0, 0.0])  # ... but shifted: KL 2 nats, no information
    report = DIAGNOSTICS.get("collapse")(m, digits, n=297)
    assert report.verdicts[a] == "unused by decoder" and report.verdicts[b] == "collapsed"
    assert all(report.verdicts[d] == before.verdicts[d] for d in range(5) if d not in (a, b))
    assert report.zeroing_cost[a] == pytest.approx(0, abs=1e-4)
    assert report.kl_per_dim[b] == pytest.approx(2.0, abs=1e-4)
    assert any(f.startswith(f"z{a}: AU counts it active") for f in report.flags)
    assert any(f.startswith(f"z{b}: KL 2 nats spent") for f in report.flags)
    assert report.thresholds["au_variance"] == 0.01


def test_diagnostics_are_reproducible_and_read_the_models_own_posterior(digits):
    from core.diagnostics import run
    from core.objectives import build
    m = VAE(ModelConfig(hidden=(32,), latent_dim=4, image_shape=(1, 8, 8), likelihood="bernoulli"))
    iaf = build("iaf", model=m)
    for name in ("mutual-information", "decoder-reliance", "aggregate-posterior", "kl", "active-units"):
        assert DIAGNOSTICS.get(name)(m, digits) == DIAGNOSTICS.get(name)(m, digits), name
        assert run(name, m, digits, objective=iaf) == run(name, m, digits, objective=iaf), name
    # every diagnostic measures the flow's q_T, not the encoder's q_0
    assert run("iwae", m, digits, objective=iaf, k=5).iwae != run("iwae", m, digits, k=5).iwae
    flow_kl, base_kl = run("kl", m, digits, objective=iaf), run("kl", m, digits)
    assert not flow_kl.exact and base_kl.exact and flow_kl.total != base_kl.total


def test_live_diagnostics_do_not_change_the_run(digits):
    from conftest import small_config
    from core.engine import Trainer
    watched, plain = Trainer(small_config(), digits, live_every=10), Trainer(small_config(), digits, live_every=0)
    watched.step(30)
    plain.step(30)
    assert [r["loss"] for r in watched.history] == [r["loss"] for r in plain.history]
    assert [r["step"] for r in watched.live] == [10, 20, 30] and plain.live == []
    row = watched.live[-1]
    assert {"kl", "kl_per_dim", "au", "mi", "mi_ceiling"} <= set(row) and "code_perplexity" not in row
    assert row["mi_ceiling"] == pytest.approx(math.log(297)) and 0 <= row["au"] <= 4
    # the live numbers are those of the full diagnostics on the same held-out images
    assert row["kl"] == pytest.approx(DIAGNOSTICS.get("kl")(watched.snapshot(), digits, n=500).total, rel=1e-5)
    discrete = Trainer(small_config(objective="discrete-is", settings={"latent_type": "categorical"}), digits,
                       live_every=5)
    discrete.step(5)
    assert 1 <= discrete.live[0]["code_perplexity"] <= 4


def test_pairwise_gaussian_density_matches_torch_distributions():
    from torch.distributions import Independent, Normal
    from core.posterior import pairwise_log_density
    gen = torch.Generator().manual_seed(0)
    q = Normal(torch.randn(50, 7, generator=gen) * 5, torch.rand(50, 7, generator=gen) * 0.5 + 1e-3)
    z = q.sample()
    reference = Independent(Normal(q.loc.double(), q.scale.double()), 1).log_prob(z.double()[:, None])
    assert torch.allclose(pairwise_log_density(q, z).double(), reference, rtol=1e-5, atol=1e-3)


def test_run_all_reports_skips_and_the_headline_row(digits):
    from core.report import COMPARE, Skipped, from_dict, headline, run_all, to_dict
    m = VAE(ModelConfig(hidden=(32,), latent_dim=4, image_shape=(1, 8, 8), likelihood="bernoulli"))
    seen = []
    results = run_all(m, digits, names=[*COMPARE, "code-usage"], options={"iwae": {"k": 7}},
                      progress=lambda f, name: seen.append(name))
    assert seen[-1] == "collapse" and set(seen) == {*COMPARE, "code-usage"}  # the summary comes last
    assert isinstance(results["code-usage"], Skipped) and "discrete latents" in results["code-usage"].skipped
    assert results["iwae"].k == 7
    row = headline(results)
    assert row["IWAE NLL"] == pytest.approx(-results["iwae"].iwae) and row["AU"] == results["active-units"].count
    assert row["verdict"].endswith("collapsed") and sum(int(p.split()[0]) for p in row["verdict"].split(" / ")) == 4
    assert headline({})["ELBO"] is None
    # typed to the file boundary and back: the sidecar's dicts return as the same results
    assert from_dict(to_dict(results)) == results
    stored = to_dict(results)
    stored["kl"]["totl"] = stored["kl"].pop("total")  # a renamed field is refused, not read as a blank
    with pytest.raises(ValueError, match="KLResult has no field totl"):
        from_dict(stored)


def encoder_grad(bundle, x, seed=0):
    """The encoder's gradient of the objective's own loss, on the draw the diagnostic makes."""
    from core.diagnostics import sampling
    net = bundle.network
    params = [*net.encoder_body.parameters(), *net.encoder_head.parameters()]
    with sampling(x.device, seed):
        loss = bundle.objective(net, x, None, bundle.step).loss
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])


@pytest.mark.parametrize("name,settings", [("vae", {}), ("beta-vae", {"beta": 4.0}),
                                           ("kl-annealing", {"schedule": "linear", "anneal_steps": 10})])
def test_the_two_gradient_sources_sum_to_the_encoders_gradient(digits, name, settings):
    from core.bundle import as_bundle
    from core.objectives import build
    torch.manual_seed(0)
    m = VAE(ModelConfig(hidden=(32,), latent_dim=4, image_shape=(1, 8, 8), likelihood="bernoulli"))
    from core.bundle import Ref
    from core.diagnostics import held_out
    bundle = as_bundle(m, build(name, settings))
    bundle.ref = Ref(bundle.ref.id, 5)  # mid-warm-up for the annealed objective: its KL weight is 0.5
    result = DIAGNOSTICS.get("gradient-sources")(bundle, digits, n=64)
    x = held_out(bundle, digits, 64)[0]
    total = encoder_grad(bundle, x)
    assert result.total == pytest.approx(total.norm().item(), rel=1e-5)
    assert result.recon > 0 and result.kl > 0 and -1 <= result.cosine <= 1
    # the triangle: |a + b|^2 = |a|^2 + |b|^2 + 2 |a||b| cos
    assert result.total ** 2 == pytest.approx(result.recon ** 2 + result.kl ** 2
                                              + 2 * result.recon * result.kl * result.cosine, rel=1e-4)


def test_a_decoder_that_ignores_z_leaves_only_the_kl_gradient(digits):
    torch.manual_seed(0)
    m = VAE(ModelConfig(hidden=(32,), latent_dim=4, image_shape=(1, 8, 8), likelihood="bernoulli"))
    with torch.no_grad():
        m.decoder[0][0].weight.zero_()  # the first decoder layer reads nothing of z
    result = DIAGNOSTICS.get("gradient-sources")(m, digits, n=64)
    assert result.recon == 0 and result.kl > 0 and result.ratio == math.inf


def test_gradient_sources_refuse_a_loss_that_is_not_recon_plus_kl(digits):
    from core.bundle import as_bundle
    from core.errors import ConfigError
    from core.objectives import build
    m = VAE(ModelConfig(hidden=(32,), latent_dim=4, image_shape=(1, 8, 8), likelihood="bernoulli"))
    with pytest.raises(ConfigError, match="not recon"):
        DIAGNOSTICS.get("gradient-sources")(as_bundle(m, build("iwae", {"k": 5})), digits, n=64)
