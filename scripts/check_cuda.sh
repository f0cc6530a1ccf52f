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

# The CUDA branch of the torch binding (bindings/ops.cpp with FLAMEKIT_WITH_CUDA) is compiled
# by the host compiler; check its syntax against the installed torch headers and the CUDA
# runtime headers. A CPU build of torch lacks c10's generated CUDA macros header, which only
# sets the DLL-export macro: a stand-in is supplied for this check.
python_bin="${PYTHON:-python3}"
if torch_includes="$("$python_bin" -c 'import sysconfig, torch.utils.cpp_extension as c; print(" ".join(c.include_paths() + [sysconfig.get_paths()["include"]]))' 2>/dev/null)"; then
  cuda_include=""
  for candidate in "${CUDA_HOME:-}/include" "$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")/include" \
    /usr/local/cuda/include /usr/local/cuda-*/include; do
    if [[ -f "$candidate/cuda_runtime_api.h" ]]; then cuda_include="$candidate"; break; fi
  done
  mkdir -p "$out_dir/shim/c10/cuda/impl"
  echo '#define C10_CUDA_BUILD_SHARED_LIBS' >"$out_dir/shim/c10/cuda/impl/cuda_cmake_macros.h"
  include_flags=(-I csrc/include -I "$cuda_include")
  for dir in $torch_includes; do include_flags+=(-isystem "$dir"); done
  include_flags+=(-idirafter "$out_dir/shim")
  "${CXX:-c++}" -std=c++17 -fsyntax-only -DFLAMEKIT_WITH_CUDA=1 -DTORCH_EXTENSION_NAME=_C \
    "${include_flags[@]}" csrc/bindings/ops.cpp
  echo "ok  csrc/bindings/ops.cpp  (CUDA branch, syntax)"
else
  echo "torch not importable; skipping the syntax check of the CUDA binding"
fi
