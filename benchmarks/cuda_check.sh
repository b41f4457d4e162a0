#!/usr/bin/env bash
# The prepared GPU run (one call on a machine with a CUDA device): the CUDA tests of the fused kernels, layers and
# models, then the CUDA benchmarks. Everything lands under $OUT (default runs/cuda_check) as text and JSON.
#
#   bash benchmarks/cuda_check.sh            # ~10 min on one H200, most of it the set-up and the batch-128 pass
#
# The set-up line is the README's (the venv is not carried to another machine); skip it with SETUP=0.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/cuda_check}
mkdir -p "$OUT"
if [ "${SETUP:-1}" = 1 ]; then
  python3 -m venv .venv && .venv/bin/pip install -q -e ".[dev]" > "$OUT/setup.txt" 2>&1
fi
PY=.venv/bin/python
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
# 1. correctness on CUDA: the Triton kernels against the eager closed forms, every layer and model on the GPU
LORENTZCV_TEST_DEVICE=cuda timeout 900 $PY -m pytest -q -p no:cacheprovider tests/kernels tests/nn tests/models \
  tests/optim > "$OUT/tests.txt" 2>&1
echo "pytest exit code $?" >> "$OUT/tests.txt"
# 2. step time and memory, float32 and float16 autocast, batch 128 (the issue's targets) and the default 32
$PY benchmarks/compute.py --device cuda --amp --batch 128 --layer-repeats 20 --model-repeats 10 --warmup 3 \
  --models resnet18 hybrid_resnet18 hecnn_resnet18 hcnn_resnet18 resnet50 hecnn_resnet50 \
  --out "$OUT/compute_b128.json" > /dev/null 2> "$OUT/compute_b128.err"
$PY benchmarks/compute.py --device cuda --only models --batch 32 --model-repeats 10 --warmup 3 \
  --models resnet18 hecnn_resnet18 hcnn_resnet18 --out "$OUT/compute_b32.json" > /dev/null 2> "$OUT/compute_b32.err"
# 3. torch.compile of the training step: compile time and speedup
$PY benchmarks/compute.py --device cuda --only models --compile --batch 128 --model-repeats 10 --warmup 2 \
  --models resnet18 hecnn_resnet18 --out "$OUT/compile_b128.json" > /dev/null 2> "$OUT/compile_b128.err"
# 4. the optimizer step against torch's foreach AdamW/SGD
$PY benchmarks/optim.py --device cuda --repeats 30 --sgd --foreach > "$OUT/optim.json" 2> "$OUT/optim.err"
echo done > "$OUT/done.txt"
