"""The tiny network that the chain tests share: one minimum and one set of exact Hessians."""

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_network():
    """θ*, H, Σ, the explicit per-example Hessians (with the L2 term) and the callables of a
    P = 39 MLP on three digit classes and eight pixels: (model, data, star, exact, hess, ops)."""
    import jax

    from dnn.exact.digits import Digits, load_digits
    from dnn.exact.hessian import callables, exact_quantities
    from dnn.exact.minimum import find_minimum
    from dnn.exact.mlp import MLP, MLPConfig, float64

    d = load_digits(preprocess="global")
    keep = d.y < 3
    cols = np.argsort(-d.x.std(axis=0))[:8]
    data = Digits(x=np.ascontiguousarray(d.x[keep][:120][:, cols]), y=d.y[keep][:120].copy(),
                  n_classes=3)
    model = MLP(MLPConfig(hidden=(3,), l2=0.01), 8, 3)
    star = find_minimum(model, data, quiet=True)
    exact = exact_quantities(model, data, star.theta)
    with float64():
        hess = jax.jit(jax.vmap(jax.hessian(model.example_loss), in_axes=(None, 0, 0)))(
            star.theta, data.x, data.y)
    hess = np.asarray(hess) + 2 * model.l2 * np.eye(model.n_params)
    return model, data, star, exact, hess, callables(model, data, star.theta)
