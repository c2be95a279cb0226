#!/usr/bin/env bash
# Every row of docs/benchmarks.md's GPU table in one call (one NVIDIA GPU, no TensorFlow needed):
# our bf16 train and eval steps next to the PyTorch references, eager and torch.compile'd.
#
#   benchmarks/gpu_suite.sh [OUT_DIR]   # writes OUT_DIR/gpu_table.md, compare.jsonl, logs/
#
# Environment overrides (the CPU smoke test in tests/test_benchmark.py uses them):
#   MODELS="hardnet85 hrnet_w48 hlg_tiny"  DEVICE=cuda  DTYPE=bfloat16  BATCH=128  SIZE=224
#   MODES=train,eval  ITERS=5  ROUNDS=3  PYTHON=.venv/bin/python (else python)
#   TORCH_COMPILE=false (leave out the torch.compile rows; default: on with DEVICE=cuda)
#   WAIT_S=360 (how long a prepared process waits for the others)  WAVE_S=480 (a mode's limit)
#   JAX_COMPILATION_CACHE_DIR=runs/jax_cache (empty: no cache)
#
# Why one process per (model, framework), all of a mode at once: on one H200 our train step
# compiled in 79-131 s (HRNet-W48, HarDNet-85; cause not yet profiled) and torch.compile
# of the same steps took over 70 and 145 s, so one model after another cannot fit the 8-minute
# target. The processes compile at the same time on the host's cores; then, once all are ready
# (or WAIT_S has passed), they time their steps one at a time (benchmarks/compare_torch.py
# --sync-dir), so no timed step shares the GPU (each row says timed_after_all_compiled: false
# when WAIT_S ran out first). A process that fails or passes WAVE_S loses only
# its own row; the script then exits 1 after writing the table of the others.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/gpu_suite}
MODELS=${MODELS:-hardnet85 hrnet_w48 hlg_tiny}
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE:-bfloat16}
BATCH=${BATCH:-128}
SIZE=${SIZE:-224}
MODES=${MODES:-train,eval}
ITERS=${ITERS:-5}
ROUNDS=${ROUNDS:-3}
WAIT_S=${WAIT_S:-360}
WAVE_S=${WAVE_S:-480}
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
FRAMEWORKS="jax torch-eager"
if [[ "${TORCH_COMPILE:-$([[ $DEVICE == cuda ]] && echo true)}" == true ]]; then
  FRAMEWORKS="$FRAMEWORKS torch-compile"
fi
if [[ "$DEVICE" == cpu ]]; then
  export JAX_PLATFORMS=cpu CUDA_VISIBLE_DEVICES=""
fi
# A rerun on the same machine (a limit cut the first call short, or the other mode) loads our
# compiled steps from here instead of compiling them again (1-2 minutes each on an H200); its
# compile_s is then the load time. JAX_COMPILATION_CACHE_DIR= (empty) times cold compiles.
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR-runs/jax_cache}
# Allocate on demand so that the processes share the GPU.
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
rm -rf "$OUT/parts" "$OUT/sync" "$OUT/logs" "$OUT/compare.jsonl"
mkdir -p "$OUT/parts" "$OUT/sync" "$OUT/logs"
models=($MODELS) frameworks=($FRAMEWORKS)
expect=$(( ${#models[@]} * ${#frameworks[@]} ))
failed=0
start=$(date +%s)
for mode in ${MODES//,/ }; do
  pids=()
  for model in "${models[@]}"; do
    for framework in "${frameworks[@]}"; do
      name="$mode-$model-$framework"
      timeout -k 10 "$WAVE_S" "$PYTHON" -m benchmarks.compare_torch --models "$model" \
        --modes "$mode" --frameworks "$framework" --device "$DEVICE" --dtype "$DTYPE" \
        --batch "$BATCH" --size "$SIZE" --warmup 1 --iters "$ITERS" --rounds "$ROUNDS" \
        --sync-dir "$OUT/sync/$mode" --expect "$expect" --wait-s "$WAIT_S" \
        --out "$OUT/parts/$name.jsonl" >"$OUT/logs/$name.log" 2>&1 &
      pids+=("$!:$name")
    done
  done
  for entry in "${pids[@]}"; do
    if ! wait "${entry%%:*}"; then
      failed=1
      echo "gpu_suite: ${entry#*:} failed; see $OUT/logs/${entry#*:}.log" >&2
    fi
  done
  echo "gpu_suite: $mode done after $(( $(date +%s) - start )) s"
done
parts=("$OUT"/parts/*.jsonl)
if [[ -e "${parts[0]}" ]]; then
  "$PYTHON" -m benchmarks.compare_torch --merge "${parts[@]}" --models "${MODELS// /,}" \
    --device "$DEVICE" --out "$OUT/compare.jsonl" --table "$OUT/gpu_table.md" \
    --command "MODELS=\"$MODELS\" DTYPE=$DTYPE BATCH=$BATCH SIZE=$SIZE MODES=$MODES ITERS=$ITERS ROUNDS=$ROUNDS benchmarks/gpu_suite.sh" \
    || failed=1
fi
echo "gpu_suite: $(( $(date +%s) - start )) s; table in $OUT/gpu_table.md"
exit "$failed"
