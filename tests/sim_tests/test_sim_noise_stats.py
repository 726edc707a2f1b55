"""Noise source and recorders: distribution checks, error bars on processes with known answers."""

import numpy as np
import pytest
from scipy import stats

import sim
from sim.noise import NormalSource
from sim.stats import ChainRecorder, observable_weights


@pytest.mark.parametrize("method", ["box_muller", "numpy"])
def test_normal_source_is_standard_normal(method):
    src = NormalSource(np.random.default_rng(0), method)
    z = np.empty((401, 1001))                        # odd size: the unpaired tail is filled
    src.standard_normal(z)
    n = z.size
    assert np.all(np.isfinite(z))
    assert abs(z.mean()) < 4 / np.sqrt(n)
    assert abs(z.var() - 1) < 4 * np.sqrt(2 / n)
    assert abs(stats.kurtosis(z.ravel())) < 4 * np.sqrt(24 / n)
    assert stats.kstest(z.ravel()[:200_000], "norm").pvalue > 1e-4
    # Pairs (r cos φ, r sin φ) must be uncorrelated, including squares.
    a, b = z.ravel()[: n // 2], z.ravel()[n // 2: 2 * (n // 2)]
    assert abs(np.corrcoef(a, b)[0, 1]) < 4 / np.sqrt(n / 2)
    assert abs(np.corrcoef(a * a, b * b)[0, 1]) < 4 / np.sqrt(n / 2)


def _ar1(phi, n_chains, n, seed):
    rng = np.random.default_rng(seed)
    x = np.empty((n_chains, n))
    x[:, 0] = rng.normal(size=n_chains) / np.sqrt(1 - phi**2)
    e = rng.normal(size=(n_chains, n))
    for t in range(1, n):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    return x


def test_effective_sample_size_of_ar1():
    phi = 0.8
    x = _ar1(phi, 8, 20000, seed=1)
    tau = (1 + phi) / (1 - phi)                       # integrated autocorrelation time
    assert sim.effective_sample_size(x) == pytest.approx(x.size / tau, rel=0.15)
    assert sim.effective_sample_size(np.random.default_rng(2).normal(size=5000)) == \
        pytest.approx(5000, rel=0.15)


def test_batch_means_se_matches_across_chain_se_on_ar1():
    x = _ar1(0.9, 200, 4000, seed=3)
    _, se_chain = sim.across_chain_se(x.mean(axis=1))
    b = x.reshape(200, 20, 200).mean(axis=2).T        # (batches, chains)
    se_bm = sim.batch_means_se(b)
    exact = np.sqrt((1 + 0.9) / (1 - 0.9) / (1 - 0.81) / x.size)   # τ·Var/n
    assert se_chain == pytest.approx(exact, rel=0.15)
    assert se_bm == pytest.approx(exact, rel=0.15)


def test_chain_recorder_matches_brute_force():
    rng = np.random.default_rng(4)
    h = np.array([0.5, 1.0, 2.0])
    rec = ChainRecorder(5, 3, observable_weights(h), record_every=2, covariance_every=3,
                        batch_len=2, n_batches=3)
    blocks = [rng.normal(size=(4, 5, 3)) for _ in range(3)]
    j0 = -2                                           # the first two rows are burn-in
    for b in blocks:
        rec.update(b, j0)
        j0 += 4
    states = np.concatenate(blocks)[2:]               # rows with j = 0..9
    kept = states[::2]
    loss = 0.5 * (kept**2 @ h)
    np.testing.assert_allclose(rec.sum[:, 0], loss.sum(axis=0))
    np.testing.assert_allclose(rec.sumsq[:, 1], ((kept**2 @ h**2) ** 2).sum(axis=0))
    np.testing.assert_allclose(rec.sum[:, 2], (kept**2).sum(axis=(0, 2)))
    rec.finish()
    assert rec.count == 5 and rec.cov_count == 4      # j = 0, 3, 6, 9
    cov = states[::3]
    np.testing.assert_allclose(rec.cov_sum, np.einsum("kci,kcj->cij", cov, cov))
    np.testing.assert_allclose(rec.batch_sum[2, :, 0], loss[4:].sum(axis=0))  # records 4.. → last
