#!/usr/bin/env bash
# The GPU checks, in one command, on a machine with an NVIDIA GPU, nvcc and a CUDA build of
# torch: build flamekit._C with the CUDA kernels, run the CUDA-vs-CPU tests and the whole
# suite, and time the renderer on the GPU. Results go to bench/results/render-cuda.json;
# copy the table into docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
FLAMEKIT_CUDA=1 "$PYTHON" -m pip install --no-build-isolation --no-deps -e .
"$PYTHON" -c "import flamekit._extension as e; assert e.load_extension().built_with_cuda(), 'not built with CUDA'"
"$PYTHON" -m pytest -q tests/test_cuda.py -rs
"$PYTHON" -m pytest -q
"$PYTHON" bench/render.py --device cuda --backends flamekit --repeats 100
