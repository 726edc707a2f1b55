"""Bad input to theory raises ValueError naming the argument and the value."""

import numpy as np
import pytest

import theory

H = np.diag([1.0, 3.0])
S = np.array([[2.0, 1.0], [1.0, 1.0]])


@pytest.mark.parametrize("call, match", [
    (lambda: theory.stationary_covariance([[1.0, np.nan], [np.nan, 1.0]], S), "hessian must be finite"),
    (lambda: theory.stationary_covariance(H, [[np.inf, 0], [0, 1.0]]), "grad_cov must be finite"),
    (lambda: theory.stationary_covariance(np.ones((2, 3)), S), r"hessian must be a non-empty square.*\(2, 3\)"),
    (lambda: theory.stationary_covariance(np.eye(3), S), r"same shape.*\(3, 3\) and \(2, 2\)"),
    (lambda: theory.stationary_covariance([[1.0, 0.5], [0.0, 1.0]], S), "hessian must be symmetric"),
    (lambda: theory.stationary_covariance(H, [[1.0, 0.0], [0.3, 1.0]]), "grad_cov must be symmetric"),
    (lambda: theory.stationary_covariance(np.diag([1.0, -0.5]), S), "positive definite; smallest eigenvalue is -0.5"),
    (lambda: theory.stationary_covariance(np.diag([1.0, 0.0]), S), "positive definite; smallest eigenvalue is 0"),
    (lambda: theory.stationary_covariance(H, np.diag([1.0, -2.0])), "grad_cov must be positive semidefinite; smallest eigenvalue is -2"),
    (lambda: theory.sgd_covariance(H, S, 0.0, 4), "lr must be > 0; got 0"),
    (lambda: theory.sgd_covariance(H, S, -0.1, 4), "lr must be > 0; got -0.1"),
    (lambda: theory.sgd_covariance(H, S, 0.1, 0), "batch_size must be an integer >= 1; got 0"),
    (lambda: theory.sgd_covariance(H, S, 0.1, 2.5), "batch_size must be an integer >= 1; got 2.5"),
    (lambda: theory.sgd_covariance(H, S, 0.1, 11, n_data=10, replacement=False), "batch_size=11 > n_data=10"),
    (lambda: theory.expected_loss_wang(-1.0, 0.1, 4), "grad_cov_trace must be >= 0; got -1"),
    (lambda: theory.expected_loss_wang(np.nan, 0.1, 4), "grad_cov_trace must be finite"),
    (lambda: theory.expected_loss_jastrzebski(0.0, 0.1, 4), "hessian_trace must be > 0; got 0"),
    (lambda: theory.expected_loss_wang(1.0, [0.1, -1.0], 4), "lr must be > 0; got -1"),
    (lambda: theory.noise_factor(1, 1, replacement=False), "n_data must be >= 2"),
    (lambda: theory.expected_loss_wang(1.0, "abc", 2), "lr must be real numbers; got 'abc'"),
    (lambda: theory.expected_loss_wang(1.0, 0.1, True), "batch_size must be real numbers; got True"),
    (lambda: theory.noise_factor("3"), "batch_size must be real numbers; got '3'"),
    (lambda: theory.stationary_covariance([[1.0, 2.0], [3.0]], S), "hessian must be real numbers"),
])
def test_bad_input_is_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("fn", [theory.sgd_covariance, theory.expected_grad_sqnorm,
                                theory.expected_sq_distance])
def test_unstable_lr_names_eta_h_max(fn):
    with pytest.raises(theory.StabilityError, match=r"lr\*h_max = 2.1 >= 2"):
        fn(H, S, 0.7, 4, discrete=True)
    fn(H, S, 0.7, 4)  # the continuous formula needs no stability


def test_unstable_lr_discrete_loss():
    with pytest.raises(theory.StabilityError, match="lr\\*h_max = 2 >= 2"):
        theory.expected_loss_discrete(H, S, 2 / 3, 4)
    assert issubclass(theory.StabilityError, ValueError)


def test_least_squares_rejects_bad_data_and_unstable_lr():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 3))
    y = rng.normal(size=30)
    with pytest.raises(ValueError, match="y must have one entry per row of X; got 29 and 30"):
        theory.least_squares_stationary(x, y[:-1], 0.1, 4)
    with pytest.raises(ValueError, match="full column rank"):
        theory.least_squares_stationary(np.c_[x, x[:, :1]], y, 0.1, 4)
    with pytest.raises(ValueError, match="batch_size=31 > n_data=30"):
        theory.least_squares_stationary(x, y, 0.1, 31)
    with pytest.raises(ValueError, match="X must be finite"):
        theory.least_squares_stationary(np.where(x > 2, np.nan, x), y, 0.1, 4)
    h_max = np.linalg.eigvalsh(x.T @ x / 30)[-1]
    # State-dependent noise makes batch size 1 unstable below η h_max = 2.
    with pytest.raises(theory.StabilityError, match="spectral radius"):
        theory.least_squares_stationary(x, y, 1.9 / h_max, 1)


def test_ill_conditioned_hessian_warns():
    with pytest.warns(RuntimeWarning, match="ill-conditioned"):
        theory.stationary_covariance(np.diag([1.0, 1e-13]), np.eye(2))
