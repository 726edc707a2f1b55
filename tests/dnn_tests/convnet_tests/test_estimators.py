"""Estimators of tr H, tr Σ, λ_max and the two-batch noise.

Part 1 checks the pure math on explicit matrices; part 2 checks the keras
primitives and ``measure`` on a tiny network (156 parameters) against brute-force
references (exact Hessian, per-example gradients by a loop). Part 2 runs on the
process's keras backend; ``test_backends.py`` reruns this file on the other one.

Statistical checks use |z| < 4 with the SE the estimator reports (false alarm
6e-5 per check) and fixed seeds, so they are deterministic.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from dnn.estimators import (
    grad_cov_trace,
    hutchinson_trace,
    l2_trace_contribution,
    top_hessian_eigenvalue,
    two_batch_noise,
)

_spec = importlib.util.spec_from_file_location(
    "_estimator_test_helpers", Path(__file__).with_name("backend_helpers.py"))
H = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(H)

Z = 4.0   # |z| < 4: false alarm 6e-5 per check


def _sym(d, seed):
    m = np.random.default_rng(seed).normal(size=(d, d))
    return (m + m.T) / 2


# ============================================================ part 1: explicit matrices

def test_hutchinson_within_4se_of_exact_trace_and_se_matches_theory():
    h = _sym(30, 0) + 3 * np.eye(30)
    est = hutchinson_trace(lambda v: h @ v, 30, n_probes=400, rng=np.random.default_rng(1))
    assert abs(est.mean - np.trace(h)) < Z * est.se
    # Var(vᵀHv) = 2 Σ_{i≠j} H_ij² for Rademacher v; the reported SE estimates it
    sd_exact = math.sqrt(2 * (np.sum(h ** 2) - np.sum(np.diag(h) ** 2)) / 400)
    assert est.se == pytest.approx(sd_exact, rel=0.2)
    assert est.n_hvp == 400 and est.converged


def test_hutchinson_streams_batches_with_weights_and_fresh_probes():
    rng = np.random.default_rng(2)
    hs = [_sym(12, s) for s in range(5)]
    wts = np.array([16, 16, 16, 16, 7.0])          # last batch short, as in measure()
    exact = sum(w * np.trace(a) for w, a in zip(wts, hs)) / wts.sum()
    seen = []

    def hvp(v, b):
        seen.append((b, v.copy()))
        return hs[b] @ v
    est = hutchinson_trace(hvp, 12, n_probes=1000, batches=list(range(5)), batch_weights=wts,
                           rng=rng)
    assert abs(est.mean - exact) < Z * est.se
    # every batch visited once per pass, with a different probe each time
    first = [b for b, _ in seen[:5]]
    assert sorted(first) == list(range(5))
    assert not np.array_equal(seen[0][1], seen[5][1])
    assert set(np.unique(seen[0][1])) <= {-1.0, 1.0}


def test_hutchinson_one_pass_over_diagonal_batches_is_exact():
    # diagonal H_b: every probe returns tr H_b, so one pass gives the weighted trace exactly
    ds = [np.arange(1.0, 5.0) * (b + 1) for b in range(3)]
    wts = [4.0, 4.0, 1.0]
    est = hutchinson_trace(lambda v, b: ds[b] * v, 4, batches=[0, 1, 2], batch_weights=wts,
                           rng=np.random.default_rng(0))
    exact = sum(w * d.sum() for w, d in zip(wts, ds)) / sum(wts)
    assert est.n_hvp == 3
    assert est.mean == pytest.approx(exact, rel=1e-12)


def test_hutchinson_list_of_shapes_and_quadratic_form():
    shapes = [(2, 3), (4,)]
    h = _sym(10, 3)

    def hvp(vs):
        assert [v.shape for v in vs] == shapes
        out = h @ np.concatenate([v.ravel() for v in vs])
        return [out[:6].reshape(2, 3), out[6:]]

    def vhv(vs):
        v = np.concatenate([a.ravel() for a in vs])
        return float(v @ h @ v)
    a = hutchinson_trace(hvp, shapes, n_probes=50, rng=np.random.default_rng(4))
    b = hutchinson_trace(vhv, shapes, n_probes=50, rng=np.random.default_rng(4),
                         quadratic_form=True)
    assert a.mean == pytest.approx(b.mean, rel=1e-12) and a.se == pytest.approx(b.se, rel=1e-12)


def test_hutchinson_target_rel_se_stops_when_reached():
    h = _sym(20, 5) + 20 * np.eye(20)
    est = hutchinson_trace(lambda v: h @ v, 20, rng=np.random.default_rng(6), target_rel_se=0.01)
    assert est.converged
    assert est.se <= 0.01 * abs(est.mean)
    assert 10 <= est.n_hvp < 10_000
    # the stopping rule fires at the first probe count where it holds
    again = hutchinson_trace(lambda v: h @ v, 20, rng=np.random.default_rng(6),
                             n_probes=est.n_hvp - 1)
    assert again.n_hvp < 10 or again.se > 0.01 * abs(again.mean)
    capped = hutchinson_trace(lambda v: h @ v, 20, rng=np.random.default_rng(6),
                              target_rel_se=1e-6, max_probes=30)
    assert not capped.converged and capped.n_hvp == 30


def test_grad_cov_trace_equals_brute_force():
    g = np.random.default_rng(7).normal(1.0, 2.0, size=(50, 8))
    r = grad_cov_trace((g ** 2).sum(1), g.sum(0))
    cov = np.cov(g.T, bias=True)                    # centred, divides by N
    assert r.trace == pytest.approx(np.trace(cov), rel=1e-12)
    assert r.mean_example_sqnorm == pytest.approx(np.mean((g ** 2).sum(1)), rel=1e-12)
    assert r.mean_grad_sqnorm == pytest.approx(np.sum(g.mean(0) ** 2), rel=1e-12)
    assert r.n_examples == 50 and r.convention == "centred, divide by N"
    # list-of-arrays gradients give the same answer
    r2 = grad_cov_trace((g ** 2).sum(1), [g[:, :3].sum(0), g[:, 3:].sum(0)])
    assert r2.trace == pytest.approx(r.trace, rel=1e-12)


def _gaussian_pairs(rng, mu, sigma_chol, b_s, b_b, n_pairs):
    d = len(mu)
    gs = mu + rng.normal(size=(n_pairs, d)) @ sigma_chol.T / math.sqrt(b_s)
    gb = mu + rng.normal(size=(n_pairs, d)) @ sigma_chol.T / math.sqrt(b_b)
    return (gs ** 2).sum(1), (gb ** 2).sum(1)


def test_two_batch_on_gaussian_gradients_within_4se_and_se_matches_repetition():
    rng = np.random.default_rng(8)
    d, b_s, b_b = 6, 8, 64
    mu = rng.normal(size=d) * 0.5
    chol = np.linalg.cholesky(np.cov(rng.normal(size=(3 * d, d)).T) + 0.5 * np.eye(d))
    tr_exact, g2_exact = float(np.sum(chol ** 2)), float(mu @ mu)
    r = two_batch_noise(*_gaussian_pairs(rng, mu, chol, b_s, b_b, 400), b_s, b_b)
    assert abs(r.trace_cov - tr_exact) < Z * r.trace_cov_se
    assert abs(r.grad_sqnorm - g2_exact) < Z * r.grad_sqnorm_se
    assert r.noise_scale == pytest.approx(r.trace_cov / r.grad_sqnorm)
    # the reported SE is the estimator's SD, measured by repetition (300 replicates;
    # relative error of an SD from 300 draws ~ 1/sqrt(600) = 4%, so 20% is > 4 sigma)
    reps = [two_batch_noise(*_gaussian_pairs(rng, mu, chol, b_s, b_b, 400), b_s, b_b)
            for _ in range(300)]
    sd = np.std([q.trace_cov for q in reps], ddof=1)
    assert np.mean([q.trace_cov_se for q in reps]) == pytest.approx(sd, rel=0.2)
    assert abs(np.mean([q.trace_cov for q in reps]) - tr_exact) < Z * sd / math.sqrt(300)


def test_two_batch_without_replacement_on_a_finite_set():
    rng = np.random.default_rng(9)
    n, d, b_s, b_b = 12, 5, 3, 9
    g = rng.normal(0.3, 1.0, size=(n, d))
    tr_exact, g2_exact = np.trace(np.cov(g.T, bias=True)), np.sum(g.mean(0) ** 2)
    small = [np.sum(g[rng.choice(n, b_s, replace=False)].mean(0) ** 2) for _ in range(4000)]
    big = [np.sum(g[rng.choice(n, b_b, replace=False)].mean(0) ** 2) for _ in range(4000)]
    r = two_batch_noise(small, big, b_s, b_b, n_data=n)
    assert abs(r.trace_cov - tr_exact) < Z * r.trace_cov_se
    assert abs(r.grad_sqnorm - g2_exact) < Z * r.grad_sqnorm_se
    # the with-replacement c_B = 1/B misreads these batches: ||G||^2 is off by ~35 SE
    naive = two_batch_noise(small, big, b_s, b_b)
    assert abs(naive.grad_sqnorm - g2_exact) > Z * naive.grad_sqnorm_se


def test_power_iteration_matches_eigvalsh():
    u = np.linalg.qr(np.random.default_rng(10).normal(size=(25, 25)))[0]
    lam = np.concatenate([[5.0, 3.0], np.linspace(-1, 2, 23)])
    h = u @ np.diag(lam) @ u.T
    r = top_hessian_eigenvalue(lambda v: h @ v, 25, rng=np.random.default_rng(0), tol=1e-12,
                               max_iters=500)
    assert r.converged and r.n_hvp == r.n_iters
    assert r.value == pytest.approx(np.linalg.eigvalsh(h)[-1], rel=1e-9)
    # batched operator: weighted mean of batch Hessians
    hs, wts = [h, 2 * h + np.eye(25)], [3.0, 1.0]
    rb = top_hessian_eigenvalue(lambda v, b: hs[b] @ v, 25, rng=np.random.default_rng(0),
                                tol=1e-12, max_iters=500, batches=[0, 1], batch_weights=wts)
    exact = np.linalg.eigvalsh((3 * h + hs[1]) / 4)[-1]
    assert rb.value == pytest.approx(exact, rel=1e-9) and rb.n_hvp == 2 * rb.n_iters
    # not converged within the cap is reported, not hidden
    slow = top_hessian_eigenvalue(lambda v: h @ v, 25, rng=np.random.default_rng(0),
                                  tol=1e-15, max_iters=3)
    assert not slow.converged and slow.n_iters == 3


def test_l2_trace_contribution():
    assert l2_trace_contribution(1e-4, 850_000) == pytest.approx(170.0)
    assert l2_trace_contribution(0.0, 10) == 0.0


@pytest.mark.parametrize("call, match", [
    (lambda: hutchinson_trace(lambda v: v, 3, n_probes=0, rng=np.random.default_rng()),
     r"n_probes must be an integer >= 1; got 0"),
    (lambda: hutchinson_trace(lambda v: v, 3, n_probes=2.5, rng=np.random.default_rng()),
     r"n_probes .* got 2.5"),
    (lambda: hutchinson_trace(lambda v: v, 3, n_probes=3, rng=None), r"rng must be"),
    (lambda: hutchinson_trace(lambda v: v, 3, rng=np.random.default_rng()), r"n_probes is required"),
    (lambda: hutchinson_trace(lambda v: v * np.nan, 3, n_probes=2, rng=np.random.default_rng()),
     r"non-finite"),
    (lambda: hutchinson_trace(lambda v: v, 3, rng=np.random.default_rng(), target_rel_se=-1),
     r"target_rel_se must be a positive number; got -1"),
    (lambda: hutchinson_trace(lambda v, b: v, 3, batches=[0, 1], batch_weights=[1, 0],
                              rng=np.random.default_rng()), r"batch_weights must be > 0; got 0"),
    (lambda: grad_cov_trace([1.0, np.inf], [0.0]), r"sqnorms must be finite; it contains inf"),
    (lambda: grad_cov_trace([1.0, 2.0], [np.nan]), r"grad_sum must be finite; it contains nan"),
    (lambda: grad_cov_trace([], [0.0]), r"sqnorms must be a non-empty 1-D array"),
    (lambda: grad_cov_trace([-1.0], [0.0]), r"sqnorms must be >= 0; got -1"),
    (lambda: two_batch_noise([1.0], [1.0], 8, 8), r"b_big must be > b_small; got b_big=8"),
    (lambda: two_batch_noise([1.0, 2.0], [1.0], 2, 8), r"paired 1-D arrays"),
    (lambda: two_batch_noise([1.0], [1.0], 2, 8, n_data=4), r"n_data must be >= b_big; got n_data=4"),
    (lambda: two_batch_noise([np.nan], [1.0], 2, 8), r"small_sqnorms must be finite"),
    (lambda: top_hessian_eigenvalue(lambda v: v, 3, rng=np.random.default_rng(), tol=0),
     r"tol must be a positive number; got 0"),
    (lambda: top_hessian_eigenvalue(lambda v: v, 3, rng=np.random.default_rng(), max_iters=1),
     r"max_iters must be an integer >= 2; got 1"),
    (lambda: l2_trace_contribution(-1e-4, 3), r"l2 must be a scalar >= 0; got -0.0001"),
    (lambda: l2_trace_contribution(1e-4, -3), r"n_weights must be an integer >= 0; got -3"),
])
def test_bad_inputs_name_argument_and_value(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ================================================================ part 2: tiny network

N_EX, BATCH = 60, 16     # 4 batches, the last one 12 examples long: exercises the padding


@pytest.fixture(scope="module")
def net():
    model = H.tiny_model(0)
    x, y = H.tiny_data(N_EX, 0)
    return model, x, y


@pytest.fixture(scope="module")
def exact(net):
    model, x, y = net
    hess = H.ref_hessian(model, x, y)
    grads = H.ref_per_example_grads(model, x, y)
    return hess, grads


@pytest.fixture(scope="module")
def measured(net):
    from dnn.convnet.measure import measure
    model, x, y = net
    # 40 passes over 4 batches: enough probes for a sharp 4-SE check
    return measure(model, x, y, loss=H.xent, batch_size=BATCH, n_probes=160,
                   power_iters=300, power_tol=1e-7, power_examples=None, seed=3)


def _ops(model):
    from dnn.convnet.measure import model_ops
    return model_ops(model, H.xent)


def test_exact_reference_hessian_is_symmetric(exact):
    hess, _ = exact
    assert np.allclose(hess, hess.T, atol=1e-5 * np.abs(hess).max())


def test_hvp_equals_exact_hessian_times_v(net, exact):
    model, x, y = net
    ops = _ops(model)
    v = np.random.default_rng(11).normal(size=exact[0].shape[0]).astype(np.float32)
    vs = [p for p in _split(v, ops.shapes)]
    w = np.ones(N_EX, np.float32)
    hv = H.flat(ops.hvp(x, y, w, vs))
    ref = exact[0] @ v
    assert np.linalg.norm(hv - ref) <= 1e-4 * np.linalg.norm(ref)
    assert ops.vhv(x, y, w, vs) == pytest.approx(float(v @ ref), rel=1e-4)


def test_measure_hutchinson_within_4se_of_exact_trace(measured, exact):
    th = measured["trace_hessian"]
    assert th["n_hvp"] == 160 and th["data_loss_only"] is True
    assert abs(th["mean"] - np.trace(exact[0])) < Z * th["se"]


def test_measure_grad_cov_trace_equals_loop_to_1e5(measured, exact):
    g = exact[1]
    tc = measured["trace_grad_cov"]
    assert tc["n_examples"] == N_EX and tc["convention"] == "centred, divide by N"
    assert tc["trace"] == pytest.approx(np.trace(np.cov(g.T, bias=True)), rel=1e-5)
    assert tc["mean_example_sqnorm"] == pytest.approx(np.mean((g ** 2).sum(1)), rel=1e-5)
    assert tc["mean_grad_sqnorm"] == pytest.approx(np.sum(g.mean(0) ** 2), rel=1e-5)
    assert measured["grad_norm"] == pytest.approx(np.linalg.norm(g.mean(0)), rel=1e-5)


def test_measure_loss_accuracy_l2_and_lambda_max(net, measured, exact):
    model, x, y = net
    logits = np.asarray(model.predict(x, verbose=0), dtype=np.float64)
    z = logits - logits.max(1, keepdims=True)
    ref_loss = np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(N_EX), y])
    assert measured["loss"] == pytest.approx(ref_loss, rel=1e-5)
    assert measured["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == y))
    n_kernels = 3 * 3 * 2 * 4 + 4 * 8 + 8 * 4          # conv + dense kernels; no biases/BN
    assert measured["l2_trace_contribution"]["n_weights"] == n_kernels
    assert measured["l2_trace_contribution"]["value"] == pytest.approx(2 * H.L2 * n_kernels)
    eig = np.linalg.eigvalsh(exact[0])
    dominant = eig[np.argmax(np.abs(eig))]
    lam = measured["lambda_max"]
    assert lam["converged"] and lam["n_examples"] == N_EX
    assert lam["value"] == pytest.approx(dominant, rel=1e-4)
    assert measured["n_params"] == exact[0].shape[0]
    json.dumps(measured, allow_nan=False)          # JSON-ready


def test_measure_two_batch_is_consistent_with_exact_trace(net, exact):
    from dnn.convnet.measure import measure
    model, x, y = net
    r = measure(model, x, y, loss=H.xent, batch_size=2, n_probes=1, power_iters=0,
                two_batch_factor=3, seed=5)
    tb = r["two_batch"]
    assert tb["b_small"] == 2 and tb["b_big"] == 6 and tb["n_pairs"] == 10 and tb["n_data"] == N_EX
    tr = np.trace(np.cov(exact[1].T, bias=True))
    assert abs(tb["trace_cov"] - tr) < Z * tb["trace_cov_se"]
    assert r["lambda_max"] is None
    # tr Sigma does not depend on how the examples are batched (padding has weight 0)
    assert r["trace_grad_cov"]["trace"] == pytest.approx(tr, rel=1e-5)


def test_batch_norm_runs_in_inference_mode(net):
    """A quantity of one example must not depend on the other examples in its batch."""
    model, x, y = net
    ops = _ops(model)
    w = np.ones(BATCH, np.float32)
    sq_a, _, loss_a, _ = ops.per_example(x[:BATCH], y[:BATCH], w)
    mixed = np.r_[0, BATCH:2 * BATCH - 1]            # example 0 with 15 others
    sq_b, _, _, _ = ops.per_example(x[mixed], y[mixed], w)
    assert sq_b[0] == pytest.approx(sq_a[0], rel=1e-5)
    # the HVP of a batch is the weighted mean of its halves' HVPs (padding: weight 0)
    v = [np.ones(s, np.float32) for s in ops.shapes]
    half = np.r_[np.ones(8), np.zeros(8)].astype(np.float32)
    hv_all = H.flat(ops.hvp(x[:BATCH], y[:BATCH], w, v))
    hv_1 = H.flat(ops.hvp(x[:BATCH], y[:BATCH], half, v))
    hv_2 = H.flat(ops.hvp(x[:BATCH], y[:BATCH], 1 - half, v))
    assert np.allclose(hv_all, (hv_1 + hv_2) / 2, rtol=1e-4, atol=1e-5 * np.abs(hv_all).max())
    # and training-mode BN would have given a different loss (the check has power);
    # on a copy, because a training-mode call updates the running statistics
    keras = H.keras_module()
    twin = H.tiny_model(0)
    out_train = np.asarray(keras.ops.convert_to_numpy(twin(x[:BATCH], training=True)))
    out_infer = np.asarray(keras.ops.convert_to_numpy(model(x[:BATCH], training=False)))
    assert not np.allclose(out_train, out_infer, atol=1e-3)
    assert loss_a / BATCH == pytest.approx(
        float(np.mean(keras.ops.convert_to_numpy(H.xent(y[:BATCH], out_infer)))), rel=1e-5)


def test_primitives_compile_once_per_model(net):
    from dnn.convnet.measure import model_ops
    model = net[0]
    assert model_ops(model, H.xent) is model_ops(model, H.xent)


def test_progress_bars_only_when_not_quiet(net, capsys):
    from dnn.convnet.measure import measure
    model, x, y = net
    measure(model, x, y, loss=H.xent, batch_size=BATCH, power_iters=2, quiet=True)
    assert capsys.readouterr().err == ""
    measure(model, x, y, loss=H.xent, batch_size=BATCH, power_iters=2, quiet=False)
    err = capsys.readouterr().err
    assert "per-example gradients" in err and "Hutchinson" in err and "power iteration" in err


def test_measure_target_rel_se(net):
    from dnn.convnet.measure import measure
    model, x, y = net
    r = measure(model, x, y, loss=H.xent, batch_size=BATCH, target_rel_se=0.1, power_iters=0)
    th = r["trace_hessian"]
    assert th["converged"] and th["se"] <= 0.1 * abs(th["mean"]) and th["n_hvp"] >= 10


@pytest.mark.parametrize("kwargs, match", [
    ({"n_probes": 0}, r"n_probes must be an integer >= 1; got 0"),
    ({"batch_size": 0}, r"batch_size must be an integer >= 1; got 0"),
    ({"power_iters": -1}, r"power_iters must be an integer >= 0; got -1"),
    ({"two_batch_factor": 1}, r"two_batch_factor must be an integer >= 2; got 1"),
])
def test_measure_bad_arguments(net, kwargs, match):
    from dnn.convnet.measure import measure
    model, x, y = net
    with pytest.raises(ValueError, match=match):
        measure(model, x, y, loss=H.xent, **kwargs)


def test_measure_unknown_loss_name(net):
    from dnn.convnet.measure import measure
    model, x, y = net
    with pytest.raises(ValueError, match=r"loss must be one of .*; got 'mse'"):
        measure(model, x, y, loss="mse")


def test_measure_bad_data_and_nonfinite_weights(net):
    from dnn.convnet.measure import measure
    model, x, y = net
    with pytest.raises(ValueError, match=r"y must be 1-D integer labels of length len\(x\)=60"):
        measure(model, x, y[:10], loss=H.xent)
    with pytest.raises(ValueError, match=r"y must hold integer class labels; got dtype float"):
        measure(model, x, y.astype(float), loss=H.xent)
    bad = H.tiny_model(1)
    v = bad.trainable_variables[-1]
    v.assign(np.full(v.shape, np.nan, np.float32))
    with pytest.raises(ValueError, match=r"model weights must be finite; .* contains nan"):
        measure(bad, x, y, loss=H.xent)


def test_measure_nonfinite_gradient_is_an_error(net):
    from dnn.convnet.measure import measure
    model, x, y = net
    keras = H.keras_module()

    def exploding(y_true, logits):             # finite weights, infinite loss on one class
        return H.xent(y_true, logits) / keras.ops.cast(y_true != 0, "float32")
    with pytest.raises(ValueError, match=r"gradient is not finite on evaluation batch"):
        measure(model, x, y, loss=exploding, batch_size=BATCH, power_iters=0)


# ---------------------------------------------------------------------- estimate_run

@dataclass(frozen=True)
class _Config:
    loss: str = "xent"
    batch_size: int = 8
    lr: float = 0.1


@pytest.fixture
def fake_run(net, monkeypatch, tmp_path):
    """A stand-in for dnn.train.load_run returning the tiny network and its data.

    The config names the loss "xent", so measure resolves it through dnn.losses
    (one-hot labels), while the references use the helpers' integer-label xent.
    """
    model, x, y = net
    loaded = types.SimpleNamespace(config=_Config(), model=model, train=(x, y), test=(x, y))
    fake = types.ModuleType("dnn.convnet.train")
    fake.load_run = lambda run_dir: loaded
    monkeypatch.setitem(sys.modules, "dnn.convnet.train", fake)
    return tmp_path


def test_estimate_run_writes_estimates_json(fake_run, exact, capsys):
    from dnn.convnet.measure import estimate_run
    out = estimate_run(fake_run, examples=32, probes=8, batch_size=BATCH, quiet=True,
                       power_iters=2)
    assert capsys.readouterr().err == ""
    on_disk = json.loads((fake_run / "estimates.json").read_text())
    assert on_disk["evaluation"] == {"split": "train", "examples": 32, "of": N_EX,
                                     "first_examples": True}
    assert on_disk["train_config"]["loss"] == "xent"
    assert on_disk["trace_hessian"]["n_hvp"] == 8
    g = exact[1][:32]
    assert on_disk["trace_grad_cov"]["trace"] == pytest.approx(
        np.trace(np.cov(g.T, bias=True)), rel=1e-5)
    assert set(out) == set(on_disk)
    for key in ("schema_version", "provenance", "loss", "accuracy", "lambda_max", "two_batch",
                "l2_trace_contribution", "timings"):
        assert key in on_disk
    assert not list(fake_run.glob(".estimates.json.*"))     # no temp file left behind


@pytest.mark.parametrize("examples", [0, N_EX + 1, 2.0])
def test_estimate_run_rejects_bad_example_counts(fake_run, examples):
    from dnn.convnet.measure import estimate_run
    with pytest.raises(ValueError, match=rf"examples must be an integer in \[1, {N_EX}\].*"
                                         rf"got {examples!r}"):
        estimate_run(fake_run, examples=examples, quiet=True)


def _split(v, shapes):
    i = 0
    for s in shapes:
        n = int(np.prod(s))
        yield v[i:i + n].reshape(s)
        i += n


def test_hutchinson_is_unbiased_for_a_partial_pass_with_unequal_batches():
    """One probe, batches of 1 and 3 examples: each of the two equally likely outcomes is
    enumerated exactly (diagonal H_b, so vᵀH_b v = tr H_b for every probe)."""
    from dnn.estimators import hutchinson_trace

    h = [np.diag([1.0, 2.0]), np.diag([5.0, 7.0])]
    weights = [1.0, 3.0]
    truth = (1.0 * 3.0 + 3.0 * 12.0) / 4.0
    outcomes = set()
    for seed in range(50):
        est = hutchinson_trace(lambda v, hb: hb @ v, 2, n_probes=1, batches=h,
                               batch_weights=weights, rng=np.random.default_rng(seed))
        outcomes.add(round(est.mean, 12))
    assert len(outcomes) == 2
    assert np.mean(sorted(outcomes)) == pytest.approx(truth, rel=1e-12)


def test_two_batch_negative_estimate_is_flagged_and_warned():
    # ||G_small||^2 < ||G_big||^2 in every pair: the tr Sigma estimate is negative, which
    # the true value never is (sampling noise when B_s||G_s||^2 ~ B_b||G_b||^2).
    with pytest.warns(RuntimeWarning, match="negative estimate"):
        r = two_batch_noise([1.0, 1.1, 0.9], [1.2, 1.3, 1.0], 2, 8)
    assert r.trace_cov < 0 and r.negative and not r.reliable
    assert r.as_dict()["reliable"] is False
    ok = two_batch_noise(1.0 + 4.0 / 2, 1.0 + 4.0 / 8, 2, 8)
    assert not ok.negative and ok.reliable


def test_saturated_model_is_a_degenerate_estimate():
    """A cheap stand-in for an under-trained ResNet-56 in inference mode: logits so large
    that every example is saturated under the clipped kld loss, so all gradients vanish.
    The reference is independent of measure: softmax of the model's own logits, where a
    probability below the 1e-7 clip gives a zero gradient. Each label is set to a class the
    model does not predict: an example predicted right sits at p_true = 1 to within float32
    round-off (TF's softmax gives 1 − 2⁻²⁴, JAX's 1.0), which is not a clean zero gradient."""
    import keras

    import dnn
    from dnn.convnet.measure import measure

    model = dnn.resnet(8, width=4, seed=0)
    dense = [v for v in model.trainable_variables if v.path.startswith("logits") and "kernel" in v.path][0]
    dense.assign(np.asarray(dense.value) * 1e5)
    x, y = dnn.synthetic_cifar(24, seed=0)
    x = ((x - x.mean()) / x.std()).astype(np.float32)
    p = np.asarray(keras.ops.softmax(model(x, training=False)))
    y = ((np.argmax(p, axis=1) + 1 + y % 9) % 10).astype(y.dtype)    # never the predicted class
    p_true = p[np.arange(len(y)), y]
    assert np.all(p_true < 1e-7)                                     # saturated, by construction
    with pytest.warns(RuntimeWarning, match="degenerate estimate"):
        r = measure(model, x, y, loss="kld", batch_size=8, n_probes=3, power_iters=2)
    assert r["n_zero_grad"] == 24 and r["degenerate"] is True
    assert "24 of 24 examples" in r["degenerate_reason"]
    # zero up to float32 round-off (exactly 0.0 on JAX; TF's tapes leave ~1e-8)
    assert r["grad_norm"] <= r["zero_grad_threshold"]
    assert abs(r["trace_grad_cov"]["trace"]) <= r["zero_grad_threshold"] ** 2


def test_healthy_model_is_not_degenerate(measured):
    assert measured["degenerate"] is False and measured["degenerate_reason"] is None
    assert measured["n_zero_grad"] == 0
