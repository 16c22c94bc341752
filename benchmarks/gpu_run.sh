#!/usr/bin/env bash
# The GPU check as run on the lent H100 (preinstalled JAX/flax/optax/orbax image, no network):
# only ml_collections travels as a wheel in .whl/ (made here with: pip download --no-deps
# --only-binary=:all: -d .whl ml-collections==1.1.0); benchmarks/gpu_check.sh is for a fresh machine.
# Writes JSON to $OUT. Usage there: bash benchmarks/gpu_run.sh
set -uo pipefail
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD"
export ATTNGAN_JAX_CACHE=off
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/nvidia_smi.txt"
python3 -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
run() { local name=$1; shift; echo "== $name"; timeout 200 python3 "$@" 2>&1 | tail -n 30; }
run birds256_f32 benchmarks/train_step.py --preset=birds256 --batch_size=20 --steps=9 --dtype=float32 --json="$OUT/birds256_f32.json"
run birds256_bf16 benchmarks/train_step.py --preset=birds256 --batch_size=20 --steps=9 --dtype=bfloat16 --json="$OUT/birds256_bf16.json"
run bf16_compare benchmarks/bf16_compare.py --steps=100 --json="$OUT/bf16_compare.json"
ls -la "$OUT"
