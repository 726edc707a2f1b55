"""theory.state_dependent_correction: the first Neumann term of the state-dependent law.

The reference is the exact finite-sum least-squares law (theory.least_squares_stationary,
A_i = x_i x_iᵀ), written here independently as Kronecker (vectorised) linear maps:

    vec C = (I − M₀)⁻¹ η²c_S [vec Σ + 𝒦 vec C],   M₀ = (I−ηH)⊗(I−ηH),
    𝒦 = (1/N) Σ_i A_i⊗A_i − H⊗H,

whose Neumann series C₀ + C₁ + … is summed term by term and must reproduce the exact
solution; its first term C₁ must match the library to round-off.  Cost: ~2 s.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import ortho_group

import theory

# Row-major vec: vec(A X B) = (A ⊗ Bᵀ) vec(X); every factor below is symmetric.
N_DATA, DIM = 40, 3


def _least_squares_data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N_DATA, DIM)) * [1.0, 0.7, 1.4]
    y = x @ [1.0, -2.0, 0.5] + rng.normal(size=N_DATA)
    return x, y


def _kronecker_neumann_terms(x, h, sigma, lr, c, n_terms):
    """C₀, C₁, …, C_{n_terms−1} of the exact law, by dense d² × d² linear algebra."""
    n, d = x.shape
    eye = np.eye(d)
    step = np.kron(eye - lr * h, eye - lr * h)
    a = np.einsum("ni,nj->nij", x, x)
    fourth = sum(np.kron(ai, ai) for ai in a) / n
    k_op = fourth - np.kron(h, h)
    lhs = np.eye(d * d) - step
    terms = [np.linalg.solve(lhs, lr**2 * c * sigma.reshape(-1))]
    for _ in range(n_terms - 1):
        terms.append(np.linalg.solve(lhs, lr**2 * c * (k_op @ terms[-1])))
    return [t.reshape(d, d) for t in terms]


@pytest.mark.parametrize("eta_h, batch_size, replacement", [
    (0.5, 2, True), (1.2, 4, True), (0.8, 3, False), (0.1, 1, True)])
def test_first_neumann_term_matches_the_exact_least_squares_law(eta_h, batch_size, replacement):
    x, y = _least_squares_data()
    h_max = np.linalg.eigvalsh(x.T @ x / N_DATA)[-1]
    lr = eta_h / h_max
    exact = theory.least_squares_stationary(x, y, lr, batch_size, replacement=replacement)
    h, sigma, c = exact.hessian, exact.grad_cov, exact.noise_factor
    terms = _kronecker_neumann_terms(x, h, sigma, lr, c, n_terms=400)
    # The reference series is the exact law: its sum reproduces the solver's C.
    np.testing.assert_allclose(sum(terms), exact.covariance, rtol=1e-9,
                               atol=1e-12 * np.abs(exact.covariance).max())

    stack = np.einsum("ni,nj->nij", x, x)
    kw = dict(per_example_hessians=stack, replacement=replacement)
    c1 = theory.state_dependent_covariance_first_order(h, sigma, lr, batch_size, **kw)
    np.testing.assert_allclose(c1, terms[1], rtol=1e-10, atol=1e-13 * np.abs(terms[1]).max())
    de1 = theory.state_dependent_correction(h, sigma, lr, batch_size, **kw)
    assert de1 == pytest.approx(0.5 * np.sum(h * terms[1]), rel=1e-10)
    # Zeroth term is the additive-noise law, and the remainder is second order.
    e0 = theory.expected_loss_discrete(h, sigma, lr, batch_size, n_data=N_DATA,
                                       replacement=replacement)
    assert e0 == pytest.approx(0.5 * np.sum(h * terms[0]), rel=1e-10)
    remainder = exact.expected_excess_loss - e0 - de1
    assert remainder == pytest.approx(0.5 * np.sum(h * sum(terms[2:])), rel=1e-8, abs=1e-15)
    # Every Neumann term is PSD, so the remainder cannot be negative.  It need not be
    # small: at η h_max = 1.2, S = 4 the series converges slowly (checked separately).
    assert remainder >= 0


def test_remainder_after_first_order_is_higher_order_in_c_s():
    # ΔE₁ ∝ c_S² exactly; the remainder is Σ_{k>=2} O(c_S^{k+1}), so doubling S cuts
    # it by about 8 (not 4): ratio < 1/6 leaves room for the c_S⁴ terms.
    x, y = _least_squares_data(1)
    lr = 0.8 / np.linalg.eigvalsh(x.T @ x / N_DATA)[-1]
    stack = np.einsum("ni,nj->nij", x, x)

    def parts(bs):
        r = theory.least_squares_stationary(x, y, lr, bs)
        e0 = theory.expected_loss_discrete(r.hessian, r.grad_cov, lr, bs)
        de1 = theory.state_dependent_correction(r.hessian, r.grad_cov, lr, bs,
                                                per_example_hessians=stack)
        return de1, r.expected_excess_loss - e0 - de1

    (d4, rem4), (d8, rem8) = parts(4), parts(8)
    assert d8 / d4 == pytest.approx(0.25, rel=1e-12)
    assert 0 < rem8 / rem4 < 1 / 6


def test_zero_when_every_example_has_the_same_hessian():
    h = np.array([[2.0, 0.5], [0.5, 1.0]])
    s = np.array([[1.0, 0.2], [0.2, 0.5]])
    stack = np.repeat(h[None], 7, axis=0)
    assert theory.state_dependent_correction(h, s, 0.3, 2, per_example_hessians=stack) == 0.0
    np.testing.assert_array_equal(
        theory.state_dependent_covariance_first_order(h, s, 0.3, 2, per_example_hessians=stack),
        np.zeros((2, 2)))


def test_from_trace_maps_the_exact_trace_to_the_correction():
    x, y = _least_squares_data(2)
    r = theory.least_squares_stationary(x, y, 0.05, 5, replacement=False)
    h, s = r.hessian, r.grad_cov
    stack = np.einsum("ni,nj->nij", x, x)
    c0 = theory.sgd_covariance(h, s, 0.05, 5, n_data=N_DATA, replacement=False, discrete=True)
    k0 = np.einsum("nij,jk,nkl->il", stack, c0, stack) / N_DATA - h @ c0 @ h
    trace_wk = np.trace(np.linalg.solve(2 * np.eye(DIM) - 0.05 * h, k0))
    got = theory.state_dependent_correction_from_trace(trace_wk, 0.05, 5, n_data=N_DATA,
                                                       replacement=False)
    want = theory.state_dependent_correction(h, s, 0.05, 5, per_example_hessians=stack,
                                             replacement=False)
    assert got == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(
        theory.state_dependent_correction_from_trace([1.0, 2.0], 0.1, [2, 4]), [0.025, 0.025])


# ---------------------------------------------------------------- properties

elements = st.floats(min_value=-2.0, max_value=2.0, allow_nan=False, allow_infinity=False)


@st.composite
def problems(draw):
    """(H, Σ, stack, η, S), well-conditioned by construction: H = MMᵀ + I/2, η h_max <= 1.9."""
    d = draw(st.integers(min_value=1, max_value=4))
    n = draw(st.integers(min_value=2, max_value=5))
    m = draw(arrays(float, (d, d), elements=elements))
    b = draw(arrays(float, (d, d), elements=elements))
    a = draw(arrays(float, (n, d, d), elements=elements))
    h = m @ m.T + 0.5 * np.eye(d)
    frac = draw(st.floats(min_value=0.05, max_value=1.9))
    lr = frac / np.linalg.eigvalsh(h)[-1]
    bs = draw(st.integers(min_value=1, max_value=64))
    return h, b @ b.T + 0.1 * np.eye(d), a + a.transpose(0, 2, 1), lr, bs


@given(problems())
def test_stack_and_callable_forms_agree(p):
    h, s, stack, lr, bs = p
    dev = stack - stack.mean(axis=0)

    def k_operator(c):   # the un-centred form, as a network would supply it
        hbar = stack.mean(axis=0)
        return sum(a @ c @ a for a in stack) / len(stack) - hbar @ c @ hbar

    by_stack = theory.state_dependent_correction(h, s, lr, bs, per_example_hessians=stack)
    by_call = theory.state_dependent_correction(h, s, lr, bs, k_operator=k_operator)
    assert by_call == pytest.approx(by_stack, rel=1e-9, abs=1e-14 * (1 + np.abs(dev).max()))


@given(problems())
def test_c1_solves_its_equation_and_gives_the_correction(p):
    h, s, stack, lr, bs = p
    c1 = theory.state_dependent_covariance_first_order(h, s, lr, bs, per_example_hessians=stack)
    c0 = theory.sgd_covariance(h, s, lr, bs, discrete=True)
    hbar = stack.mean(axis=0)
    k0 = sum(a @ c0 @ a for a in stack) / len(stack) - hbar @ c0 @ hbar
    lhs = h @ c1 + c1 @ h - lr * h @ c1 @ h
    # The un-centred reference k0 cancels terms of size |H_i|²|C₀|: round-off scales with them.
    scale = lr / bs * np.abs(stack).max() ** 2 * np.abs(c0).max()
    np.testing.assert_allclose(lhs, lr / bs * k0, rtol=1e-8, atol=1e-12 * scale)
    assert np.linalg.eigvalsh(c1)[0] >= -1e-10 * max(np.abs(c1).max(), 1e-300)
    de1 = theory.state_dependent_correction(h, s, lr, bs, per_example_hessians=stack)
    assert de1 >= 0
    assert de1 == pytest.approx(0.5 * np.sum(h * c1), rel=1e-9, abs=1e-15)


@given(problems(), st.integers(min_value=2, max_value=5))
def test_scales_as_noise_factor_squared(p, k):
    h, s, stack, lr, bs = p
    one = theory.state_dependent_correction(h, s, lr, bs, per_example_hessians=stack)
    more = theory.state_dependent_correction(h, s, lr, k * bs, per_example_hessians=stack)
    assert more == pytest.approx(one / k**2, rel=1e-10, abs=1e-300)


@given(problems(), st.integers(min_value=0, max_value=2**31 - 1))
def test_invariant_to_common_shift_and_rotation(p, seed):
    h, s, stack, lr, bs = p
    d = h.shape[0]
    base = theory.state_dependent_correction(h, s, lr, bs, per_example_hessians=stack)
    # K depends only on H_i − H̄: an L2 term 2λI (or any common A) drops out.
    shifted = theory.state_dependent_correction(h, s, lr, bs,
                                                per_example_hessians=stack + h[None])
    assert shifted == pytest.approx(base, rel=1e-8, abs=1e-14)
    q = ortho_group.rvs(d, random_state=seed) if d > 1 else np.array([[-1.0]])
    rotated = theory.state_dependent_correction(q @ h @ q.T, q @ s @ q.T, lr, bs,
                                                per_example_hessians=q @ stack @ q.T)
    assert rotated == pytest.approx(base, rel=1e-8, abs=1e-14)


# ---------------------------------------------------------------- bad input

H = np.diag([1.0, 3.0])
S = np.array([[2.0, 1.0], [1.0, 1.0]])
STACK = np.stack([np.diag([0.5, 2.0]), np.diag([1.5, 4.0])])


@pytest.mark.parametrize("kwargs, match", [
    (dict(), "exactly one of per_example_hessians and k_operator; got neither"),
    (dict(per_example_hessians=STACK, k_operator=lambda c: c), "got both"),
    (dict(per_example_hessians=STACK[0]), r"per_example_hessians must be 3-dimensional; got shape \(2, 2\)"),
    (dict(per_example_hessians=np.ones((2, 3, 3))), r"shape \(n, 2, 2\).*got \(2, 3, 3\)"),
    (dict(per_example_hessians=np.where(STACK > 3, np.nan, STACK)), "per_example_hessians must be finite"),
    (dict(per_example_hessians=STACK + [[0, 0.5], [0, 0]]), "per_example_hessians must be symmetric; entry 0"),
    (dict(per_example_hessians=STACK, n_data=3), r"n_data must equal .* \(2\); got 3"),
    (dict(k_operator=lambda c: np.ones(3)), r"k_operator\(C\) must return a \(2, 2\) matrix; got shape \(3,\)"),
    (dict(k_operator=lambda c: np.eye(3)), r"k_operator\(C\) must return a \(2, 2\) matrix"),
    (dict(k_operator=lambda c: c * np.nan), r"k_operator\(C\) must be finite"),
    (dict(k_operator=lambda c: [[1.0, 0.0], [0.5, 1.0]]), r"k_operator\(C\) must be symmetric"),
    (dict(k_operator=lambda c: c, n_data=1, replacement=False), "batch_size must be <= n_data"),
])
def test_bad_operator_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        theory.state_dependent_correction(H, S, 0.1, 2, **kwargs)


def test_bad_types_and_unstable_lr():
    with pytest.raises(TypeError, match="k_operator must be callable"):
        theory.state_dependent_correction(H, S, 0.1, 2, k_operator=np.eye(2))
    with pytest.raises(TypeError, match="replacement must be True or False; got 'no'"):
        theory.state_dependent_correction(H, S, 0.1, 2, per_example_hessians=STACK,
                                          replacement="no")
    with pytest.raises(theory.StabilityError, match=r"lr\*h_max = 2.1 >= 2"):
        theory.state_dependent_correction(H, S, 0.7, 2, per_example_hessians=STACK)
    with pytest.raises(ValueError, match="hessian must be positive definite"):
        theory.state_dependent_covariance_first_order(np.diag([1.0, -1.0]), S, 0.1, 2,
                                                      per_example_hessians=STACK)
    with pytest.raises(ValueError, match="lr must be > 0; got 0"):
        theory.state_dependent_correction(H, S, 0.0, 2, per_example_hessians=STACK)
    with pytest.raises(ValueError, match="trace_wk must be finite"):
        theory.state_dependent_correction_from_trace(np.nan, 0.1, 2)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1; got 0"):
        theory.state_dependent_correction_from_trace(1.0, 0.1, 0)
