#!/usr/bin/env bash
# Run HERE (not on the device), once, from the repo root: downloads the wheels that the
# GPU machine lacks (it has JAX with CUDA, numpy, scipy, h5py, rich, absl-py, ml-dtypes,
# matplotlib, tqdm, threadpoolctl, but no keras, namex, optree or sdeint) into .whl/,
# which git ignores and the device tool carries (carry: [".whl"]).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir -p .whl
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${plat[@]}" -d .whl keras==3.15.1 namex==0.1.0 optree==0.20.0
# sdeint is pure Python and ships no wheel for 3.12 specifically.
python3 -m pip download -q --no-deps --only-binary=:all: -d .whl sdeint==0.3.0 || \
    python3 -m pip wheel -q --no-deps -w .whl sdeint==0.3.0
# Fashion-MNIST (31 MB, from Debian's dataset-fashion-mnist) travels with the wheels: the
# device cannot download it. gpu_check.sh copies it into ~/.keras/datasets/fashion-mnist.
if [ -d /usr/share/datasets/fashion-mnist ]; then
    mkdir -p .whl/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*-ubyte.gz .whl/fashion-mnist/
fi
ls -la .whl
