"""dnn.state_noise: the Monte Carlo tr[W K(C₀)] against theory.state_dependent_correction.

Small explicit problems (d = 5, N = 8 per-example Hessians) where the exact answer is
theory's closed form; numpy only, no framework.  Cost: ~2 s.
"""

import numpy as np
import pytest

import theory
from dnn.exact import state_noise
from dnn.exact.state_noise import (
    StateNoiseTrace,
    covariance_factor,
    probe_inputs,
    state_dependent_correction_estimate,
    state_dependent_trace,
)

D, N, L2 = 5, 8, 1e-2


def _problem(seed=0):
    """Per-example Hessians H_i (data loss), H = H̄ + 2λI, Σ PSD; η h_max = 1."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(N, D, 2))
    stack = np.einsum("nik,njk->nij", a, a) + 0.3 * np.eye(D)   # PSD H_i, H̄ well-conditioned
    b = rng.normal(size=(D, D))
    h = stack.mean(axis=0) + 2 * L2 * np.eye(D)
    lr = 1.0 / np.linalg.eigvalsh(h)[-1]
    return stack, h, b @ b.T / D, lr


def _ops(stack):
    return (lambda v, idx: stack[idx] @ v), (lambda v: stack.mean(axis=0) @ v)


def _t_of(stack, w, v):
    dev = (stack - stack.mean(axis=0)) @ v
    return float(np.einsum("ni,ij,nj->", dev, w, dev) / len(stack))


def test_estimate_agrees_with_the_closed_form_within_its_se():
    stack, h, sigma, lr = _problem()
    bs = 2
    exact = theory.state_dependent_correction(h, sigma, lr, bs, per_example_hessians=stack)
    c0 = theory.sgd_covariance(h, sigma, lr, bs, discrete=True)
    w = np.linalg.inv(2 * np.eye(D) - lr * h)
    pe_hvp, hvp = _ops(stack)
    est = state_dependent_trace(pe_hvp, hvp, covariance_factor(c0), w, N, n_probes=2000,
                                batch_size=3, rng=np.random.default_rng(1))
    corr = state_dependent_correction_estimate(est, lr, bs)
    assert est.n_probes == 2000 and est.n_data == N and corr.n_probes == 2000
    assert abs(corr.value - exact) < 4 * corr.se          # |z| < 4: false alarm 6e-5
    assert 0 < corr.se < 0.1 * exact                     # 2000 probes pin it to a few %


@pytest.mark.parametrize("batch_size", [1, 3, 8, 100])
@pytest.mark.parametrize("one_batch_per_chunk", [False, True])
@pytest.mark.parametrize("weight_kind", ["matrix", "callable"])
def test_each_probe_is_exact_whatever_the_batching(batch_size, one_batch_per_chunk, weight_kind,
                                                   monkeypatch):
    if one_batch_per_chunk:   # exercise the pairwise merge of chunks
        monkeypatch.setattr(state_noise, "_CHUNK_DOUBLES", 1)
    stack, h, _, lr = _problem(2)
    w = np.linalg.inv(2 * np.eye(D) - lr * h)
    v = np.random.default_rng(3).normal(size=D)
    pe_hvp, hvp = _ops(stack)
    weight = w if weight_kind == "matrix" else (lambda rows: rows @ w)
    est = state_dependent_trace(pe_hvp, hvp, lambda rng: v, weight, N, n_probes=3,
                                batch_size=batch_size, rng=np.random.default_rng(0))
    assert est.mean == pytest.approx(_t_of(stack, w, v), rel=1e-12)
    assert est.se == pytest.approx(0.0, abs=1e-15)


def test_weight_and_sampler_forms_agree_and_l2_shift_drops_out():
    stack, h, sigma, lr = _problem(4)
    factor = covariance_factor(theory.sgd_covariance(h, sigma, lr, 4, discrete=True))
    w = np.linalg.inv(2 * np.eye(D) - lr * h)
    pe_hvp, hvp = _ops(stack)
    kw = dict(n_probes=50, batch_size=3)
    ref = state_dependent_trace(pe_hvp, hvp, factor, w, N, rng=np.random.default_rng(5), **kw)
    alt = state_dependent_trace(pe_hvp, None,
                                lambda rng: factor @ rng.standard_normal(factor.shape[1]),
                                lambda rows: rows @ w, N, rng=np.random.default_rng(5), **kw)
    assert alt.mean == pytest.approx(ref.mean, rel=1e-12)
    assert alt.se == pytest.approx(ref.se, rel=1e-10)
    # Per-example Hessians of the regularised loss (H_i + 2λI) give the same t(v).
    shifted = stack + 2 * L2 * np.eye(D)
    pe_full, hvp_full = _ops(shifted)
    full = state_dependent_trace(pe_full, hvp_full, factor, w, N, rng=np.random.default_rng(5),
                                 **kw)
    assert full.mean == pytest.approx(ref.mean, rel=1e-10)
    # An hvp that is not the mean of the per-example HVPs (here with the L2 term) is refused.
    with pytest.raises(ValueError, match="hvp must be the Hessian-vector product of the data loss"):
        state_dependent_trace(pe_hvp, lambda v: h @ v, factor, w, N,
                              rng=np.random.default_rng(5), **kw)


def test_target_rel_se_stops_when_reached():
    stack, h, sigma, lr = _problem(6)
    factor = covariance_factor(theory.sgd_covariance(h, sigma, lr, 1, discrete=True))
    pe_hvp, hvp = _ops(stack)
    est = state_dependent_trace(pe_hvp, hvp, factor, None, N, target_rel_se=0.05,
                                max_probes=5000, rng=np.random.default_rng(7))
    assert est.converged and est.target_rel_se == 0.05
    assert 10 <= est.n_probes < 5000
    assert est.se <= 0.05 * est.mean
    capped = state_dependent_trace(pe_hvp, hvp, factor, None, N, target_rel_se=1e-6,
                                   max_probes=20, rng=np.random.default_rng(7))
    assert not capped.converged and capped.n_probes == 20
    assert capped.as_dict()["rel_se"] == pytest.approx(capped.se / capped.mean)


def test_probe_inputs_rebuild_the_discrete_law_from_the_spectrum():
    stack, h, sigma, lr = _problem(8)
    lam, u = np.linalg.eigh(h)
    r = probe_inputs(lam, u, sigma, lr, noise_factor=0.25)
    c0 = theory.sgd_covariance(h, sigma, lr, 4, discrete=True)
    np.testing.assert_allclose(r.factor @ r.factor.T, c0, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(r.weight, np.linalg.inv(2 * np.eye(D) - lr * h), rtol=1e-10)
    # Σ confined to two eigendirections of H gives a rank-2 C₀: the factor keeps its range.
    thin_sigma = u[:, :2] @ np.array([[2.0, 1.0], [1.0, 1.0]]) @ u[:, :2].T
    thin = probe_inputs(lam, u, thin_sigma, lr)
    assert thin.factor.shape == (D, 2)
    np.testing.assert_allclose(thin.factor @ thin.factor.T,
                               theory.sgd_covariance(h, thin_sigma, lr, 1, discrete=True),
                               rtol=1e-9, atol=1e-14)
    with pytest.raises(theory.StabilityError, match=r"lr\*h_max = 2.2 >= 2"):
        probe_inputs(lam, u, sigma, 2.2 / lam[-1])


def test_trace_at_unit_noise_factor_converts_to_any_batch_size():
    # C₀ ∝ c_S, so probes from C₀(c=1) scaled by √c are probes from C₀(c): same z, same t·c.
    stack, h, sigma, lr = _problem(9)
    lam, u = np.linalg.eigh(h)
    pe_hvp, hvp = _ops(stack)
    unit, at_s = (probe_inputs(lam, u, sigma, lr, noise_factor=c) for c in (1.0, 1 / 8))
    kw = dict(n_probes=30, rng_seed=11)

    def run(inputs):
        return state_dependent_trace(pe_hvp, hvp, inputs.factor, inputs.weight, N,
                                     n_probes=kw["n_probes"],
                                     rng=np.random.default_rng(kw["rng_seed"]))

    a = state_dependent_correction_estimate(run(unit), lr, 8, c0_noise_factor=1.0)
    b = state_dependent_correction_estimate(run(at_s), lr, 8)
    assert a.value == pytest.approx(b.value, rel=1e-9)
    assert a.se == pytest.approx(b.se, rel=1e-8)
    exact = theory.state_dependent_correction(h, sigma, lr, 8, per_example_hessians=stack)
    assert abs(a.value - exact) < 4 * a.se


P_HVP = _ops(np.stack([np.eye(2), 2 * np.eye(2)]))[0]


@pytest.mark.parametrize("call, match", [
    (lambda: state_dependent_trace(None, None, np.eye(2), None, 2, n_probes=2,
                                   rng=np.random.default_rng(0)), "per_example_hvp must be callable"),
    (lambda: state_dependent_trace(P_HVP, np.eye(2), np.eye(2), None, 2, n_probes=2,
                                   rng=np.random.default_rng(0)), "hvp must be callable or None"),
    (lambda: state_dependent_trace(P_HVP, None, np.eye(2), None, 2, n_probes=2, rng=0),
     "rng must be a numpy.random.Generator; got 0"),
    (lambda: state_dependent_trace(P_HVP, None, np.eye(2), None, 2,
                                   rng=np.random.default_rng(0)), "n_probes is required"),
    (lambda: state_dependent_trace(P_HVP, None, np.eye(2), None, 2, n_probes=0,
                                   rng=np.random.default_rng(0)), "n_probes must be an integer >= 1; got 0"),
    (lambda: state_dependent_trace(P_HVP, None, np.eye(2), None, 0, n_probes=2,
                                   rng=np.random.default_rng(0)), "n_data must be an integer >= 1; got 0"),
    (lambda: state_dependent_trace(P_HVP, None, np.eye(2), None, 2, n_probes=2, batch_size=0,
                                   rng=np.random.default_rng(0)), "batch_size must be an integer >= 1"),
    (lambda: state_dependent_trace(lambda v, i: np.ones((i.size, 3)), None, np.eye(2), None, 2,
                                   n_probes=2, rng=np.random.default_rng(0)),
     r"per_example_hvp must return shape \(2, 2\) for 2 examples; got \(2, 3\)"),
    (lambda: state_dependent_trace(P_HVP, None, np.ones(2), None, 2, n_probes=2,
                                   rng=np.random.default_rng(0)), r"sample_c0 must be callable or a \(P, r\) factor"),
    (lambda: state_dependent_trace(P_HVP, None, [[np.nan, 0], [0, 1]], None, 2, n_probes=2,
                                   rng=np.random.default_rng(0)), "sample_c0 must be finite"),
    (lambda: state_dependent_trace(P_HVP, None, np.eye(2), np.eye(3), 2, n_probes=2,
                                   rng=np.random.default_rng(0)), r"weight has shape \(3, 3\)"),
    (lambda: state_dependent_trace(P_HVP, None, np.eye(2), [[1.0, 0.5], [0.0, 1.0]], 2,
                                   n_probes=2, rng=np.random.default_rng(0)), "weight must be symmetric"),
    (lambda: state_dependent_trace(P_HVP, None, np.eye(2), lambda r: r[:, :1], 2, n_probes=2,
                                   rng=np.random.default_rng(0)), r"weight\(rows\) must return"),
    (lambda: state_dependent_trace(lambda v, i: np.full((i.size, 2), np.inf), None, np.eye(2),
                                   None, 2, n_probes=2, rng=np.random.default_rng(0)),
     "per_example_hvp returned a non-finite value at probe 0"),
    (lambda: state_dependent_trace(P_HVP, None, np.eye(2), None, 2, target_rel_se=-1.0,
                                   rng=np.random.default_rng(0)), "target_rel_se must be a positive number"),
    (lambda: state_dependent_correction_estimate(1.0, 0.1, 2), "trace must be a StateNoiseTrace; got float"),
    (lambda: probe_inputs([1.0, -1.0], np.eye(2), np.eye(2), 0.1), "eigenvalues must be > 0"),
    (lambda: probe_inputs([1.0, 2.0], np.eye(3), np.eye(2), 0.1), r"eigenvectors must have shape \(2, 2\)"),
    (lambda: probe_inputs([1.0, 2.0], np.eye(2), -np.eye(2), 0.1), "grad_cov must be positive semidefinite"),
    (lambda: covariance_factor(np.diag([1.0, -1.0])), "cov must be positive semidefinite; it is not"),
])
def test_bad_input_is_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_correction_carries_nan_se_for_one_probe():
    t = StateNoiseTrace(mean=1.0, se=float("nan"), n_probes=1, n_data=4, converged=True)
    r = state_dependent_correction_estimate(t, 0.2, 2)
    assert r.value == pytest.approx(0.05) and r.as_dict()["se"] is None
