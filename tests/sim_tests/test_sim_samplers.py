"""Minibatch samplers: exact combinatorial properties and the noise factor they imply."""

import numpy as np
import pytest

import sim

N, S = 6, 3


def _draw(name, n_chains=4000, n_steps=3, seed=0):
    smp = sim.make_sampler(name, N, S)
    rng = np.random.default_rng(seed)
    state = smp.init(rng, n_chains)
    idx, _ = smp.draw(state, rng, n_steps)
    assert idx.shape == (n_steps, n_chains, S)
    assert idx.min() >= 0 and idx.max() < N
    return idx


def test_without_replacement_has_distinct_uniform_subsets():
    idx = _draw("without_replacement", n_chains=20000, n_steps=2).reshape(-1, S)
    assert all(len(set(row)) == S for row in idx[:2000])
    # Each of the C(6,3) = 20 subsets has probability 1/20; 40000 draws give SE ≈ 109.
    codes = np.sort(idx, axis=1) @ np.array([N * N, N, 1])
    counts = np.unique(codes, return_counts=True)[1]
    assert len(counts) == 20
    expected = len(idx) / 20
    assert np.all(np.abs(counts - expected) < 4 * np.sqrt(expected * (1 - 1 / 20)))


def test_epoch_shuffle_uses_each_example_once_per_epoch():
    smp = sim.make_sampler("epoch_shuffle", 7, 3)          # 2 batches per epoch, 1 dropped
    rng = np.random.default_rng(1)
    idx, state = smp.draw(smp.init(rng, 50), rng, 6)       # 3 epochs
    for e in range(3):
        epoch = np.concatenate([idx[2 * e], idx[2 * e + 1]], axis=1)
        assert all(len(set(row)) == 6 for row in epoch)
    assert len({tuple(r) for r in idx[0]}) > 1             # per-chain permutations differ
    more, _ = smp.draw(state, rng, 2)                      # state carries over
    assert more.shape == (2, 50, 3)


@pytest.mark.parametrize("name, factor", [("with_replacement", 1 / 3),
                                          ("without_replacement", 0.2),
                                          ("epoch_shuffle", 0.2)])
def test_minibatch_mean_covariance_is_noise_factor_times_sigma(name, factor):
    # theory.md T6: N = 6, S = 3 gives c_S = 1/3 (replacement) and 0.2 (without).
    g = np.random.default_rng(2).normal(size=(N, 2))
    g -= g.mean(axis=0)
    sigma = g.T @ g / N
    idx = _draw(name, n_chains=20000, n_steps=1, seed=3).reshape(-1, S)
    means = g[idx].mean(axis=1)
    emp = means.T @ means / len(means)
    # Each entry's SE is ~ sqrt(2/n) times its scale; 4 SE bounds the check.
    tol = 4 * np.sqrt(2 / len(means)) * factor * np.sqrt(np.outer(np.diag(sigma), np.diag(sigma)))
    assert np.all(np.abs(emp - factor * sigma) < tol)
    assert sim.sampler_noise_factor(name, S, N) == pytest.approx(factor)
