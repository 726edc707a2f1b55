"""A verified on-disk cache of ``smallnet``'s minimum: θ*, H_data and H's eigendecomposition.

Finding θ* (L-BFGS + Newton), building the P×P Hessian and its ``eigh`` are a large
share of a cold ``smallnet`` run, and they depend only on the network, the data and
the numeric libraries.  An entry lives in ``$XDG_CACHE_HOME/sgd-minima/smallnet``
under a key of exactly those, and is never trusted: on every load ‖∇L(θ*)‖ is
re-evaluated, and stored Hessian columns and eigenpairs are checked against fresh
HVPs (``dnn.exact.hessian.seed_hessian_cache``).  Anything that fails is reported in
``smallnet.json``'s ``cache`` object and recomputed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

__all__ = ["GRAD_TOL", "cache_dir", "cache_key", "enable_compilation_cache", "find_or_load_minimum",
           "load_minimum", "store"]

# ‖∇L(θ*)‖ find_minimum polishes to; a cached θ* must still meet it when re-evaluated.
GRAD_TOL = 1e-8
# 2: the key names the input scaling (--preprocess) besides the data's content digest.
CACHE_FORMAT = 2


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/sgd-minima/smallnet`` (default ``~/.cache/sgd-minima/smallnet``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sgd-minima" / "smallnet"


def enable_compilation_cache() -> str:
    """Keep JAX's compiled chain kernels in ``cache_dir()/jax`` across runs; return that folder.

    Each chain kernel (real or linearised SGD, per batch size) takes seconds to compile
    on 2 cores, a large share of a ``--quick`` run; JAX's persistent cache makes a second
    run load them instead.  It is JAX's own, content-keyed cache (a stale entry cannot be
    used for another program), and the setting is process-wide, so only the ``smallnet``
    driver turns it on, and only when its result cache is enabled.
    """
    import jax

    path = cache_dir() / "jax"
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    # cache every kernel that took a noticeable time to compile, however small its entry
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return str(path)


def cache_key(model, data) -> tuple:
    """(hex key, fields): model config, input scaling, data content and the numeric libraries' versions."""
    import hashlib
    import json

    from dnn._runio import library_versions

    versions = library_versions("jax")
    fields = {"format": CACHE_FORMAT, "hidden": list(model.config.hidden),
              "activation": model.config.activation, "l2": float(model.config.l2),
              "seed": int(model.config.seed), "grad_tol": GRAD_TOL,
              "preprocess": getattr(data, "preprocess", None),
              "data": hashlib.sha256(np.ascontiguousarray(data.x).tobytes()
                                     + np.ascontiguousarray(data.y).tobytes()).hexdigest(),
              "versions": {k: versions.get(k) for k in sorted(versions)
                           if k in ("jax", "jaxlib", "numpy", "scipy", "python")}}
    for k in ("numpy", "scipy"):
        if fields["versions"].get(k) is None:
            fields["versions"][k] = __import__(k).__version__
    text = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24], fields


def find_or_load_minimum(model, data, *, enabled: bool, quiet: bool, seed: int = 0):
    """θ* (``dnn.exact.minimum.Minimum``) from the verified cache, or found afresh; plus cache facts.

    Returns
    -------
    (Minimum, dict)
        The dict says whether the cache was ``enabled``, whether it was a ``hit``, the
        entry's ``path`` and ``key``, and why an entry was ``rejected`` if one was.
    """
    from dnn.exact.minimum import find_minimum

    info = {"enabled": bool(enabled), "hit": False}
    if enabled:
        key, fields = cache_key(model, data)
        path = cache_dir() / f"{key}.npz"
        info.update(path=str(path), key=key, key_fields=fields)
        if path.exists():
            try:
                minimum = load_minimum(model, data, path, seed=seed)
                info.update(hit=True, verified_grad_norm=minimum.grad_norm)
                return minimum, info
            except Exception as exc:  # any unreadable or failing entry: recompute, say why
                info["rejected"] = f"{type(exc).__name__}: {exc}"
    return find_minimum(model, data, grad_tol=GRAD_TOL, quiet=quiet), info


def load_minimum(model, data, path, *, seed=0):
    """The cached ``Minimum`` at ``path``, after re-checking ‖∇L‖, H and its eigenpairs.

    Raises
    ------
    ValueError
        If ‖∇L‖ > GRAD_TOL at the stored θ, the stored spectrum is not positive, or a
        stored Hessian column or eigenpair disagrees with a fresh HVP.
    """
    import jax

    from dnn.exact.hessian import seed_hessian_cache
    from dnn.exact.minimum import Minimum
    from dnn.exact.mlp import float64

    t0 = time.perf_counter()
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    theta = arrays["theta"]
    with float64():
        # jitted: one compilation each (persistently cached), not one per primitive op by op
        g = np.asarray(jax.jit(jax.grad(model.loss))(theta, data.x, data.y))
        gnorm = float(np.linalg.norm(g))
        if not gnorm <= GRAD_TOL:
            raise ValueError(f"||grad L|| = {gnorm:.3g} > {GRAD_TOL:g} at the cached theta")
        w = arrays["eigenvalues"]
        if not w[0] > 0:
            raise ValueError(f"cached H is not positive definite (h_min = {w[0]:.3g})")
        seed_hessian_cache(model, data, theta, arrays["hessian_data"], w, arrays["eigenvectors"],
                           seed=seed)
        loss = float(jax.jit(model.loss)(theta, data.x, data.y))
        acc = float(jax.jit(model.accuracy)(theta, data.x, data.y))
    meta = arrays["meta"]
    return Minimum(theta=theta, loss=loss, grad_norm=gnorm, train_accuracy=acc,
                   lbfgs_iterations=int(meta[0]), newton_steps=int(meta[1]),
                   seconds=time.perf_counter() - t0, h_min=float(w[0]), h_max=float(w[-1]))


def store(info, minimum, exact) -> bool:
    """Write θ*, H_data and H's eigendecomposition to ``info["path"]`` atomically.

    Returns False (with ``info["store_error"]``) when it cannot: a read-only or full
    cache folder must not fail the measurement.
    """
    from dnn._runio import atomic_path

    try:
        with atomic_path(info["path"]) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, theta=minimum.theta, hessian_data=exact.hessian_data,
                         eigenvalues=exact.eigenvalues, eigenvectors=exact.eigenvectors,
                         meta=np.array([minimum.lbfgs_iterations, minimum.newton_steps]))
                f.flush()
                os.fsync(f.fileno())
    except OSError as exc:
        info["store_error"] = f"{type(exc).__name__}: {exc}"
        return False
    return True
