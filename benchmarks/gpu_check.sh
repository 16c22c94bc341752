#!/usr/bin/env bash
# GPU check for attngan-jax on one NVIDIA GPU (run from the repository root; writes JSON to $OUT).
#
#   OUT=/some/dir bash benchmarks/gpu_check.sh
#
# 1. creates .venv-gpu with the jax/jaxlib version of this checkout and the CUDA extra the driver
#    supports (jax[cuda13] for a CUDA >= 13 driver, else jax[cuda12]; current JAX docs name both),
#    plus this package (pip install -e .). Set WHEELHOUSE=DIR to install offline from wheels.
# 2. birds256 GAN step (original widths, Inception DAMSM term) at batch 20, float32 then bfloat16;
# 3. bf16-vs-f32 losses of the first 100 shapes GAN steps on random data.
# Every stage has its own timeout so the whole script stays under ~8 minutes; a failed stage is
# logged and the next one still runs. Timings per stage go to $OUT/timings.txt.
set -uo pipefail

OUT="${OUT:-$(pwd)/gpu_check_out}"
mkdir -p "$OUT"
LOG="$OUT/timings.txt"
: > "$LOG"
T0=$(date +%s)
PY="${PYTHON:-python3}"
VENV="${VENV:-.venv-gpu}"

stamp() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }

stage() {  # stage NAME TIMEOUT_S CMD...
  local name=$1 limit=$2; shift 2
  local s=$(date +%s)
  stamp "start $name (limit ${limit}s)"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  stamp "end $name rc=$rc in $(( $(date +%s) - s ))s"
  tail -n 25 "$OUT/$name.log"
  return $rc
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/nvidia_smi.txt"
CUDA_MAJOR=$(nvidia-smi | sed -n 's/.*CUDA Version: \([0-9]*\).*/\1/p' | head -1)
EXTRA=cuda12
if [ "${CUDA_MAJOR:-12}" -ge 13 ] 2>/dev/null; then EXTRA=cuda13; fi
JAX_VERSION=$(sed -n 's/^ *jax[=>]=\([0-9.]*\).*/\1/p' setup.cfg | head -1)
JAX_SPEC="jax[$EXTRA]${JAX_VERSION:+==$JAX_VERSION}"
stamp "driver CUDA $CUDA_MAJOR -> $JAX_SPEC"

install() {
  "$PY" -m venv "$VENV" || return 1
  local pip=("$VENV/bin/pip" install -q)
  if [ -n "${WHEELHOUSE:-}" ]; then pip+=(--no-index --find-links "$WHEELHOUSE"); fi
  "${pip[@]}" --upgrade pip >/dev/null 2>&1
  "${pip[@]}" "$JAX_SPEC" || { [ "$EXTRA" = cuda13 ] && "${pip[@]}" "jax[cuda12]${JAX_VERSION:+==$JAX_VERSION}"; } || return 1
  "${pip[@]}" -e . || return 1
  "$VENV/bin/python" -c "import jax; d = jax.devices(); print(d); assert d[0].platform == 'gpu', d"
}
if ! stage install 180 install; then
  stamp "install failed (no network? set WHEELHOUSE); see $OUT/install.log"
  exit 1
fi
VPY="$VENV/bin/python"
export ATTNGAN_JAX_CACHE="$OUT/jax_cache"

stage birds256_f32 110 "$VPY" benchmarks/train_step.py --preset=birds256 --batch_size=20 \
  --steps=9 --dtype=float32 --json="$OUT/birds256_b20_float32.json"
stage birds256_bf16 110 "$VPY" benchmarks/train_step.py --preset=birds256 --batch_size=20 \
  --steps=9 --dtype=bfloat16 --json="$OUT/birds256_b20_bfloat16.json"
stage bf16_vs_f32 90 "$VPY" benchmarks/bf16_compare.py --steps=100 --batch_size=16 \
  --json="$OUT/shapes_bf16_vs_f32.json"
stamp "done; JSON in $OUT"
ls -l "$OUT" | tee -a "$LOG"
