#!/usr/bin/env bash
# Every row of docs/benchmarks.md's GPU table in one call (one NVIDIA GPU, no TensorFlow needed):
# our bf16 train and eval steps next to the PyTorch references, eager and torch.compile'd.
#
#   benchmarks/gpu_suite.sh [OUT_DIR]          # writes OUT_DIR/gpu_table.md and compare.jsonl
#
# Environment overrides (the CPU smoke test in tests/test_benchmark.py uses them):
#   MODELS="hardnet85 hrnet_w48 hlg_tiny"  DEVICE=cuda  DTYPE=bfloat16  BATCH=128  SIZE=224
#   MODES=train,eval  ITERS=5  ROUNDS=3  PYTHON=.venv/bin/python (else python)
#   TORCH_COMPILE=false (leave out the torch.compile rows; default: on with DEVICE=cuda)
# Budget: each model compiles our two steps and torch.compile's two; the defaults aim at under
# 8 minutes on one H100/H200-class GPU (not yet measured on one).
set -euo pipefail
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
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
if [[ "$DEVICE" == cpu ]]; then
  export JAX_PLATFORMS=cpu CUDA_VISIBLE_DEVICES=""
fi
# Allocate on demand so that jax and torch share the GPU in one process.
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
mkdir -p "$OUT"
rm -f "$OUT/compare.jsonl"
start=$(date +%s)
"$PYTHON" -m benchmarks.compare_torch --models "${MODELS// /,}" --modes "$MODES" \
  --device "$DEVICE" --dtype "$DTYPE" --batch "$BATCH" --size "$SIZE" --warmup 1 \
  --iters "$ITERS" --rounds "$ROUNDS" ${TORCH_COMPILE:+--torch-compile "$TORCH_COMPILE"} --out "$OUT/compare.jsonl" --table "$OUT/gpu_table.md"
echo "gpu_suite: $(( $(date +%s) - start )) s; table in $OUT/gpu_table.md"
