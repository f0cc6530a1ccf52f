#!/usr/bin/env bash
# Compile-checks every csrc/cuda/*.cu for sm_80 and sm_90 with the flags of the real build
# (no torch needed). Run from the repository root. Without nvcc it skips (exit 0) unless
# FLAMEKIT_REQUIRE_NVCC=1. Extra arguments go to nvcc, e.g. -Xptxas -v.
set -euo pipefail

if ! command -v nvcc >/dev/null 2>&1; then
  if [[ "${FLAMEKIT_REQUIRE_NVCC:-0}" == "1" ]]; then
    echo "nvcc not found; FLAMEKIT_REQUIRE_NVCC=1, failing" >&2
    exit 1
  fi
  echo "nvcc not found; skipping CUDA compile check"
  exit 0
fi

shopt -s nullglob
sources=(csrc/cuda/*.cu)
if [[ ${#sources[@]} -eq 0 ]]; then
  echo "no csrc/cuda/*.cu found (run from the repository root)" >&2
  exit 1
fi

out_dir="$(mktemp -d)"
trap 'rm -rf "$out_dir"' EXIT

for src in "${sources[@]}"; do
  name="$(basename "$src" .cu)"
  for arch in 80 90; do
    nvcc -std=c++17 --fmad=false -I csrc/include \
      -gencode "arch=compute_${arch},code=sm_${arch}" \
      "$@" -c "$src" -o "$out_dir/${name}_sm${arch}.o"
    echo "ok  $src  sm_${arch}"
  done
done
