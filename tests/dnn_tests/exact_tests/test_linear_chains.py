"""Linearised SGD chains and the Rayleigh–Ritz ρ of their second-moment map, against theory.

Independent references: :func:`theory.expected_loss_linear`,
:func:`theory.second_moment_spectral_radius` and :func:`theory.mean_square_stability_edge`
on per-example Hessians built explicitly (``jax.hessian`` of each example's loss, not the
HVPs the code under test uses), for a network small enough to hold them: 8 pixels of the
digits 0–2 (N = 120), one hidden layer of 3 tanh units, P = 39.  The random-stack tests
are pure numpy and take milliseconds.
"""

import math

import numpy as np
import pytest

import theory
from dnn.exact.second_moment import (CompressedSecondMoment, compress_per_example_hessians,
                                     orthonormal_basis, ritz_start)


# ----------------------------------------------------------------------------- pure numpy

def _stack(n, d, rank, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, d, rank))
    return a @ a.transpose(0, 2, 1) + 0.05 * np.eye(d)      # PSD H_i, not commuting


@pytest.mark.parametrize("d", [3, 9, 16])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_compressed_operator_equals_theory_on_explicit_stacks(d, batch_size):
    stack = _stack(30, d, 3, seed=d)
    op = CompressedSecondMoment.from_stack(stack)
    h_max = np.linalg.eigvalsh(stack.mean(axis=0))[-1]
    for eta_h in (0.1, 0.5, 1.5):
        lr = eta_h / h_max
        rho, perron = op.spectral_radius(lr, 1 / batch_size)
        assert rho == pytest.approx(theory.second_moment_spectral_radius(stack, lr, batch_size),
                                    rel=1e-10)
        # the Perron matrix is PSD with unit norm
        assert np.linalg.eigvalsh(perron)[0] >= -1e-12 and np.linalg.norm(perron) == pytest.approx(1)
    edge = op.edge(1 / batch_size)
    want = theory.mean_square_stability_edge(stack, batch_size)
    assert edge["lr_edge"] == pytest.approx(want.lr_edge, rel=1e-10) and edge["confirmed"]
    lo, hi = edge["bracket"]
    assert op.spectral_radius(lo, 1 / batch_size)[0] < 1 <= op.spectral_radius(hi, 1 / batch_size)[0]


def test_compression_onto_a_subspace_is_a_lower_bound_and_exact_on_the_whole_space():
    stack = _stack(40, 12, 2, seed=1)
    rng = np.random.default_rng(2)
    lr = 0.6 / np.linalg.eigvalsh(stack.mean(axis=0))[-1]
    full = theory.second_moment_spectral_radius(stack, lr, 2)
    edge = theory.mean_square_stability_edge(stack, 2).lr_edge
    for r in (3, 6, 12):
        v = orthonormal_basis(rng.normal(size=(12, r)))
        op = CompressedSecondMoment.from_stack(v.T @ stack @ v)
        rho = op.spectral_radius(lr, 0.5)[0]
        # Courant–Fischer for the self-adjoint positive T: never above, equal on everything
        assert rho <= full * (1 + 1e-12)
        assert op.edge(0.5)["lr_edge"] >= edge * (1 - 1e-12)
        if r == 12:
            assert rho == pytest.approx(full, rel=1e-10)


def test_ritz_start_has_the_perron_matrix_as_covariance():
    v = orthonormal_basis(np.random.default_rng(0).normal(size=(7, 3)))
    x = np.diag([0.8, 0.5, 0.3])
    draws = ritz_start(v, x, 200_000, np.random.default_rng(1))
    cov = draws.T @ draws / draws.shape[0]
    np.testing.assert_allclose(cov, v @ x @ v.T, atol=5 * 0.8 / math.sqrt(200_000) * 3)


def test_orthonormal_basis_drops_directions_already_spanned():
    a = np.random.default_rng(3).normal(size=(10, 3))
    v = orthonormal_basis(np.concatenate([a, a[:, :1] + a[:, 1:2]], axis=1))
    assert v.shape == (10, 3)
    np.testing.assert_allclose(v.T @ v, np.eye(3), atol=1e-12)
    with pytest.raises(ValueError, match="vectors"):
        orthonormal_basis(np.zeros((4, 2)))


# ----------------------------------------------------------------------------- a tiny network

@pytest.fixture(scope="module")
def tiny(tiny_network):
    """θ*, H, Σ, the per-example Hessians and the callables of the shared P = 39 MLP."""
    return tiny_network


@pytest.mark.slow
def test_tiny_network_explicit_hessians_are_the_exact_ones(tiny):
    model, data, star, exact, hess, ops = tiny
    assert model.n_params == 39 and star.grad_norm <= 1e-8
    np.testing.assert_allclose(hess.mean(axis=0), exact.hessian, atol=1e-12 * exact.h_max)
    # compress_per_example_hessians through per-example HVPs, onto a random subspace
    v = orthonormal_basis(np.random.default_rng(0).normal(size=(39, 7)))
    got = compress_per_example_hessians(ops.per_example_hvp, v, data.n, l2=model.l2, batch_size=50)
    np.testing.assert_allclose(got, v.T @ hess @ v, atol=1e-10 * np.abs(hess).max())


@pytest.mark.slow
def test_linearised_chains_match_the_full_linear_theory(tiny):
    """E ½δᵀHδ of linearised SGD against theory.expected_loss_linear (state-dependent noise to
    all orders), |z| < 4 with the across-chain SE; seeded."""
    from dnn.exact.linear_chains import run_linear_chains

    model, data, star, exact, hess, _ = tiny
    lr, s = 0.3 / exact.h_max, 4                  # ρ(T) ≈ 0.996: relaxes in ~250 steps
    want = theory.expected_loss_linear(hess, exact.sigma, lr, s)
    st = run_linear_chains(model, data, star.theta, hessian=exact.hessian, lr=lr, batch_size=s,
                           n_chains=16, burn_in=4000, n_steps=24_000, record_every=4, seed=11)
    obs = st.observed()
    assert st.n_diverged == 0 and obs.n == 16
    assert obs.se < 0.05 * want                   # the test has power
    assert abs(obs.value - want) < 4 * obs.se, (obs, want)
    # and it is not the additive-noise law: the state-dependent part is resolved
    disc = theory.expected_loss_discrete(exact.hessian, exact.sigma, lr, s)
    assert abs(obs.value - disc) > 4 * obs.se
    # the fluctuation–dissipation identity holds for the linear chains too
    ratio = st.identity_ratio()
    assert abs(ratio.value - 1) < 4 * ratio.se


@pytest.mark.slow
def test_linear_chains_draw_the_real_chains_batches(tiny):
    """At a tiny η the real chains move by the linearised map: with one seed, the same batches."""
    from dnn.exact.chains import run_sgd_chains
    from dnn.exact.linear_chains import run_linear_chains

    model, data, star, exact, _, _ = tiny
    kw = dict(lr=1e-4 / exact.h_max, batch_size=4, n_chains=3, burn_in=10, n_steps=40,
              record_every=4, seed=3)
    real = run_sgd_chains(model, data, star.theta, **kw)
    lin = run_linear_chains(model, data, star.theta, hessian=exact.hessian, **kw)
    d_real, d_lin = real.theta_end - star.theta, lin.theta_end - star.theta
    # second-order terms are O(|δ|²), ~1e-4 relative here; another seed's batches differ at O(1)
    assert np.abs(d_real - d_lin).max() < 1e-3 * np.abs(d_real).max()
    other = run_linear_chains(model, data, star.theta, hessian=exact.hessian, **(kw | {"seed": 4}))
    assert np.abs(d_real - (other.theta_end - star.theta)).max() > 0.1 * np.abs(d_real).max()
    assert lin.kind == "linear" and lin.final_state.kind == "linear"


@pytest.mark.slow
def test_continuing_a_run_is_the_same_run(tiny):
    from dnn.exact.chains import run_sgd_chains
    from dnn.exact.linear_chains import run_linear_chains

    model, data, star, exact, _, _ = tiny
    kw = dict(lr=0.2 / exact.h_max, batch_size=4, n_chains=2, record_every=4, seed=5)
    for run, extra in ((run_sgd_chains, {}), (run_linear_chains, {"hessian": exact.hessian})):
        whole = run(model, data, star.theta, burn_in=12, n_steps=40, **kw, **extra)
        first = run(model, data, star.theta, burn_in=12, n_steps=24, **kw, **extra)
        rest = run(model, data, star.theta, burn_in=0, n_steps=16, state=first.final_state,
                   **kw, **extra)
        np.testing.assert_array_equal(rest.theta_end, whole.theta_end)
        assert rest.burn_in == 36 and rest.final_state.step == whole.final_state.step == 52
    with pytest.raises(ValueError, match="state must come from a 'sgd' run"):
        run_sgd_chains(model, data, star.theta, burn_in=0, n_steps=8, state=rest.final_state, **kw)


@pytest.mark.slow
def test_ritz_rho_of_the_network_against_theory(tiny):
    """The experiment's estimator (subspace from H's eigenvectors, linearised-chain states and
    pilots; per-example HVPs) against theory's ρ and edge from the explicit Hessians: a lower
    bound on ρ and an upper bound on the edge always, exact when the subspace is everything."""
    from dnn.exact.linear_chains import run_linear_chains
    from validation.smallnet.stability import batch_size_stability

    model, data, star, exact, hess, ops = tiny
    s = 4
    rows = []
    for eta_h in (0.3, 1.0):
        lr = eta_h / exact.h_max
        st = run_linear_chains(model, data, star.theta, hessian=exact.hessian, lr=lr,
                               batch_size=s, n_chains=8, burn_in=300, n_steps=300, seed=2)
        rows.append({"lr": lr, "eta_h_max": eta_h, "linear_states": st.final_state.state,
                     "steps": 600})
    small = batch_size_stability(model, data, star.theta, exact, ops, batch_size=s,
                                 noise_factor=1 / s, rows=rows, n_eig=4, n_per_row=3,
                                 pilot_chains=8, pilot_steps=100, max_dim=18, replacement=True,
                                 seed=0)
    # the same compression onto all of R^P (V = I) through per-example HVPs is exact
    full = CompressedSecondMoment.from_stack(
        compress_per_example_hessians(ops.per_example_hvp, np.eye(39), data.n, l2=model.l2))
    edge = theory.mean_square_stability_edge(hess, s)
    assert full.edge(1 / s)["lr_edge"] == pytest.approx(edge.lr_edge, rel=1e-8)
    for row in rows:
        rho = theory.second_moment_spectral_radius(hess, row["lr"], s)
        assert full.spectral_radius(row["lr"], 1 / s)[0] == pytest.approx(rho, rel=1e-9)
        got = small["rows"][f"{row['eta_h_max']:g}"]
        assert got["value"] <= rho - 1 + 1e-10 and got["lower_bound"]
    # the 18-dimensional subspace sees the unstable row as unstable, the stable one as stable
    assert small["rows"]["1"]["value"] > 0 and small["rows"]["0.3"]["value"] < 0
    le = small["linear_edge"]
    assert le["eta_h_max"] >= edge.lr_edge_times_h_max * (1 - 1e-10) and le["confirmed"]


def test_lanczos_and_dense_top_eigenvalues_agree(monkeypatch):
    import dnn.exact.second_moment as sm

    op = CompressedSecondMoment.from_stack(_stack(50, 30, 3, seed=4))   # m = 465: Lanczos
    lanczos = [op.spectral_radius(lr, 0.125)[0] for lr in (0.01, 0.1, 0.5)]
    monkeypatch.setattr(sm, "_DENSE_EIG_MAX", 10**9)
    dense = [op.spectral_radius(lr, 0.125)[0] for lr in (0.01, 0.1, 0.5)]
    np.testing.assert_allclose(lanczos, dense, rtol=1e-12)
