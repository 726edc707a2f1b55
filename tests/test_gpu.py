"""GPU-only checks (marker ``gpu``; skipped without a CUDA device; run by scripts/gpu_check.sh).

The same ResNet-56 quantities are computed on the GPU and on the host CPU in fresh
processes, from identical numpy-initialised weights and the same probe, and must agree.
(Finite differences of gradients are no independent reference here: ReLU kinks make
them diverge as the step shrinks, while autodiff's HVP ignores the kinks.)
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

SCRIPT = textwrap.dedent("""
    import json, numpy as np, dnn
    dnn.set_backend("jax")
    import jax
    from dnn.convnet.data import channel_stats, standardize
    from dnn.convnet.measure import model_ops
    model = dnn.resnet(56, seed=0)
    xu, y = dnn.synthetic_cifar(128, seed=0)
    m, s = channel_stats(xu)
    x = standardize(xu, m, s)
    ops = model_ops(model, "kld")
    w = np.ones(len(y), np.float32)
    rng = np.random.default_rng(0)
    v = [rng.choice([-1.0, 1.0], size=sh).astype(np.float32) for sh in ops.shapes]
    loss_sum, _, grad = ops.loss_grad(x, y, w)
    hv = ops.hvp(x, y, w, v)
    sq, _, _, _ = ops.per_example(x, y, w)
    print(json.dumps({
        "platform": jax.devices()[0].platform,
        "loss": float(loss_sum) / len(y),
        "grad_sqnorm": float(sum(np.vdot(g, g) for g in grad)) / len(y) ** 2,
        "vhv": float(sum(np.vdot(a, b) for a, b in zip(v, hv))),
        "mean_example_sqnorm": float(np.mean(sq)),
    }))
""")


def _run(platform):
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS=platform)
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_resnet56_loss_gradient_hvp_and_per_example_norms_match_cpu():
    gpu, cpu = _run("cuda"), _run("cpu")
    assert gpu["platform"] == "gpu" and cpu["platform"] == "cpu"
    for key in ("loss", "grad_sqnorm", "vhv", "mean_example_sqnorm"):
        # fp32 on both; XLA may use TF32 convolutions on Hopper (~1e-3 relative).
        assert gpu[key] == pytest.approx(cpu[key], rel=1e-2), (key, gpu, cpu)
