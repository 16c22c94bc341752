#!/usr/bin/env bash
# The original (PyTorch) and attngan-jax side by side on one NVIDIA GPU, then train.py on it.
#
#   OUT=/some/dir bash benchmarks/gpu_side_by_side.sh             # on the GPU (~9 minutes)
#   OUT=/some/dir bash benchmarks/gpu_side_by_side.sh --dry-run   # every stage on the CPU, tiny
#
# Uses the preinstalled python3 (JAX and PyTorch with CUDA; no network): this checkout goes on
# PYTHONPATH, nothing is installed, except that modules missing from the image are installed
# offline from $WHEELS (default tmp/wheels, made by benchmarks/gpu_wheels.sh; give it to the device
# tool as carry=["tmp/wheels"]) into $WORK/site. Stages, each with its own time limit, all under
# one deadline ($BUDGET_S, default 530 s; a stage that would not fit is skipped and says so;
# STAGES="name ..." runs a subset, in this order):
#
#   env           imports, versions, devices (benchmarks/gpu_env.py); what can run
#   flops         (background: on the CPU, niced, while the GPU stages run) the step's FLOPs from
#                 its layer shapes (flops.py)
#   synthetic_birds  (background) CUB-layout birds: JPEGs, captions, pickles
#                 (make_synthetic_birds.py), prepared with JPEG records, random DAMSM encoders
#   torch_1       the original, birds256 batch 20 float32 (torch_reference.py --device=cuda)
#   ours_f32_1    ours, same, float32 (train_step.py; fills the compilation cache)
#   ours_bf16_1   ours, bfloat16
#   torch_2       the original again (alternating, so drift shows)
#   ours_f32_2    ours float32 again, from the compilation cache: no autotuning, so its
#                 peak_bytes_in_use is the step's own peak (preallocation is off throughout)
#   loader        the birds loader alone, grain workers 0/4/8 (examples/s vs the step's need)
#   birds_train   train.py, birds widths (= the birds256 step), batch 20, $TRAIN_STEPS steps on
#                 the synthetic data: step time from its TensorBoard examples_per_s vs the cached
#                 batch (ours_f32's pipelined step); then its sample grid and R-precision
#   shapes        train.py's shapes demo (DAMSM, then the GAN phase for $SHAPES_GAN_STEPS steps)
#   birds_train_workers  birds_train again (its compiles now cached) with the loader's best grain
#                 worker count, if that beat worker_count=0 by >10 % in the loader stage
#   ours_bf16_2   ours bfloat16 from the cache (its real peak memory), if time is left
#   summary       gpu_summary.py: $OUT/summary.json, $OUT/summary.txt (the table, README rows)
#
# $OUT receives at most 6 files: summary.json, summary.txt, logs.tar.gz (every log and JSON) and
# the last sample grids of the two training runs. Scratch goes to $WORK (default /tmp/gpu_sbs).
set -uo pipefail

DRY_RUN="${DRY_RUN:-0}"
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    *) echo "unknown argument $arg (use --dry-run or DRY_RUN=1)" >&2; exit 2 ;;
  esac
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 1
OUT="${OUT:-$REPO/gpu_side_by_side_out}"
if [ "$DRY_RUN" = 1 ]; then WORK="${WORK:-/tmp/gpu_sbs_dry}"; else WORK="${WORK:-/tmp/gpu_sbs}"; fi
PY="${PYTHON:-python3}"
WHEELS="${WHEELS:-$REPO/tmp/wheels}"
RESERVE_S=20  # kept for the summary and the tar

if [ "$DRY_RUN" = 1 ]; then
  BUDGET_S="${BUDGET_S:-900}"
  DEVICE=cpu; PRESET="${PRESET:-tiny64}"; BATCH="${BATCH:-2}"; STEPS="${STEPS:-2}"
  TORCH_STEPS="${TORCH_STEPS:-1}"; TORCH_THREADS="${TORCH_THREADS:-1}"; PIPELINED="${PIPELINED:-2}"
  TRAIN_STEPS="${TRAIN_STEPS:-4}"; LOG_EVERY="${LOG_EVERY:-2}"
  SYN_TRAIN="${SYN_TRAIN:-24}"; SYN_TEST="${SYN_TEST:-32}"; LOADER_WORKERS="${LOADER_WORKERS:-0,1}"
  LOADER_BATCHES="${LOADER_BATCHES:-3}"
  BIRDS_CONFIG="configs/attngan_birds.py:tiny"; BIRDS_VARIANT=tiny; BIRDS_STAGES=1
  SHAPES_CONFIG="configs/shapes.py:tiny"; SHAPES_GAN_STEPS="${SHAPES_GAN_STEPS:-2}"
  SHAPES_ARGS="${SHAPES_ARGS:---config.damsm.num_steps=2}"
  export JAX_PLATFORMS=cpu
else
  BUDGET_S="${BUDGET_S:-530}"
  DEVICE=cuda; PRESET="${PRESET:-birds256}"; BATCH="${BATCH:-20}"; STEPS="${STEPS:-9}"
  TORCH_STEPS="${TORCH_STEPS:-9}"; TORCH_THREADS="${TORCH_THREADS:-4}"; PIPELINED="${PIPELINED:-20}"
  TRAIN_STEPS="${TRAIN_STEPS:-300}"; LOG_EVERY="${LOG_EVERY:-50}"
  SYN_TRAIN="${SYN_TRAIN:-1000}"; SYN_TEST="${SYN_TEST:-64}"; LOADER_WORKERS="${LOADER_WORKERS:-0,4,8}"
  LOADER_BATCHES="${LOADER_BATCHES:-25}"
  BIRDS_CONFIG="configs/attngan_birds.py"; BIRDS_VARIANT=full; BIRDS_STAGES=3
  SHAPES_CONFIG="configs/shapes.py"; SHAPES_GAN_STEPS="${SHAPES_GAN_STEPS:-1000}"
  SHAPES_ARGS="${SHAPES_ARGS:-}"
fi
STAGES="${STAGES:-env flops synthetic_birds torch_1 ours_f32_1 ours_bf16_1 torch_2 ours_f32_2 loader birds_train shapes birds_train_workers ours_bf16_2}"

rm -rf "$WORK/logs" "$WORK/results" "$WORK/birds_run" "$WORK/birds_run_workers" "$WORK/shapes_run"
mkdir -p "$OUT" "$WORK/logs" "$WORK/results"
LOGS="$WORK/logs"; RES="$WORK/results"
T0=$(date +%s)
export PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false   # peak_bytes_in_use = what the step needs
export ATTNGAN_JAX_CACHE="$WORK/jax_cache"   # train.py's persistent cache (and autotune cache)
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-1}"
printf '{"dry_run": %s, "budget_s": %s, "preset": "%s", "batch": %s, "train_steps": %s, "device": "%s"}\n' \
  "$DRY_RUN" "$BUDGET_S" "$PRESET" "$BATCH" "$TRAIN_STEPS" "$DEVICE" > "$RES/run.json"

elapsed() { echo $(( $(date +%s) - T0 )); }
left() { echo $(( BUDGET_S - $(elapsed) - RESERVE_S )); }
say() { echo "[$(elapsed)s] $*" | tee -a "$LOGS/timeline.txt"; }
record() {  # record NAME STATUS RC SECONDS LIMIT [REASON]
  printf '{"name": "%s", "status": "%s", "rc": %s, "seconds": %s, "limit_s": %s, "reason": "%s"}\n' \
    "$1" "$2" "$3" "$4" "$5" "${6:-}" >> "$RES/stages.jsonl"
}
wanted() { case " $STAGES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# stage NAME LIMIT_S MIN_S CMD...: runs CMD with timeout min(LIMIT, time left); skipped if less
# than MIN_S is left. Output to $LOGS/NAME.log (its tail is printed).
stage() {
  local name=$1 limit=$2 min=$3; shift 3
  if ! wanted "$name"; then return 0; fi
  local l; l=$(left)
  if [ "$l" -lt "$min" ]; then
    say "skip $name: ${l}s left, it needs ${min}s"
    record "$name" skipped null 0 "$limit" "not enough time left (${l}s < ${min}s)"
    return 1
  fi
  [ "$l" -lt "$limit" ] && limit=$l
  say "start $name (limit ${limit}s)"
  local s; s=$(date +%s)
  timeout --signal=TERM --kill-after=15 "$limit" "$@" > "$LOGS/$name.log" 2>&1
  local rc=$? d=$(( $(date +%s) - s )) status=ok
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then status=timeout; elif [ $rc -ne 0 ]; then status=failed; fi
  say "end $name: $status rc=$rc in ${d}s"
  tail -n 6 "$LOGS/$name.log" | cut -c1-240
  record "$name" "$status" "$rc" "$d" "$limit"
  [ $rc -eq 0 ]
}
need() {  # need NAME FLAG WHAT: records a skip when FLAG is not 1
  if [ "$2" != 1 ] && wanted "$1"; then
    say "skip $1: $3"; record "$1" skipped null 0 0 "$3"; return 1
  fi
  return 0
}

# ------------------------------------------------------------------------- env
HAVE_TORCH=0; HAVE_OURS=0; HAVE_TRAIN=0
if [ "$DEVICE" = cuda ] && command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv \
    > "$LOGS/nvidia_smi.txt" 2>&1
  cat "$LOGS/nvidia_smi.txt"
fi
if [ -d "$WHEELS" ]; then
  mkdir -p "$WORK/site"
  "$PY" benchmarks/gpu_env.py --install_missing="$WHEELS" --target="$WORK/site" \
    > "$LOGS/install_missing.log" 2>&1
  tail -n 1 "$LOGS/install_missing.log"
  export PYTHONPATH="$PYTHONPATH:$WORK/site"  # after the image's own packages: never shadows them
fi
stage env 120 10 "$PY" benchmarks/gpu_env.py --device="$DEVICE" --json="$RES/env.json" \
  --shell="$RES/env.sh"
# shellcheck disable=SC1091
[ -f "$RES/env.sh" ] && . "$RES/env.sh"

# ------------------------------------------------------------------------- background (CPU)
# flops and synthetic_birds run in one niced background job while the GPU stages run (JAX on the
# CPU there, so they never touch the GPU); the loader stage waits for them.
bg_stage() {  # bg_stage NAME CMD...: a background stage, recorded like the others
  local name=$1; shift
  local s; s=$(date +%s)
  local limit; limit=$(left)
  [ "$limit" -lt 30 ] && limit=30
  timeout --kill-after=10 "$limit" nice -n 10 "$@" > "$LOGS/$name.log" 2>&1
  local rc=$? status=ok
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then status=timeout; elif [ $rc -ne 0 ]; then status=failed; fi
  record "$name" "$status" "$rc" "$(( $(date +%s) - s ))" 0 "background, on the CPU"
  echo "[$(elapsed)s] background $name: $status rc=$rc in $(( $(date +%s) - s ))s"
}
BG_PID=""
if [ "$HAVE_OURS" = 1 ] && { wanted flops || wanted synthetic_birds; }; then
  say "start background (CPU, niced): $(for n in flops synthetic_birds; do wanted $n && printf '%s ' $n; done)"
  (
    export JAX_PLATFORMS=cpu
    if wanted flops; then
      bg_stage flops "$PY" benchmarks/flops.py --preset="$PRESET" --batch_size="$BATCH" \
        --json="$RES/flops.json"
    fi
    if wanted synthetic_birds; then
      rm -rf "$WORK/birds_cub" "$WORK/birds_data" "$WORK/birds_damsm"
      bg_stage synthetic_birds "$PY" benchmarks/make_synthetic_birds.py --out="$WORK/birds_cub" \
        --num_train="$SYN_TRAIN" --num_test="$SYN_TEST" --data_dir="$WORK/birds_data" \
        --image_format=jpeg --damsm_dir="$WORK/birds_damsm" --variant="$BIRDS_VARIANT" \
        --num_stages="$BIRDS_STAGES" --workers=4 --json="$RES/synthetic_birds.json"
    fi
  ) > "$LOGS/background.log" 2>&1 &
  BG_PID=$!
else
  for n in flops synthetic_birds; do
    need $n "$HAVE_OURS" "attngan_jax/JAX is not importable"
  done
fi
wait_background() {
  if [ -n "$BG_PID" ]; then
    say "waiting for the background stages"
    wait "$BG_PID"; BG_PID=""
    cat "$LOGS/background.log"
  fi
}

# ------------------------------------------------------------------------- side by side
TORCH_CMD=("$PY" benchmarks/torch_reference.py --preset="$PRESET" --batch_size="$BATCH"
  --steps="$TORCH_STEPS" --threads="$TORCH_THREADS" --device="$DEVICE")
OURS_CMD=("$PY" benchmarks/train_step.py --preset="$PRESET" --batch_size="$BATCH" --steps="$STEPS"
  --pipelined="$PIPELINED" --compilation_cache="$WORK/jax_cache")
need torch_1 "$HAVE_TORCH" "torch (with CUDA) is not importable" &&
  stage torch_1 120 30 "${TORCH_CMD[@]}" --json="$RES/torch_1.json"
need ours_f32_1 "$HAVE_OURS" "attngan_jax/JAX (on a GPU) is not importable" &&
  stage ours_f32_1 230 60 "${OURS_CMD[@]}" --dtype=float32 --json="$RES/ours_f32_1.json"
need ours_bf16_1 "$HAVE_OURS" "attngan_jax/JAX (on a GPU) is not importable" &&
  stage ours_bf16_1 250 60 "${OURS_CMD[@]}" --dtype=bfloat16 --json="$RES/ours_bf16_1.json"
need torch_2 "$HAVE_TORCH" "torch (with CUDA) is not importable" &&
  stage torch_2 90 30 "${TORCH_CMD[@]}" --json="$RES/torch_2.json"
need ours_f32_2 "$HAVE_OURS" "attngan_jax/JAX (on a GPU) is not importable" &&
  stage ours_f32_2 100 30 "${OURS_CMD[@]}" --dtype=float32 --json="$RES/ours_f32_2.json"

# ------------------------------------------------------------------------- train.py on birds
wait_background
DATA_VERSION=$("$PY" -c 'from attngan_jax.data.tfds_builders import VERSION; print(VERSION)' 2>/dev/null)
DATA_PATH="$WORK/birds_data/attngan_birds/${DATA_VERSION:-2.0.0}"
HAVE_DATA=0; [ -f "$DATA_PATH/dataset_info.json" ] && [ -d "$WORK/birds_damsm/model/damsm" ] && HAVE_DATA=1
need loader "$HAVE_DATA" "no synthetic birds dataset (see logs/synthetic_birds.log)" &&
  stage loader 75 20 "$PY" benchmarks/input_pipeline.py --data_path="$DATA_PATH" \
    --sizes="$(if [ "$BIRDS_STAGES" = 1 ]; then echo 64; else echo 64,128,256; fi)" \
    --batch="$BATCH" --batches="$LOADER_BATCHES" --workers="$LOADER_WORKERS" \
    --json_file="$RES/loader.json"
SIZES_FLAG=()
[ "$BIRDS_STAGES" = 1 ] && SIZES_FLAG=(--config.model.num_stages=1 "--config.data.image_sizes=(64,)")
BIRDS_CMD=("$PY" train.py --config="$BIRDS_CONFIG" "${SIZES_FLAG[@]}"
  --config.data.data_dir="$WORK/birds_data" --config.data.manual_dir="$WORK/birds_cub"
  --config.gan.damsm_checkpoint="$WORK/birds_damsm" --config.gan.batch_size="$BATCH"
  --config.gan.num_steps="$TRAIN_STEPS" --config.log_every="$LOG_EVERY"
  --config.sample_every="$TRAIN_STEPS" --config.checkpoint_every=1000000
  --config.eval.num_batches=1)
need birds_train "$HAVE_TRAIN" "train.py's modules are not importable" &&
  need birds_train "$HAVE_DATA" "no synthetic birds dataset" &&
  stage birds_train 260 90 "${BIRDS_CMD[@]}" --workdir="$WORK/birds_run"
# ------------------------------------------------------------------------- shapes demo
need shapes "$HAVE_TRAIN" "train.py's modules are not importable" &&
  stage shapes 200 80 "$PY" train.py --config="$SHAPES_CONFIG" --workdir="$WORK/shapes_run" \
    --config.data.data_dir="$WORK/shapes_data" --config.gan.num_steps="$SHAPES_GAN_STEPS" \
    $SHAPES_ARGS

BEST_WORKERS=$("$PY" - "$RES/loader.json" <<'EOF' 2>/dev/null
import json, sys
rows = json.load(open(sys.argv[1]))["rows"]
base = next(r["examples_per_s"] for r in rows if r["workers"] == 0)
best = max(rows, key=lambda r: r["examples_per_s"])
print(best["workers"] if best["workers"] and best["examples_per_s"] > 1.1 * base else 0)
EOF
)
if [ "${BEST_WORKERS:-0}" != 0 ] && [ -d "$WORK/birds_run" ]; then
  stage birds_train_workers 120 45 "${BIRDS_CMD[@]}" --workdir="$WORK/birds_run_workers" \
    --config.data.worker_count="$BEST_WORKERS"
elif wanted birds_train_workers; then
  record birds_train_workers skipped null 0 0 "grain workers did not beat worker_count=0 by >10 % in the loader stage (or no loader/birds_train result)"
fi

need ours_bf16_2 "$HAVE_OURS" "attngan_jax/JAX (on a GPU) is not importable" &&
  stage ours_bf16_2 100 40 "${OURS_CMD[@]}" --dtype=bfloat16 --json="$RES/ours_bf16_2.json"
wait_background

# ------------------------------------------------------------------------- summary
say "summary"
RESERVE_S=0
"$PY" benchmarks/gpu_summary.py --work="$WORK" --out="$OUT" 2>&1 | tee "$LOGS/summary.log"
for run in birds_run shapes_run/attngan; do
  png=$(ls "$WORK/$run/samples/"*.png 2>/dev/null | tail -n 1)
  [ -n "$png" ] && cp "$png" "$OUT/$(echo "$run" | cut -d/ -f1)_samples.png"
done
tar -czf "$OUT/logs.tar.gz" -C "$WORK" logs results \
  $(cd "$WORK" && ls -d birds_run/*.json birds_run/eval shapes_run/*.json shapes_run/attngan/eval \
    2>/dev/null) 2>/dev/null
say "done in $(elapsed)s; $OUT: $(ls "$OUT" | tr '\n' ' ')"
