"""Both keras backends: the same weights give the same numbers, and the estimator tests pass on each.

Keras fixes its backend per process, so the other backend runs in a subprocess:
``backend_helpers.py`` as a worker for the agreement check, and pytest on
``test_estimators.py`` for the full estimator suite.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
HELPERS = HERE / "backend_helpers.py"

_spec = importlib.util.spec_from_file_location("_backend_test_helpers", HELPERS)
H = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(H)

# float32 throughout; XLA and oneDNN sum in different orders (~1e-6 relative),
# so 1e-4 leaves two orders of magnitude of margin
RTOL = 1e-4


def _other_backend():
    return "tensorflow" if H.keras_module().backend.backend() == "jax" else "jax"


def _env(backend):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _run(cmd, backend, timeout):
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(backend), capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))} failed on {backend} (rc={proc.returncode})\n"
        f"--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}")
    return proc.stdout


@pytest.mark.slow
# keras' own save_weights on JAX trips numpy 2's __array__(copy=) deprecation
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept:DeprecationWarning")
def test_same_weights_same_numbers_on_both_backends(tmp_path):
    """Loss, gradient norm, HVP with the same probe, and tr Σ agree to 1e-4 relative."""
    here, kinds = {}, ("tiny", "resnet")
    for i, kind in enumerate(kinds):
        model = H.build(kind, seed=0)
        x, y = H.data_for(kind, 24 if kind == "tiny" else 6, seed=i)
        d = model.count_params() - sum(int(np.prod(v.shape)) for v in model.non_trainable_variables)
        probe = np.random.default_rng(7 + i).choice([-1.0, 1.0], size=d).astype(np.float32)
        model.save_weights(str(tmp_path / f"{kind}.weights.h5"))
        np.savez(tmp_path / f"{kind}.npz", x=x, y=y, probe=probe)
        here[kind] = H.quantities(model, x, y, probe)
    other = _other_backend()
    out = _run([sys.executable, str(HELPERS), str(tmp_path), *kinds], other, timeout=240)
    there = {r["kind"]: r for r in (json.loads(line[len("RESULT "):])
                                    for line in out.splitlines() if line.startswith("RESULT "))}
    assert set(there) == set(kinds), out
    for kind in kinds:
        a, b = here[kind], there[kind]
        assert b["backend"] == other and a["n_params"] == b["n_params"]
        for key in ("loss", "grad_norm", "trace_grad_cov"):
            assert b[key] == pytest.approx(a[key], rel=RTOL), (kind, key)
        hv_a, hv_b = np.asarray(a["hvp"]), np.asarray(b["hvp"])
        assert np.linalg.norm(hv_b - hv_a) <= RTOL * np.linalg.norm(hv_a), kind
        assert float(hv_a @ hv_b) > 0


@pytest.mark.slow
def test_estimator_suite_passes_on_the_other_backend():
    """Rerun test_estimators.py in a fresh process on the backend this process does not use."""
    other = _other_backend()
    _run([sys.executable, "-m", "pytest", str(HERE / "test_estimators.py"), "-q",
          "-p", "no:cacheprovider", "-x"], other, timeout=300)
