#!/usr/bin/env bash
# One command on a fresh machine: install flamekit with its test tools and run every check
# (CUDA compile check, CMake build + ctest, ruff, pytest). CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

bash scripts/install.sh "[test]"

echo "==> nvcc compile check of csrc/cuda (sm_80, sm_90)"
# CI machines have nvcc; elsewhere the check is skipped with a message.
FLAMEKIT_REQUIRE_NVCC=${FLAMEKIT_REQUIRE_NVCC:-${CI:+1}} bash scripts/check_cuda.sh

echo "==> CMake build and ctest"
command -v cmake >/dev/null || "$PYTHON" -m pip install --quiet cmake
BUILD_DIR=${FLAMEKIT_CMAKE_BUILD_DIR:-build/cmake}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DPython3_EXECUTABLE="$(command -v "$PYTHON")" >/dev/null
cmake --build "$BUILD_DIR" -j 2
ctest --test-dir "$BUILD_DIR" --output-on-failure

echo "==> ruff"
"$PYTHON" -m ruff check .

echo "==> pytest"
"$PYTHON" -m pytest -q "$@"
