"""The small exact network: digits, MLP, strict minimum, exact H and Σ.

References are independent of the code under test: a numpy forward/backward
pass written out by hand, central finite differences of the loss and of the
gradient, and numpy eigen-decompositions. The networks are small (hidden 8,
P = 610) so the file runs in about a minute on two cores.
"""

import numpy as np
import pytest
from scipy.special import logsumexp, softmax

from dnn.exact.digits import Digits, load_digits
from dnn.exact.mlp import MLP, MLPConfig, float64

HIDDEN = 8


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture(scope="module")
def subset(digits):
    # 150 examples: enough for a non-trivial Σ, cheap enough for finite differences
    return Digits(x=digits.x[:150].copy(), y=digits.y[:150].copy())


def _model(act="tanh", hidden=(HIDDEN,), l2=1e-3):
    return MLP(MLPConfig(hidden=hidden, activation=act, l2=l2), 64, 10)


def _np_act(act, u):
    return {"tanh": np.tanh, "softplus": lambda v: np.logaddexp(0.0, v), "relu": lambda v: np.maximum(v, 0)}[act](u)


def _np_act_grad(act, u):
    return {"tanh": lambda v: 1 - np.tanh(v) ** 2, "softplus": lambda v: 1 / (1 + np.exp(-v)),
            "relu": lambda v: (v > 0).astype(float)}[act](u)


def _np_unpack(theta, n_in, n_hidden, n_out):
    k = 0
    w1 = theta[k:k + n_in * n_hidden].reshape(n_in, n_hidden); k += n_in * n_hidden
    b1 = theta[k:k + n_hidden]; k += n_hidden
    w2 = theta[k:k + n_hidden * n_out].reshape(n_hidden, n_out); k += n_hidden * n_out
    b2 = theta[k:k + n_out]
    return w1, b1, w2, b2


def _np_per_example(theta, x, y, act="tanh", n_hidden=HIDDEN):
    """Hand-written one-hidden-layer network: per-example losses (N,) and gradients (N, P)."""
    w1, b1, w2, b2 = _np_unpack(theta, x.shape[1], n_hidden, 10)
    u = x @ w1 + b1
    a = _np_act(act, u)
    z = a @ w2 + b2
    losses = logsumexp(z, axis=1) - z[np.arange(len(y)), y]
    dz = softmax(z, axis=1)
    dz[np.arange(len(y)), y] -= 1.0
    du = (dz @ w2.T) * _np_act_grad(act, u)
    grads = np.concatenate([
        np.einsum("ni,nj->nij", x, du).reshape(len(y), -1), du,
        np.einsum("ni,nj->nij", a, dz).reshape(len(y), -1), dz], axis=1)
    return losses, grads


# ---------------------------------------------------------------------- data and model

def test_digits_shape_dtype_and_standardisation(digits):
    assert digits.x.shape == (1797, 64) and digits.x.dtype == np.float64
    assert digits.y.shape == (1797,) and digits.y.dtype == np.int64 and digits.n_classes == 10
    assert set(np.unique(digits.y)) == set(range(10))
    sd = digits.x.std(axis=0)
    constant = load_digits(standardize=False).x.std(axis=0) == 0
    assert constant.any()                         # the always-blank corner pixel
    np.testing.assert_allclose(digits.x.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(sd[~constant], 1.0, rtol=1e-12)
    assert np.all(digits.x[:, constant] == 0.0)
    raw = load_digits(standardize=False)
    assert raw.x.min() == 0 and raw.x.max() == 16


def test_param_count_and_layout():
    assert _model(hidden=(32,)).n_params == 64 * 32 + 32 + 32 * 10 + 10 == 2410
    m = _model(hidden=(5, 7))
    assert m.n_params == 64 * 5 + 5 + 5 * 7 + 7 + 7 * 10 + 10
    assert [np.prod(s) for s in m.shapes] == [320, 5, 35, 7, 70, 10]
    np.testing.assert_array_equal(m.init(3), m.init(3))
    assert not np.array_equal(m.init(3), m.init(4))


@pytest.mark.parametrize("kwargs, match", [
    (dict(activation="sigmoid"), "activation"), (dict(l2=-1.0), "l2"), (dict(l2=float("nan")), "l2"),
    (dict(hidden=(0,)), "hidden"), (dict(hidden="32"), "hidden"), (dict(seed=-1), "seed")])
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLPConfig(**kwargs)


@pytest.mark.parametrize("act", ["tanh", "softplus", "relu"])
def test_loss_and_gradient_match_numpy_reference(subset, act):
    import jax

    m = _model(act)
    theta = m.init(1)
    losses_ref, grads_ref = _np_per_example(theta, subset.x, subset.y, act)
    loss_ref = losses_ref.mean() + m.l2 * theta @ theta
    grad_ref = grads_ref.mean(axis=0) + 2 * m.l2 * theta
    with float64():
        np.testing.assert_allclose(np.asarray(m.per_example_loss(theta, subset.x, subset.y)), losses_ref,
                                   rtol=1e-12)
        assert abs(float(m.loss(theta, subset.x, subset.y)) - loss_ref) < 1e-12
        g = np.asarray(jax.grad(m.loss)(theta, subset.x, subset.y))
    np.testing.assert_allclose(g, grad_ref, rtol=1e-10, atol=1e-13)


def test_gradient_matches_central_differences(subset):
    import jax

    m = _model("softplus", hidden=(6, 5))   # two hidden layers: the numpy reference has one
    theta = m.init(2)
    rng = np.random.default_rng(0)
    with float64():
        g = np.asarray(jax.grad(m.loss)(theta, subset.x, subset.y))
        for _ in range(3):
            v = rng.standard_normal(m.n_params)
            h = 1e-5
            fd = (float(m.loss(theta + h * v, subset.x, subset.y))
                  - float(m.loss(theta - h * v, subset.x, subset.y))) / (2 * h)
            # central difference error O(h²·L''') ~ 1e-10, round-off ~ 1e-16/h ~ 1e-11
            assert abs(fd - g @ v) < 1e-8 * max(1.0, abs(fd))


def test_functions_refuse_float32_theta(subset):
    m = _model()
    with pytest.raises(TypeError, match="float64"):
        m.loss(m.init(), subset.x, subset.y)       # outside float64(): jax would make it float32


# ---------------------------------------------------------------------- minimum

@pytest.fixture(scope="module")
def tanh_minimum(digits):
    from dnn.exact.minimum import find_minimum

    m = _model("tanh")
    return m, find_minimum(m, digits)


def _fd_hessian(m, data, theta, h=1e-5):
    """Central differences of the autodiff gradient, column by column (independent of the HVP code)."""
    import jax

    with float64():
        grad = jax.jit(jax.grad(m.loss))
        cols = []
        for j in range(m.n_params):
            e = np.zeros(m.n_params)
            e[j] = h
            cols.append((np.asarray(grad(theta + e, data.x, data.y)) - np.asarray(grad(theta - e, data.x, data.y)))
                        / (2 * h))
    hess = np.array(cols)
    return 0.5 * (hess + hess.T)


@pytest.mark.slow
def test_find_minimum_tanh_is_strict(digits, tanh_minimum):
    import jax

    m, res = tanh_minimum
    with float64():
        g = np.asarray(jax.grad(m.loss)(res.theta, digits.x, digits.y))
        loss = float(m.loss(res.theta, digits.x, digits.y))
    assert np.linalg.norm(g) <= 1e-8
    assert abs(res.grad_norm - np.linalg.norm(g)) < 1e-12
    assert abs(res.loss - loss) < 1e-14
    evals = np.linalg.eigvalsh(_fd_hessian(m, digits, res.theta))
    assert evals[0] > 0 and res.h_min > 0 and res.positive_definite
    # the FD spectrum is accurate to ~1e-8; the reported extremes must agree
    assert abs(evals[0] - res.h_min) < 1e-6 and abs(evals[-1] - res.h_max) < 1e-6 * evals[-1]
    assert 0.9 < res.train_accuracy <= 1.0
    assert res.lbfgs_iterations > 0 and res.seconds > 0


@pytest.mark.slow
def test_find_minimum_softplus_is_strict(digits):
    import jax

    from dnn.exact.minimum import find_minimum

    m = _model("softplus")
    res = find_minimum(m, digits)
    with float64():
        g = np.asarray(jax.grad(m.loss)(res.theta, digits.x, digits.y))
    assert np.linalg.norm(g) <= 1e-8 and res.h_min > 0


@pytest.mark.slow
def test_find_minimum_relu_raises_plain_error(digits):
    from dnn.exact.minimum import NotAMinimumError, find_minimum

    with pytest.raises(NotAMinimumError, match="no strict minimum found") as info:
        find_minimum(_model("relu"), digits)
    assert "kinks" in str(info.value) and "relu" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_newton_cg_solves_spd_systems_against_numpy():
    from dnn.exact.minimum import newton_cg_direction

    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    h = q @ np.diag(np.geomspace(1e-4, 1.0, 40)) @ q.T     # condition number 1e4, as on digits
    g = rng.standard_normal(40)
    d, n, why = newton_cg_direction(lambda v: h @ v, g, rtol=1e-10, maxiter=400)
    exact = np.linalg.solve(h, g)
    assert why == "converged" and n <= 400
    assert np.linalg.norm(h @ d - g) <= 1e-10 * np.linalg.norm(g)
    np.testing.assert_allclose(d, exact, rtol=1e-5)
    # exact arithmetic needs at most one iteration per distinct eigenvalue
    d3, n3, _ = newton_cg_direction(lambda v: np.array([2.0, 2.0, 5.0]) * v, np.ones(3), rtol=1e-12)
    assert n3 == 2 and np.allclose(d3, [0.5, 0.5, 0.2])


def test_newton_cg_stops_on_negative_curvature_and_maxiter():
    from dnn.exact.minimum import newton_cg_direction

    h = np.diag([1.0, -1.0])
    d, n, why = newton_cg_direction(lambda v: h @ v, np.array([0.0, 1.0]))
    assert why == "negative curvature" and n == 1 and np.all(d == 0)
    h = np.diag(np.arange(1.0, 51.0))
    d, n, why = newton_cg_direction(lambda v: h @ v, np.ones(50), rtol=1e-14, maxiter=3)
    assert why == "maxiter" and n == 3
    # after k steps CG minimises the quadratic over the Krylov space: it has decreased
    assert 0.5 * d @ h @ d - d.sum() < 0
    assert newton_cg_direction(lambda v: v, np.zeros(4)) == (pytest.approx(np.zeros(4)), 0, "converged")
    with pytest.raises(ValueError, match="g must be a finite"):
        newton_cg_direction(lambda v: v, np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="maxiter"):
        newton_cg_direction(lambda v: v, np.ones(2), maxiter=0)
    with pytest.raises(ValueError, match="rtol"):
        newton_cg_direction(lambda v: v, np.ones(2), rtol=-1.0)
    with pytest.raises(ValueError, match=r"hvp must return an array of shape \(2,\); got \(3,\)"):
        newton_cg_direction(lambda v: np.ones(3), np.ones(2))


def test_find_minimum_rejects_bad_arguments(subset):
    from dnn.exact.minimum import find_minimum

    with pytest.raises(ValueError, match="grad_tol"):
        find_minimum(_model(), subset, grad_tol=0.0)
    with pytest.raises(TypeError, match="model"):
        find_minimum("mlp", subset)
    with pytest.raises(ValueError, match="data.x"):
        find_minimum(MLP(MLPConfig(hidden=(4,)), 32, 10), subset)


# ---------------------------------------------------------------------- exact quantities

@pytest.fixture(scope="module")
def exact_subset(subset):
    from dnn.exact.hessian import exact_quantities

    m = _model("tanh", hidden=(4,))                    # P = 310: cheap FD Hessian
    theta = m.init(5)
    return m, theta, exact_quantities(m, subset, theta)


def test_exact_sigma_matches_brute_force(subset, exact_subset):
    m, theta, ex = exact_subset
    _, grads = _np_per_example(theta, subset.x, subset.y, "tanh", n_hidden=4)
    np.testing.assert_allclose(ex.per_example_grads, grads, rtol=1e-10, atol=1e-13)
    sigma = np.cov(grads.T, bias=True)                 # centred, dividing by N
    np.testing.assert_allclose(ex.sigma, sigma, rtol=1e-10, atol=1e-14)
    assert abs(ex.trace_sigma - (np.mean(np.sum(grads**2, 1)) - np.sum(grads.mean(0) ** 2))) < 1e-12


def test_exact_hessian_spectrum_and_traces(subset, exact_subset):
    m, theta, ex = exact_subset
    fd = _fd_hessian(m, subset, theta)
    np.testing.assert_allclose(ex.hessian, fd, atol=1e-7)
    np.testing.assert_allclose(ex.hessian_data + 2 * m.l2 * np.eye(m.n_params), ex.hessian, atol=1e-15)
    assert abs(ex.trace_h - ex.eigenvalues.sum()) < 1e-10 * abs(ex.trace_h)
    assert ex.trace_h_l2 == pytest.approx(2 * m.l2 * m.n_params, rel=1e-15)
    assert abs(ex.trace_h_data + ex.trace_h_l2 - ex.trace_h) < 1e-12
    assert abs(ex.trace_h_data - np.trace(fd - 2 * m.l2 * np.eye(m.n_params))) < 1e-6
    data_evals = np.linalg.eigvalsh(ex.hessian_data)
    assert abs(ex.data_h_min - data_evals[0]) < 1e-12
    assert ex.h_min == ex.eigenvalues[0] and ex.h_max == ex.eigenvalues[-1]
    assert ex.positive_definite == (ex.eigenvalues[0] > 0)
    # a random point of a tanh net is not a minimum: its data Hessian is indefinite
    assert ex.data_h_min < 0


def test_operators_agree_with_dense_matrices(subset, exact_subset):
    from dnn.exact.hessian import callables

    m, theta, ex = exact_subset
    ops = callables(m, subset, theta)
    v = np.random.default_rng(1).standard_normal(m.n_params)
    np.testing.assert_allclose(ops.hvp(v), ex.hessian @ v, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ops.hvp_data(v), ex.hessian_data @ v, rtol=1e-9, atol=1e-12)
    per = ops.per_example_hvp(v)
    assert per.shape == (subset.n, m.n_params)
    np.testing.assert_allclose(per.mean(axis=0), ops.hvp_data(v), rtol=1e-10, atol=1e-13)
    idx = np.array([3, 7, 7, 149])
    np.testing.assert_allclose(ops.minibatch_hvp(v, idx), per[idx].mean(axis=0), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(ops.per_example_grads(idx), ex.per_example_grads[idx], rtol=1e-12)
    # per-example Hessian against central differences of that example's gradient
    h = 1e-5
    g_plus = _np_per_example(theta + h * v, subset.x[[7]], subset.y[[7]], "tanh", 4)[1][0]
    g_minus = _np_per_example(theta - h * v, subset.x[[7]], subset.y[[7]], "tanh", 4)[1][0]
    np.testing.assert_allclose(per[7], (g_plus - g_minus) / (2 * h), atol=1e-7)
    with pytest.raises(ValueError, match="idx"):
        ops.per_example_grads(np.array([150]))
    with pytest.raises(ValueError, match="v must have shape"):
        ops.hvp(np.ones(3))
