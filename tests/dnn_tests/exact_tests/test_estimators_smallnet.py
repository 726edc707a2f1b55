"""The ResNet's estimators, checked on a real network whose curvature and noise are known exactly.

The MLP 64-32-10 (tanh, λ = 1e-3, P = 2410) on the 1797 standardised digits, at its
strict minimum θ* from ``dnn.minimum.find_minimum``.  The reference values are
computed here, independently of ``dnn.exact``: the dense Hessian by ``jax.hessian``
(forward-over-reverse Jacobians, summed over example chunks) and ``eigvalsh``, the
per-example gradients by chunked ``jax.jacrev`` of the per-example loss vector.

The estimators get exactly what the ResNet pipeline gives them: HVP and gradient
callables (``dnn.exact.callables``) and squared norms.

Cost: one minimum (~1 min on two idle cores) and one dense Hessian (~20 s),
shared by the module; the checks themselves take a few seconds.
"""

import math

import numpy as np
import pytest

import dnn

pytestmark = pytest.mark.slow

# Examples per jax.hessian / jax.jacrev call: jacfwd carries P = 2410 tangents through
# the chunk's activations (2410·128·106 doubles ≈ 260 MB), so keep chunks small.
HESSIAN_CHUNK = 128
JACREV_CHUNK = 64


@pytest.fixture(scope="module")
def smallnet():
    """θ*, callables at θ*, and the independently computed exact H, eigenvalues, g_i."""
    import jax
    import jax.numpy as jnp

    from dnn.exact.digits import load_digits
    from dnn.exact.hessian import callables
    from dnn.exact.minimum import find_minimum
    from dnn.exact.mlp import MLP, MLPConfig, float64

    data = load_digits()
    model = MLP(MLPConfig(hidden=(32,), activation="tanh", l2=1e-3), n_inputs=64, n_classes=10)
    minimum = find_minimum(model, data)
    theta = minimum.theta
    n, p = data.x.shape[0], model.n_params
    with float64():
        th = jnp.asarray(theta)
        hess_fn = jax.jit(jax.hessian(model.data_loss))
        jac_fn = jax.jit(jax.jacrev(model.per_example_loss))
        grad_fn = jax.jit(jax.grad(model.loss))
        hess_data = np.zeros((p, p))
        for start in range(0, n, HESSIAN_CHUNK):
            sl = slice(start, start + HESSIAN_CHUNK)
            xb, yb = jnp.asarray(data.x[sl]), jnp.asarray(data.y[sl])
            hess_data += xb.shape[0] * np.asarray(hess_fn(th, xb, yb))
        grads = np.concatenate([
            np.asarray(jac_fn(th, jnp.asarray(data.x[s:s + JACREV_CHUNK]),
                              jnp.asarray(data.y[s:s + JACREV_CHUNK])))
            for s in range(0, n, JACREV_CHUNK)])
        full_grad = np.asarray(grad_fn(th, jnp.asarray(data.x), jnp.asarray(data.y)))
    hess_data /= n
    hess = 0.5 * (hess_data + hess_data.T) + 2.0 * model.l2 * np.eye(p)
    return dict(model=model, data=data, theta=theta, ops=callables(model, data, theta),
                hessian=hess, eigenvalues=np.linalg.eigvalsh(hess), grads=grads,
                gram=grads @ grads.T, full_grad=full_grad, n=n, p=p)


def test_reference_point_is_a_strict_minimum(smallnet):
    s = smallnet
    assert s["p"] == 2410 and s["grads"].shape == (s["n"], s["p"])
    assert np.linalg.norm(s["full_grad"]) <= 1e-8
    assert s["eigenvalues"][0] > 0
    # At θ*, ∇L = ḡ + 2λθ* = 0: the data gradient is −2λθ*, which the exact Σ must centre out.
    np.testing.assert_allclose(s["grads"].mean(axis=0), -2e-3 * s["theta"], atol=1e-8)


def test_hutchinson_trace_within_its_se(smallnet):
    s = smallnet
    h = s["hessian"]
    exact = float(np.trace(h))
    # Rademacher probes: Var(vᵀHv) = 2(‖H‖_F² − Σ H_ii²), known exactly here.
    sd_exact = math.sqrt(2.0 * (np.sum(h * h) - np.sum(np.diag(h) ** 2)))
    est = dnn.hutchinson_trace(s["ops"].hvp, s["p"], n_probes=200, rng=np.random.default_rng(0))
    assert est.n_hvp == 200
    assert abs(est.mean - exact) < 4 * est.se
    # The reported SE is the sample SD/√n: within 30% of the exact one (its own relative
    # error is ~1/√(2·199) = 5%, so this is a 6-sigma band).
    assert 0.7 < est.se / (sd_exact / math.sqrt(200)) < 1.3

    # Minibatch form, as on the ResNet: a fresh probe on each batch's data Hessian + 2λI.
    batches = np.array_split(np.random.default_rng(1).permutation(s["n"]), 7)
    l2 = s["model"].l2

    def batch_hvp(v, idx):
        return s["ops"].minibatch_hvp(v, idx) + 2.0 * l2 * np.asarray(v, dtype=np.float64)

    est_b = dnn.hutchinson_trace(batch_hvp, s["p"], n_probes=140, batches=batches,
                                 batch_weights=[len(b) for b in batches],
                                 rng=np.random.default_rng(2))
    assert abs(est_b.mean - exact) < 4 * est_b.se
    assert est_b.se < 0.03 * exact                  # per-probe sd is ~7% of tr H


def test_grad_cov_trace_is_exact(smallnet):
    s = smallnet
    g = s["grads"]
    centred = g - g.mean(axis=0)
    exact = float(np.sum(centred * centred) / s["n"])        # tr Σ, centred, dividing by N
    # Streamed as the ResNet pipeline does: per-example gradients chunk by chunk
    # (3 equal chunks of 599: one compiled shape).
    chunks = [s["ops"].per_example_grads(idx) for idx in np.array_split(np.arange(s["n"]), 3)]
    sqnorms = np.concatenate([np.sum(c * c, axis=1) for c in chunks])
    grad_sum = sum(c.sum(axis=0) for c in chunks)
    r = dnn.grad_cov_trace(sqnorms, grad_sum)
    assert r.n_examples == s["n"]
    assert r.trace == pytest.approx(exact, rel=1e-10)
    assert r.mean_grad_sqnorm == pytest.approx(float(g.mean(axis=0) @ g.mean(axis=0)), rel=1e-10)
    assert r.mean_example_sqnorm == pytest.approx(float(np.mean(np.sum(g * g, axis=1))), rel=1e-10)


@pytest.mark.parametrize("replacement", [True, False])
# ‖G‖² = ‖2λθ*‖² is tiny at θ*, so 100-pair estimates of it are often negative and
# two_batch_noise warns (reliable=False); the tr Σ estimates checked here are not affected.
@pytest.mark.filterwarnings("ignore:two_batch_noise. negative estimate:RuntimeWarning")
def test_two_batch_noise_within_its_se(smallnet, replacement):
    s = smallnet
    g, n = s["grads"], s["n"]
    gbar = g.mean(axis=0)
    exact_tr = float(np.sum((g - gbar) ** 2) / n)
    exact_g2 = float(gbar @ gbar)
    b_small, b_big = 8, 128
    rng = np.random.default_rng(3 if replacement else 4)
    # A minibatch gradient is the mean of its examples' gradients (checked once against
    # the model's own minibatch gradient), so ‖G_B‖² = 1ᵀ Gram[B, B] 1 / B² with the
    # Gram matrix g gᵀ of the exact per-example gradients: thousands of batches cost little.
    idx = rng.choice(n, b_big, replace=replacement)
    _check_minibatch_gradient(s, idx, g[idx].mean(axis=0))
    gram = s["gram"]

    def sqnorm(b):
        sel = rng.choice(n, b, replace=replacement)
        return float(gram[np.ix_(sel, sel)].sum()) / b**2

    def draw(n_pairs):
        small = np.array([sqnorm(b_small) for _ in range(n_pairs)])
        big = np.array([sqnorm(b_big) for _ in range(n_pairs)])
        return dnn.two_batch_noise(small, big, b_small, b_big,
                                   n_data=None if replacement else n)

    r = draw(2000)
    assert r.n_pairs == 2000 and r.n_data == (None if replacement else n)
    assert abs(r.trace_cov - exact_tr) < 4 * r.trace_cov_se
    assert abs(r.grad_sqnorm - exact_g2) < 4 * r.grad_sqnorm_se
    assert r.trace_cov_se < 0.05 * exact_tr
    # The SE is honest: 20 independent repetitions scatter by about the reported SE.
    # Under normality s/σ with 19 d.o.f. leaves [0.5, 1.7] with probability < 1e-3.
    reps = [draw(100) for _ in range(20)]
    spread = np.std([x.trace_cov for x in reps], ddof=1)
    reported = math.sqrt(np.mean([x.trace_cov_se ** 2 for x in reps]))
    assert 0.5 < spread / reported < 1.7
    pooled = np.mean([x.trace_cov for x in reps])
    assert abs(pooled - exact_tr) < 4 * spread / math.sqrt(20)


def _check_minibatch_gradient(s, idx, want):
    import jax
    import jax.numpy as jnp

    from dnn.exact.mlp import float64

    with float64():
        got = np.asarray(jax.grad(s["model"].data_loss)(
            jnp.asarray(s["theta"]), jnp.asarray(s["data"].x[idx]), jnp.asarray(s["data"].y[idx])))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)


def test_top_hessian_eigenvalue_to_round_off(smallnet):
    s = smallnet
    lam = s["eigenvalues"]
    # Rayleigh-quotient error decays as (λ₂/λ₁)^{2k} = 0.84^{2k} here: ~100 iterations
    # reach 1e-12; the cap leaves a wide margin.
    r = dnn.top_hessian_eigenvalue(s["ops"].hvp, s["p"], rng=np.random.default_rng(5),
                                   max_iters=1000, tol=1e-13)
    assert r.converged and r.n_iters < 1000
    assert r.value == pytest.approx(lam[-1], rel=1e-9)
    # The default tolerance (1e-4 relative change) is what the ResNet uses: it stops
    # early, but its value must still be below λ_max and within a percent of it.
    quick = dnn.top_hessian_eigenvalue(s["ops"].hvp, s["p"], rng=np.random.default_rng(5))
    assert quick.value <= lam[-1] * (1 + 1e-12)
    assert quick.value == pytest.approx(lam[-1], rel=1e-2)
