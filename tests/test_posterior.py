"""One model, one truth: every number comes from the model's own posterior, and two views of one model agree."""
import ast
import math
from pathlib import Path

import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from conftest import ROOT, small_config
from core.bundle import as_bundle
from core.diagnostics import run
from core.engine import Trainer
from core.evaluate import eval_split, evaluate
from core.models import VAE, ModelConfig
from core.objectives import OBJECTIVES, build, log_weights
from core.rng import seeded


@pytest.fixture(scope="module")
def trained(digits):
    """Every objective on the same tiny network, trained 150 steps: a flow, a refinement and a Laplace
    posterior then differ visibly from the encoder's raw q."""
    models = {}
    for name in OBJECTIVES.names():
        t = Trainer(small_config(objective=name, lr=3e-3), digits, live_every=0)
        t.step(150)
        models[name] = t.snapshot()
    return models


def one_sample_elbos(bundle, data, n):
    """log w = log p(x, z) - log q(z|x) for 200 draws per image from the model's own posterior: (200, n)."""
    with seeded(bundle.device, 7):
        x, y = eval_split(data, n)
        q = bundle.posterior(x, y)
        return log_weights(bundle.network, x, y, *q.sample(200))[0].double()


@pytest.mark.parametrize("name", OBJECTIVES.names())
@pytest.mark.slow
def test_evaluate_and_the_iwae_diagnostic_agree_on_the_elbo_of_the_models_own_posterior(name, trained, digits):
    bundle = trained[name]
    result = evaluate(bundle, digits)
    n = result.n
    assert result.recon + result.kl == pytest.approx(-result.elbo, abs=1e-9)
    log_w = one_sample_elbos(bundle, digits, n)
    # evaluate draws one z per image: its standard error is at most that of one log-weight per image
    se = log_w.std().item() / math.sqrt(n)
    assert abs(result.elbo - log_w.mean().item()) < 4 * se + 1e-3, (result.elbo, log_w.mean().item(), se)
    bound = run("iwae", bundle, digits, k=20, n=n)
    assert abs(bound.elbo - log_w.mean().item()) < 4 * se
    assert bound.iwae >= bound.elbo


@pytest.mark.slow
def test_the_vlae_kl_is_its_laplace_gaussians_closed_form(trained, digits):
    bundle = trained["vlae"]
    x, y = eval_split(digits, 300)
    laplace = bundle.objective.laplace(bundle.network, x, y)
    standard = MultivariateNormal(torch.zeros(4), torch.eye(4))
    exact = kl_divergence(laplace, standard).mean().item()
    assert evaluate(bundle, digits, n=300).kl == pytest.approx(exact, rel=1e-5)
    kl = run("kl", bundle, digits, n=300)
    assert kl.exact and kl.total == pytest.approx(exact, rel=1e-5)
    # per dimension: each marginal's KL, which sum to at most the KL (the rest is the correlation inside q)
    assert sum(kl.per_dim) <= kl.total + 1e-6
    # and not the encoder's untrained log-variance head
    raw = run("kl", bundle.network, digits, n=300).total
    assert abs(raw - exact) > 0.1


@pytest.mark.slow
def test_householder_posterior_is_the_exact_gaussian_its_flow_draws(trained, digits):
    """Two views of one model: the flow (z_0 through the reflections, density by inversion) and the closed
    form N(M mu, M diag(sigma^2) M^T) give the same density at every code, and the flow's Monte Carlo KL
    estimate agrees with the closed-form KL."""
    bundle = trained["householder"]
    x, y = eval_split(digits, 64)
    closed = bundle.posterior(x, y)
    with seeded(bundle.device, 3):
        flow = bundle.objective.flow_posterior(bundle.network, x, y)
        z, log_q = flow.sample(1)
    assert torch.allclose(closed.mvn.log_prob(z[0]), log_q[0], atol=1e-3)
    assert torch.allclose(closed.log_prob_matrix(z[0]), flow.log_prob_matrix(z[0]), atol=1e-3)
    with seeded(bundle.device, 4):
        estimate = flow.kl()
    se = 4 * estimate.std() / math.sqrt(64)
    assert abs(estimate.mean() - closed.kl().mean()) < se + 0.05


@pytest.mark.slow
def test_iaf_inverse_and_density_of_any_code(trained, digits):
    bundle = trained["iaf"]
    x, y = eval_split(digits, 16)
    with seeded(bundle.device, 5):
        q = bundle.posterior(x, y)
        z, log_q = q.sample(1)
    h = bundle.network.encode_features(x, y)
    z0, logdet = bundle.objective.inverse(z[0], h)
    again, logdet_forward = bundle.objective.flow(z0, h)
    assert torch.allclose(again, z[0], atol=1e-5) and torch.allclose(logdet, logdet_forward, atol=1e-5)
    # the pairwise densities hold each code's own density on the diagonal
    assert torch.allclose(q.log_prob_matrix(z[0]).diagonal(), log_q[0], atol=1e-4)
    assert not q.exact and q.per_dim_sums_to_kl is False


@pytest.mark.slow
def test_flow_mutual_information_is_of_q_T_not_q_0(trained, digits):
    bundle = trained["iaf"]
    flow = run("mutual-information", bundle, digits, n=200)
    assert math.isfinite(flow.mi) and flow.mi <= flow.ceiling + 0.5
    assert flow == run("mutual-information", bundle, digits, n=200)  # seeded: the same twice


@pytest.mark.slow
def test_reconstructions_go_through_the_models_own_posterior(trained, digits):
    bundle = trained["householder"]
    x, y = digits.test_x[:4], digits.test_y[:4]
    q = bundle.posterior(x, y)
    assert torch.allclose(bundle.reconstruct(x, y), bundle.network.mean_image(q.mean, y), atol=1e-6)
    assert not torch.allclose(bundle.reconstruct(x, y), bundle.network.reconstruct(x, y), atol=1e-3)


def test_a_bare_network_is_identified_by_its_weights():
    torch.manual_seed(0)
    a = VAE(ModelConfig(hidden=(8,), latent_dim=2, image_shape=(1, 4, 4), likelihood="bernoulli"))
    assert as_bundle(a).ref == as_bundle(a).ref
    with torch.no_grad():
        a.encoder_head.bias[0] += 1
    assert as_bundle(a).ref != as_bundle(VAE(a.cfg)).ref
    assert as_bundle(a, build("iaf", model=a)).objective.name == "iaf"


def core_imports() -> dict[str, set[str]]:
    """Every module of core and the modules of core it imports (relative imports, anywhere in the file)."""
    core = ROOT / "core"
    graph = {}
    for path in core.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = parts[:-1]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package[:len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    found.add(sub if (ROOT / Path(*sub.split("."))).with_suffix(".py").exists() else target)
        graph[name] = {m for m in found if m != name}
    return graph


def test_the_import_graph_of_core_has_no_cycle():
    graph = core_imports()
    assert "core.checkpoint" in graph and "core.engine" in graph["core.remote"]
    state, stack = {}, []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for dep in graph.get(module, ()):
            if state.get(dep) == "open":
                raise AssertionError(" -> ".join(stack[stack.index(dep):] + [dep]))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[module] = "done"

    for module in graph:
        if module not in state:
            visit(module)
