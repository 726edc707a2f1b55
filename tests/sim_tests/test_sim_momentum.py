"""Heavy-ball momentum in sim: the driver against theory's exact momentum laws.

Every comparison is a z-test with a fixed seed (deterministic) and tolerance |z| < 4
from the across-chain SE: a correct simulator fails one check with probability 6e-5.
References are theory's closed forms (Gaussian noise: theory.heavy_ball_covariance and
the momentum forms of the stationary functions; least squares: the finite-sum law
theory.least_squares_stationary(momentum=β)), never sim's own code path.
"""

import functools
import math

import numpy as np
import pytest

import sim
import theory

Z = 4.0      # |z| < 4: false alarm 6e-5 per check
SEED = 20240607


def _gaussian():
    return sim.misaligned_problem(4, 1.0, seed=1)          # h in [0.1, 1], Σ unrelated to H


def _lsq():
    rng = np.random.default_rng(12)
    x = rng.normal(size=(64, 3)) * [0.5, 1.0, 1.5]
    return sim.LeastSquares(x, x @ [1.0, 1.0, 1.0] + rng.normal(size=64))


def _z(value, expected, se):
    return (value - expected) / se


# --- Gaussian noise: the exact stacked law ----------------------------------------------

GAUSS = [(beta, edge) for beta in (0.5, 0.9, 0.99) for edge in (0.05, 0.9)]


@functools.lru_cache(maxsize=None)
def _gauss_run(beta, edge):
    p = _gaussian()
    lr = edge * 2 * (1 + beta) / p.eigvals[-1]               # edge = η h_max / (2(1+β))
    r = sim.simulate(p, "sgd", lr=lr, batch_size=4, n_chains=400, n_steps=3000, rng=SEED,
                     momentum=beta)
    return p, lr, r


@pytest.mark.parametrize("beta, edge", GAUSS)
def test_gaussian_heavy_ball_matches_the_exact_law(beta, edge):
    p, lr, r = _gauss_run(beta, edge)
    kw = dict(discrete=True, momentum=beta)
    h, s = p.hessian, p.grad_cov
    assert r.momentum == beta
    assert abs(_z(r.mean_excess_loss,
                  theory.expected_loss_discrete(h, s, lr, 4, momentum=beta), r.se)) < Z
    assert abs(_z(r.mean_grad_sqnorm, theory.expected_grad_sqnorm(h, s, lr, 4, **kw),
                  r.grad_sqnorm_se)) < Z
    assert abs(_z(r.mean_sq_distance, theory.expected_sq_distance(h, s, lr, 4, **kw),
                  r.sq_distance_se)) < Z
    # The recorded covariance is of θ (d × d), not of the stacked (θ, velocity) state.
    cov = theory.sgd_covariance(h, s, lr, 4, **kw)
    assert r.covariance.shape == (4, 4)
    iu = np.triu_indices(4)
    assert np.all(np.abs(_z(r.covariance[iu], cov[iu], r.covariance_se[iu])) < Z)


@pytest.mark.parametrize("beta", [0.5, 0.9, 0.99])
def test_large_lr_biases_the_effective_rate_formula_only(beta):
    # At η h_max = 0.9·2(1+β) the continuous law at η/(1−β) misses by many SE.
    p, lr, r = _gauss_run(beta, 0.9)
    cont = theory.expected_loss_wang(np.trace(p.grad_cov), lr, 4, momentum=beta)
    exact = theory.expected_loss_discrete(p.hessian, p.grad_cov, lr, 4, momentum=beta)
    assert abs(_z(r.mean_excess_loss, exact, r.se)) < Z
    assert _z(r.mean_excess_loss, cont, r.se) > 10


@pytest.mark.parametrize("beta, edge", [(0.0, 0.5)] + GAUSS)
def test_theta_star_free_estimator_is_the_excess_loss(beta, edge):
    # ((1+β)/(4η)) E‖θ_{t} − θ_{t−1}‖² = E L − L* exactly on a quadratic (theory.md).
    if beta:
        p, lr, r = _gauss_run(beta, edge)
    else:                                  # plain SGD: the Yaida identity E L = (η/4) E‖ĝ‖²
        p = _gaussian()
        lr = edge * 2 / p.eigvals[-1]
        r = sim.simulate(p, "sgd", lr=lr, batch_size=4, n_chains=400, n_steps=3000, rng=SEED)
    exact = theory.expected_loss_discrete(p.hessian, p.grad_cov, lr, 4, momentum=beta)
    assert r.theta_free_excess_loss == pytest.approx((1 + beta) / (4 * lr) * r.mean_step_sqnorm)
    assert abs(_z(r.theta_free_excess_loss, exact, r.theta_free_se)) < Z


def test_theta_star_free_estimator_with_thinned_records():
    # record_every > 1: each record still pairs θ_j with θ_{j−1}, not with the last record.
    p, lr, beta = _gaussian(), 0.5, 0.9
    r = sim.simulate(p, "sgd", lr=lr, batch_size=4, n_chains=400, n_steps=3000, rng=SEED,
                     momentum=beta, record_every=7)
    exact = theory.expected_loss_discrete(p.hessian, p.grad_cov, lr, 4, momentum=beta)
    assert abs(_z(r.theta_free_excess_loss, exact, r.theta_free_se)) < Z
    assert abs(_z(r.mean_excess_loss, exact, r.se)) < Z


def test_exact_start_needs_no_burn_in():
    # Chains start in the exact stationary law of (θ, velocity), so even burn_in=0 is
    # unbiased: this checks the start's cross-covariances (a wrong one would show at t=0).
    p, lr, beta = _gaussian(), 0.3, 0.99
    r = sim.simulate(p, "sgd", lr=lr, batch_size=4, n_chains=2000, n_steps=200, rng=SEED,
                     momentum=beta, burn_in=0)
    exact = theory.expected_loss_discrete(p.hessian, p.grad_cov, lr, 4, momentum=beta)
    assert r.burn_in == 0
    assert abs(_z(r.mean_excess_loss, exact, r.se)) < Z
    assert abs(_z(r.theta_free_excess_loss, exact, r.theta_free_se)) < Z


def test_float32_heavy_ball_matches_theory():
    p, lr, beta = _gaussian(), 1.5, 0.9
    r = sim.simulate(p, "sgd", lr=lr, batch_size=4, n_chains=400, n_steps=2000, rng=SEED,
                     momentum=beta, precision="float32")
    exact = theory.expected_loss_discrete(p.hessian, p.grad_cov, lr, 4, momentum=beta)
    assert abs(_z(r.mean_excess_loss, exact, r.se)) < Z


def test_gaussian_without_replacement_sets_c_s():
    p = sim.misaligned_problem(3, 1.0, seed=2, eig_range=(0.5, 1.0), n_data=40)
    lr, beta = 0.4, 0.5
    r = sim.simulate(p, "sgd", lr=lr, batch_size=8, n_chains=400, n_steps=2000, rng=SEED,
                     momentum=beta, sampler="without_replacement")
    exact = theory.expected_loss_discrete(p.hessian, p.grad_cov, lr, 8, momentum=beta,
                                          n_data=40, replacement=False)
    assert abs(_z(r.mean_excess_loss, exact, r.se)) < Z


# --- least squares: real minibatches against the finite-sum law with momentum ----------

LSQ = [  # (β, η, S, sampler); "ratio" is the exact/additive excess loss (1: additive)
    (0.5, 0.03, 4, "with_replacement"),
    (0.5, 0.6, 8, "without_replacement"),        # η h_max = 0.36·2(1+β); ratio 1.8
    (0.9, 0.003, 4, "without_replacement"),
    (0.9, 0.1, 4, "with_replacement"),           # ratio 2.1
    (0.99, 0.001, 8, "with_replacement"),
    (0.99, 0.01, 4, "without_replacement"),      # ratio 2.0
]


@functools.lru_cache(maxsize=None)
def _lsq_run(beta, lr, bs, sampler):
    p = _lsq()
    r = sim.simulate(p, "sgd", lr=lr, batch_size=bs, n_chains=400, n_steps=3000, rng=SEED,
                     momentum=beta, sampler=sampler)
    ref = theory.least_squares_stationary(p.X, p.y, lr, bs, momentum=beta,
                                          replacement=sampler == "with_replacement")
    return p, r, ref


@pytest.mark.parametrize("beta, lr, bs, sampler", LSQ)
def test_least_squares_heavy_ball_matches_the_finite_sum_law(beta, lr, bs, sampler):
    p, r, ref = _lsq_run(beta, lr, bs, sampler)
    assert abs(_z(r.mean_excess_loss, ref.expected_excess_loss, r.se)) < Z
    assert abs(_z(r.mean_grad_sqnorm, ref.expected_grad_sqnorm, r.grad_sqnorm_se)) < Z
    assert abs(_z(r.mean_sq_distance, ref.expected_sq_distance, r.sq_distance_se)) < Z
    assert abs(_z(r.theta_free_excess_loss, ref.expected_excess_loss, r.theta_free_se)) < Z
    iu = np.triu_indices(3)
    assert np.all(np.abs(_z(r.covariance[iu], ref.covariance[iu], r.covariance_se[iu])) < Z)
    # The burn-in is 20 relaxation times of the stacked second-moment map.
    assert r.relaxation_steps == pytest.approx(-1 / math.log(ref.spectral_radius), rel=1e-6)
    assert r.burn_in == math.ceil(20 * r.relaxation_steps)


@pytest.mark.parametrize("beta, lr, bs, sampler", [LSQ[1], LSQ[3]])
def test_least_squares_heavy_ball_rejects_the_additive_law(beta, lr, bs, sampler):
    p, r, ref = _lsq_run(beta, lr, bs, sampler)
    additive = theory.expected_loss_discrete(p.hessian, p.grad_cov, lr, bs, momentum=beta,
                                             n_data=p.n_data,
                                             replacement=sampler == "with_replacement")
    assert _z(r.mean_excess_loss, additive, r.se) > 10       # state-dependent noise adds


def test_epoch_shuffle_runs_with_momentum():
    # No i.i.d. law applies (Kühn & Rosenow 2023), so no z-test: it runs on every
    # sampler, is reproducible and thread-invariant, and records θ's moments.
    p = _lsq()
    kw = dict(lr=0.05, batch_size=8, n_chains=200, n_steps=1500, rng=SEED, momentum=0.5,
              sampler="epoch_shuffle")
    a = sim.simulate(p, "sgd", **kw)
    b = sim.simulate(p, "sgd", n_workers=1, **kw)
    assert a.mean_excess_loss == b.mean_excess_loss and np.isfinite(a.mean_excess_loss)
    assert a.covariance.shape == (3, 3) and a.mean_excess_loss > 0


# --- β = 0 is today's code, bit for bit ---------------------------------------------------

@pytest.mark.parametrize("problem, kw", [
    (_gaussian, dict(lr=0.5)),
    (_gaussian, dict(lr=0.5, precision="float32")),
    (_lsq, dict(lr=0.1)),
    (_lsq, dict(lr=0.1, sampler="without_replacement")),
])
def test_zero_momentum_gives_bit_identical_results(problem, kw):
    p = problem()
    common = dict(batch_size=4, n_chains=300, n_steps=400, rng=3, **kw)
    a = sim.simulate(p, "sgd", **common)
    b = sim.simulate(p, "sgd", momentum=0.0, **common)
    da, db = a.to_dict(), b.to_dict()
    for key in ("elapsed_s", "path_steps_per_s"):
        da.pop(key), db.pop(key)
    assert da == db


# --- relaxation time, bad inputs, stability ---------------------------------------------

@pytest.mark.parametrize("beta, lr", [(0.5, 0.01), (0.9, 0.5), (0.99, 0.3), (0.9, 3.5)])
def test_burn_in_uses_the_heavy_ball_relaxation_time(beta, lr):
    p = _gaussian()
    r = sim.simulate(p, "sgd", lr=lr, batch_size=4, n_chains=2, n_steps=10, rng=0,
                     momentum=beta)
    # Independent reference: eigenvalues of each 2×2 block [[1+β−ηh, −β], [1, 0]].
    radius = max(np.abs(np.linalg.eigvals([[1 + beta - lr * h, -beta], [1.0, 0.0]])).max()
                 for h in p.eigvals)
    assert r.relaxation_steps == pytest.approx(-1 / math.log(radius ** 2), rel=1e-9)
    assert r.burn_in == math.ceil(20 * r.relaxation_steps)


def test_high_momentum_relaxes_more_slowly_at_moderate_lr():
    # Underdamped blocks decay like √β per step whatever ηh: β = 0.99 needs ~100 steps per
    # e-fold of the second moments where plain SGD at the same η needs ~3.
    p = _gaussian()
    kw = dict(lr=1.0, batch_size=4, n_chains=2, n_steps=10, rng=0)
    plain = sim.simulate(p, "sgd", **kw)
    heavy = sim.simulate(p, "sgd", momentum=0.99, **kw)
    assert heavy.relaxation_steps == pytest.approx(-1 / math.log(0.99), rel=1e-9)
    assert heavy.burn_in > 10 * plain.burn_in


@pytest.mark.parametrize("value, shown", [(-0.1, "got -0.1"), (1.0, "got 1.0"),
                                          (float("nan"), "got nan"), (True, "got True"),
                                          ("0.5", "got '0.5'")])
@pytest.mark.parametrize("problem", [_gaussian, _lsq])
def test_bad_momentum_raises_value_error_naming_it(problem, value, shown):
    with pytest.raises(ValueError, match="momentum") as err:
        sim.simulate(problem(), "sgd", lr=0.1, batch_size=4, n_chains=2, n_steps=2, rng=0,
                     momentum=value)
    assert shown in str(err.value)
    with pytest.raises(ValueError, match="momentum"):
        sim.make_stepper(problem(), "sgd", lr=0.1, batch_size=4, momentum=value)


@pytest.mark.parametrize("method", ["em", "ou"])
def test_momentum_is_for_sgd_only(method):
    with pytest.raises(ValueError, match="momentum is a setting of method 'sgd'"):
        sim.simulate(_gaussian(), method, lr=0.1, batch_size=4, n_chains=2, n_steps=2, rng=0,
                     momentum=0.5)
    # β = 0 is plain SGD's value and is accepted everywhere.
    assert sim.simulate(_gaussian(), method, lr=0.1, batch_size=4, n_chains=2, n_steps=2,
                        rng=0, momentum=0.0).momentum == 0.0


@pytest.mark.parametrize("beta", [0.5, 0.9, 0.99])
@pytest.mark.parametrize("problem", [_gaussian, _lsq])
def test_unstable_lr_raises_stability_error(problem, beta):
    p = problem()
    edge = 2 * (1 + beta) / p.eigvals[-1]
    # (1 + 1e-12): lr*h_max computed from the rounded lr could land one ulp below the edge.
    for lr in (edge * (1 + 1e-12), 1.5 * edge):
        with pytest.raises(theory.StabilityError,
                           match=r"lr\*h_max = .* >= 2\(1\+momentum\) = "):
            sim.simulate(p, "sgd", lr=lr, batch_size=4, n_chains=2, n_steps=2, rng=0,
                         momentum=beta)
    if problem is _gaussian:
        # Just below the edge: stable (relaxation is very slow there, so no burn-in).
        r = sim.simulate(p, "sgd", lr=edge * (1 - 1e-6), batch_size=4, n_chains=2,
                         n_steps=2, rng=0, momentum=beta, burn_in=0)
        assert np.isfinite(r.mean_excess_loss)


def test_least_squares_stacked_map_instability():
    # η h_max far below 2(1+β), but heavy-tailed rows with S = 1 have no stationary law.
    rng = np.random.default_rng(3)
    x = rng.normal(size=(8, 2)) * rng.standard_exponential(size=(8, 1)) ** 2
    p = sim.LeastSquares(x, rng.normal(size=8))
    with pytest.raises(theory.StabilityError, match="spectral radius"):
        sim.simulate(p, "sgd", lr=0.3 / p.eigvals[-1], batch_size=1, n_chains=2, n_steps=1,
                     rng=0, momentum=0.9)


def test_least_squares_momentum_dimension_limit():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 33))
    p = sim.LeastSquares(x, rng.normal(size=80))
    with pytest.raises(ValueError, match="supports d <= 32; got d=33"):
        sim.make_stepper(p, "sgd", lr=0.01, batch_size=4, momentum=0.5)


def test_budget_error_hint_names_momentum():
    p = _gaussian()
    with pytest.raises(sim.BudgetError, match="a smaller momentum"):
        sim.simulate(p, "sgd", lr=1e-7, batch_size=4, n_chains=2, n_steps=10, rng=0,
                     momentum=0.5)
