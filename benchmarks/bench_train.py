"""Benchmark: ResNet training throughput of our recipe against plain Keras fit, same run.

Usage:
    python benchmarks/bench_train.py [--backend jax] [--depth 56] [--batch-sizes 100 500]
        [--precisions float32 mixed_bfloat16] [--n-train 10000] [--epochs 3] [--json OUT]

For each (batch size, precision) it measures images/s after warm-up (epochs 2..E,
compilation excluded) of

- baseline: ``keras.Model.fit`` on in-memory arrays, SGD, cross-entropy, no augmentation
  (the "Keras 3 model.fit" row of anchors.md);
- ours: :func:`dnn.train` with the paper's recipe (augmentation in the step, per-epoch
  history, checkpoints),

and prints the ratio ours/baseline.  Synthetic CIFAR-shaped data; on a GPU pass
``--n-train 20000`` or more.  The device is printed next to every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time


def _baseline(keras, dnn_resnet, depth, width, bs, precision, x, y, epochs):
    keras.config.set_dtype_policy(precision)
    try:
        model = dnn_resnet(depth, width=width, seed=0)
    finally:
        keras.config.set_dtype_policy("float32")
    model.compile(optimizer=keras.optimizers.SGD(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    times = []

    class T(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t)

    model.fit(x, y, batch_size=bs, epochs=epochs, verbose=0, callbacks=[T()], shuffle=True)
    steps = len(x) // bs
    return [steps * bs / t for t in times[1:]]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "jax"))
    p.add_argument("--depth", type=int, default=56)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[100, 500])
    p.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"])
    p.add_argument("--n-train", type=int, default=10000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)

    import dnn

    dnn.set_backend(args.backend)
    import keras
    import numpy as np

    from dnn._runio import device_description
    from dnn.convnet.data import channel_stats, standardize

    xu, yy = dnn.synthetic_cifar(args.n_train, seed=0)
    mean, std = channel_stats(xu)
    x = standardize(xu, mean, std)
    device = device_description(args.backend)
    print(f"device: {device}; backend {args.backend}; keras {keras.__version__}; "
          f"ResNet-{args.depth} width {args.width}; {args.n_train} images; epochs 2..{args.epochs}")
    print(f"{'BS':>5} {'precision':>15} {'baseline img/s':>16} {'ours img/s':>12} {'ratio':>6}")
    rows = []
    for precision in args.precisions:
        for bs in args.batch_sizes:
            base = _baseline(keras, dnn.resnet, args.depth, args.width, bs, precision, x, yy,
                             args.epochs)
            with tempfile.TemporaryDirectory() as tmp:
                cfg = dnn.TrainConfig(batch_size=bs, lr=0.05, epochs=args.epochs, depth=args.depth,
                                      width=args.width, loss="xent", data="synthetic",
                                      n_train=args.n_train, n_test=min(1000, args.n_train),
                                      precision=precision, backend=args.backend, milestones=())
                dnn.train(cfg, tmp, quiet=True)
                with open(os.path.join(tmp, "history.json")) as f:
                    hist = json.load(f)["epochs"]
            ours = [r["images_per_s"] for r in hist[1:]]
            b, o = float(np.mean(base)), float(np.mean(ours))
            rows.append({"batch_size": bs, "precision": precision, "baseline_img_s": base,
                         "ours_img_s": ours, "ratio": o / b, "device": device})
            print(f"{bs:>5} {precision:>15} {b:>16,.0f} {o:>12,.0f} {o / b:>6.2f}  "
                  f"(n={len(base)}/{len(ours)} epochs)")
            sys.stdout.flush()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device, "backend": args.backend, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
