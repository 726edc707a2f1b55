"""``validation.smallnet.cache``: a stored minimum is reused only after it is re-verified."""

from pathlib import Path

import numpy as np
import pytest

from validation.smallnet.cache import cache_dir, find_or_load_minimum, load_minimum, store


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Each test gets its own result cache, so none reads or writes the user's ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def test_disabled_cache_neither_reads_nor_writes(tmp_path):
    from dnn.exact.digits import load_digits
    from dnn.exact.mlp import MLP, MLPConfig

    data = load_digits()
    model = MLP(MLPConfig(hidden=(2,)), n_inputs=data.n_features, n_classes=data.n_classes)
    m, info = find_or_load_minimum(model, data, enabled=False, quiet=True)
    assert info == {"enabled": False, "hit": False} and m.grad_norm <= 1e-8
    assert not (tmp_path / "xdg-cache").exists()


@pytest.mark.slow
def test_cache_reuses_a_verified_minimum_and_rejects_a_tampered_one(tmp_path):
    """Tiny MLP (P = 310): a miss finds θ*, the store writes it with H and its spectrum, a
    second look-up returns the same θ* and spectrum without L-BFGS; an entry whose θ is
    nudged (‖∇L‖ > 1e-8) or whose H is wrong is rejected and recomputed."""
    import dnn.exact.hessian as de
    from dnn.exact.digits import load_digits
    from dnn.exact.hessian import exact_quantities
    from dnn.exact.mlp import MLP, MLPConfig

    data = load_digits()
    model = MLP(MLPConfig(hidden=(4,)), n_inputs=data.n_features, n_classes=data.n_classes)
    m1, info1 = find_or_load_minimum(model, data, enabled=True, quiet=True)
    assert not info1["hit"] and cache_dir() == tmp_path / "xdg-cache" / "sgd-minima" / "smallnet"
    ex1 = exact_quantities(model, data, m1.theta)
    assert store(info1, m1, ex1) and Path(info1["path"]).is_file()

    de._LAST_HESSIAN.clear()             # as in a new process: only the disk can help
    m2, info2 = find_or_load_minimum(model, data, enabled=True, quiet=True)
    assert info2["hit"] and info2["verified_grad_norm"] <= 1e-8 and "rejected" not in info2
    np.testing.assert_array_equal(m2.theta, m1.theta)
    assert m2.lbfgs_iterations == m1.lbfgs_iterations and m2.h_min == ex1.h_min
    ex2 = exact_quantities(model, data, m2.theta)
    np.testing.assert_array_equal(ex2.eigenvalues, ex1.eigenvalues)
    assert ex2.trace_h == ex1.trace_h and ex2.trace_sigma == pytest.approx(ex1.trace_sigma, rel=1e-12)

    for name, edit, needle in [("theta", lambda a: {"theta": a["theta"] + 1e-4}, "grad L"),
                               ("spectrum", lambda a: {"eigenvalues": a["eigenvalues"] * (1 + 1e-3)},
                                "eigenpair"),
                               ("hessian", lambda a: {"hessian_data": a["hessian_data"] * (1 + 1e-3)},
                                "column")]:
        with np.load(info1["path"]) as z:
            arrays = {k: z[k] for k in z.files}
        arrays.update(edit(arrays))
        bad = tmp_path / f"{name}.npz"
        with open(bad, "wb") as f:
            np.savez(f, **arrays)
        with pytest.raises(ValueError, match=needle):
            load_minimum(model, data, bad)
    # a rejected entry is reported and recomputed (here: a truncated file)
    Path(info1["path"]).write_bytes(Path(info1["path"]).read_bytes()[:1000])
    de._LAST_HESSIAN.clear()
    m3, info3 = find_or_load_minimum(model, data, enabled=True, quiet=True)
    assert not info3["hit"] and "rejected" in info3 and m3.grad_norm <= 1e-8
    np.testing.assert_allclose(m3.theta, m1.theta, atol=1e-6)
