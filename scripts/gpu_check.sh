#!/usr/bin/env bash
# All GPU checks and benchmarks in one call, on the device machine (JAX backend).
#
#   here, once:   bash scripts/fetch_gpu_wheels.sh
#   device tool:  run(command="bash scripts/gpu_check.sh", carry=[".whl"], timeout_s=600)
#
# Writes everything under $OUT (or ./gpu_out): gpu.txt, gpu_tests.log, bench_train.{log,json},
# bench_estimators.{log,json}, bench_stationary.log, short_grid.log and the short grid's
# report/table1.md, and fashion_grid.log with a third of the fashion preset's kld grid
# (real Fashion-MNIST, carried in .whl/fashion-mnist) and its report (fashion_report.md).
# The device cannot download CIFAR-10 (and it is too large to carry), so the short grid
# runs ResNet-56 on synthetic CIFAR-shaped data: a timing and plumbing check.
# Each step has its own time limit (550 s in all) so that the whole script ends inside ~9.5 minutes
# and a failing step does not hide the others' results.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false

if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD
# The carried Fashion-MNIST files are read in place (grid --data-dir), not copied.
FASHION_DIR=$PWD/.whl/fashion-mnist

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices()); print('keras', keras.__version__)"
} > "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"

step() {  # step NAME SECONDS CMD...
    local name=$1 limit=$2; shift 2
    echo "=== $name (limit ${limit}s)"
    local t0=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "rc=$rc after $((SECONDS - t0))s" | tee -a "$OUT/$name.log"
    tail -n 25 "$OUT/$name.log"
}

step gpu_tests 60 python3 -m pytest -q -m gpu tests -p no:cacheprovider -o addopts="" \
    -W "ignore::DeprecationWarning"
step bench_train 120 python3 benchmarks/bench_train.py --n-train 10000 --epochs 3 \
    --batch-sizes 100 500 --precisions float32 mixed_bfloat16 --json "$OUT/bench_train.json"
step bench_estimators 60 python3 benchmarks/bench_estimators.py --batch-sizes 256 1024 \
    --json "$OUT/bench_estimators.json"
step bench_stationary 60 python3 benchmarks/bench_stationary.py
step short_grid 100 python3 -c "import sys; from validation.cli import main; sys.exit(main(
    ['grid', '--preset', 'short', '--data', 'synthetic', '--loss', 'kld', '--out', '/tmp/runs',
      '--backend', 'jax', '--quiet']))"
python3 -c "import sys; from validation.cli import main; sys.exit(main(['report', '/tmp/runs', '--out', '/tmp/report']))" \
    >> "$OUT/short_grid.log" 2>&1 && cp /tmp/report/table1.md "$OUT/" 2>/dev/null
# A third of `grid --preset fashion --loss kld` (6 of 18 runs): wall time per run on the GPU,
# from which the whole preset's time is estimated (the runs are independent and alike).
step fashion_grid 150 python3 -c "import sys; from validation.cli import main; sys.exit(main(
    ['grid', '--preset', 'fashion', '--loss', 'kld', '--shard', '0/3', '--out', '/tmp/runs-fashion',
      '--data-dir', '$FASHION_DIR', '--backend', 'jax', '--quiet']))"
python3 -c "import sys; from validation.cli import main; sys.exit(main(['report', '/tmp/runs-fashion', '--out', '/tmp/report-fashion']))" \
    >> "$OUT/fashion_grid.log" 2>&1 && cp /tmp/report-fashion/report.md "$OUT/fashion_report.md" 2>/dev/null
ls -la "$OUT"
