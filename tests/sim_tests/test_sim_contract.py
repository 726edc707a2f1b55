"""Contract tests: every method and sampler runs through the same registry of checks (optax-style).

Each case names a problem, a method and its settings, and an independent reference
for the stationary moments (theory's closed forms, never sim's own code path).
Every check is applied to every case; each simulation runs once and is cached.
"""

import functools
import json
import math
from dataclasses import dataclass, field

import numpy as np
import pytest

import sim
import theory

T2_H = np.diag([1.0, 3.0])
T2_S = np.array([[2.0, 1.0], [1.0, 1.0]])


def _lsq():
    # Heavy-tailed rows make the state-dependent (fourth-moment) noise term large.
    rng = np.random.default_rng(11)
    scale = rng.standard_exponential(size=(40, 1))
    x = rng.normal(size=(40, 3)) * scale / np.sqrt(np.mean(scale**2))
    return sim.LeastSquares(x, x @ [1.0, -0.5, 2.0] + 0.5 * rng.normal(size=40))


def _gauss_ref(p, lr, s, *, step=None, discrete=True, n_data=None, replacement=True,
               momentum=0.0):
    """Additive-noise references; EM with step h is (η/h) × discrete SGD at lr = h."""
    kw = dict(n_data=n_data, replacement=replacement, momentum=momentum)
    h = lr if step is None else step
    scale = lr / h
    return dict(
        loss=scale * (theory.expected_loss_discrete(p.hessian, p.grad_cov, h, s, **kw) if discrete
                      else theory.expected_loss_wang(np.trace(p.grad_cov), lr, s, **kw)),
        grad_sqnorm=scale * theory.expected_grad_sqnorm(p.hessian, p.grad_cov, h, s,
                                                        discrete=discrete, **kw),
        sq_distance=scale * theory.expected_sq_distance(p.hessian, p.grad_cov, h, s,
                                                        discrete=discrete, **kw),
        covariance=scale * theory.sgd_covariance(p.hessian, p.grad_cov, h, s,
                                                 discrete=discrete, **kw))


def _lsq_ref(p, lr, s, replacement, momentum=0.0):
    r = theory.least_squares_stationary(p.X, p.y, lr, s, replacement=replacement,
                                        momentum=momentum)
    return dict(loss=r.expected_excess_loss, grad_sqnorm=r.expected_grad_sqnorm,
                sq_distance=r.expected_sq_distance, covariance=r.covariance)


@dataclass(frozen=True)
class Case:
    id: str
    problem: object                      # () -> problem
    method: str
    lr: float
    batch_size: int
    reference: object                    # (problem) -> dict of expected moments
    kwargs: dict = field(default_factory=dict)
    n_chains: int = 600
    n_steps: int = 3000


CASES = [
    Case("sgd-gaussian-T2", lambda: sim.GaussianQuadratic(T2_H, T2_S), "sgd", 0.1, 10,
         lambda p: _gauss_ref(p, 0.1, 10)),
    Case("sgd-gaussian-large-lr", lambda: sim.misaligned_problem(4, 1.0, seed=1), "sgd", 1.8, 4,
         lambda p: _gauss_ref(p, 1.8, 4), n_steps=1500),
    # Gaussian noise has no dataset to sample: "without_replacement" only sets c_S here,
    # so this checks the noise scaling; real batch sampling is checked on LeastSquares.
    Case("sgd-gaussian-cS-without-replacement",
         lambda: sim.misaligned_problem(5, 1.0, seed=2, eig_range=(0.5, 1.0), n_data=40),
         "sgd", 0.5, 8, lambda p: _gauss_ref(p, 0.5, 8, n_data=40, replacement=False),
         kwargs=dict(sampler="without_replacement")),
    Case("sgd-gaussian-numpy-normals", lambda: sim.misaligned_problem(3, 0.5, seed=3), "sgd",
         1.0, 2, lambda p: _gauss_ref(p, 1.0, 2), kwargs=dict(normals="numpy")),
    Case("em-small-step", lambda: sim.GaussianQuadratic(T2_H, T2_S), "em", 0.1, 10,
         lambda p: _gauss_ref(p, 0.1, 10, step=0.02), kwargs=dict(step=0.02), n_steps=5000),
    Case("em-large-step", lambda: sim.GaussianQuadratic(T2_H, T2_S), "em", 0.1, 10,
         lambda p: _gauss_ref(p, 0.1, 10, step=0.5), kwargs=dict(step=0.5)),
    Case("ou-step-lr", lambda: sim.misaligned_problem(4, 1.0, seed=4, eig_range=(0.5, 1.0)),
         "ou", 0.2, 4, lambda p: _gauss_ref(p, 0.2, 4, discrete=False)),
    # h·h_max = 5: far beyond EM's stability limit 2, and still exact.
    Case("ou-huge-step", lambda: sim.misaligned_problem(4, 1.0, seed=4, eig_range=(0.5, 1.0)),
         "ou", 0.2, 4, lambda p: _gauss_ref(p, 0.2, 4, discrete=False), kwargs=dict(step=5.0),
         n_steps=1000),
    Case("ou-least-squares-linearised", _lsq, "ou", 0.1, 4,
         lambda p: _gauss_ref(p, 0.1, 4, discrete=False)),
    Case("sgd-lsq-with-replacement", _lsq, "sgd", 0.2, 4, lambda p: _lsq_ref(p, 0.2, 4, True)),
    Case("sgd-lsq-without-replacement", _lsq, "sgd", 0.2, 4, lambda p: _lsq_ref(p, 0.2, 4, False),
         kwargs=dict(sampler="without_replacement")),
    # Heavy ball (momentum=β): Gaussian noise against the exact stacked law, and real
    # minibatches against the finite-sum law with momentum.
    Case("sgd-gaussian-momentum", lambda: sim.misaligned_problem(4, 1.0, seed=1), "sgd", 2.5, 4,
         lambda p: _gauss_ref(p, 2.5, 4, momentum=0.9), kwargs=dict(momentum=0.9)),
    Case("sgd-lsq-momentum", _lsq, "sgd", 0.05, 4, lambda p: _lsq_ref(p, 0.05, 4, True, 0.5),
         kwargs=dict(momentum=0.5)),
]
BY_ID = {c.id: c for c in CASES}
SEED = 20240601


def _run(case, **extra):
    return sim.simulate(case.problem(), case.method, lr=case.lr, batch_size=case.batch_size,
                        n_chains=case.n_chains, n_steps=case.n_steps, rng=SEED,
                        **{**case.kwargs, **extra})


@functools.lru_cache(maxsize=None)
def _result(case_id):
    case = BY_ID[case_id]
    return _run(case), case.reference(case.problem())


def _z(value, expected, se):
    return (value - expected) / se


# --- the registry of checks -------------------------------------------------------------

def check_fields(case, res, ref):
    d = case.problem().dim
    assert res.method == case.method and res.n_chains == case.n_chains
    assert res.momentum == case.kwargs.get("momentum", 0.0)
    assert res.n_steps == case.n_steps and res.n_records == case.n_steps
    assert res.chain_excess_loss.shape == (case.n_chains,)
    assert res.covariance.shape == res.covariance_se.shape == (d, d)
    assert res.mean_offset.shape == (d,)
    for name in ("mean_excess_loss", "se", "se_batch_means", "ess", "mean_grad_sqnorm",
                 "grad_sqnorm_se", "mean_sq_distance", "sq_distance_se", "path_steps_per_s"):
        value = getattr(res, name)
        assert np.isfinite(value) and value > 0, name
    assert res.mean_excess_loss == pytest.approx(res.chain_excess_loss.mean())


def check_excess_loss(case, res, ref):
    # Fixed seed, so deterministic; |z| < 4 would fail a correct simulator 6e-5 of the time.
    assert abs(_z(res.mean_excess_loss, ref["loss"], res.se)) < 4


def check_grad_sqnorm(case, res, ref):
    assert abs(_z(res.mean_grad_sqnorm, ref["grad_sqnorm"], res.grad_sqnorm_se)) < 4


def check_sq_distance(case, res, ref):
    assert abs(_z(res.mean_sq_distance, ref["sq_distance"], res.sq_distance_se)) < 4


def check_covariance(case, res, ref):
    iu = np.triu_indices(res.covariance.shape[0])
    z = _z(res.covariance[iu], ref["covariance"][iu], res.covariance_se[iu])
    assert np.all(np.abs(z) < 4), z


def check_mean_offset_is_zero(case, res, ref):
    # E θ = θ* for every linear method; compare with the per-coordinate spread.
    sd = np.sqrt(np.diag(ref["covariance"]))
    assert np.all(np.abs(res.mean_offset) < 4 * sd / np.sqrt(case.n_chains))


def check_error_bars_agree(case, res, ref):
    # Across-chain and batch-means SEs estimate the same thing two ways, from
    # n_batches - 1 and n_chains - 1 degrees of freedom: their squared ratio is
    # F-distributed.  Bounds at two-sided p = 6.3e-5, the |z| < 4 of the other checks.
    from scipy.stats import f

    from sim.driver import N_BATCHES

    dfn, dfd = min(N_BATCHES, res.n_records) - 1, res.n_chains - 1
    lo, hi = np.sqrt(f.ppf([3.2e-5, 1 - 3.2e-5], dfn, dfd))
    assert lo < res.se_batch_means / res.se < hi
    # Positively autocorrelated records carry at most one sample each; 2x leaves room
    # for the ~5-10% noise of an SE estimated from >= 100 chains.
    assert res.ess <= 2 * res.n_chains * res.n_records


def check_burn_in_is_honest(case, res, ref):
    assert res.burn_in == math.ceil(20 * res.relaxation_steps)
    assert res.relaxation_steps > 0


def check_reproducible_and_thread_invariant(case, res, ref):
    again = _run(case, n_workers=1)
    assert again.mean_excess_loss == pytest.approx(res.mean_excess_loss, rel=1e-12)
    np.testing.assert_allclose(again.covariance, res.covariance, rtol=1e-10)


def check_json_ready(case, res, ref):
    d = json.loads(json.dumps(res.to_dict()))
    assert d["mean_excess_loss"] == res.mean_excess_loss and d["method"] == case.method


CHECKS = [check_fields, check_excess_loss, check_grad_sqnorm, check_sq_distance,
          check_covariance, check_mean_offset_is_zero, check_error_bars_agree,
          check_burn_in_is_honest, check_reproducible_and_thread_invariant, check_json_ready]


@pytest.mark.parametrize("check", CHECKS, ids=lambda f: f.__name__[6:])
@pytest.mark.parametrize("case_id", list(BY_ID))
def test_contract(case_id, check):
    res, ref = _result(case_id)
    check(BY_ID[case_id], res, ref)


def test_registry_covers_every_method_and_sampler():
    methods = {c.method for c in CASES}
    samplers = {c.kwargs.get("sampler", "with_replacement") for c in CASES}
    assert methods == set(sim.METHODS)
    # epoch_shuffle has no i.i.d. reference; it has its own documented test.
    assert samplers == set(sim.SAMPLERS) - {"epoch_shuffle"}
