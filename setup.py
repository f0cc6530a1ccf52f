"""Builds flamekit._C, the rasterizer and shading kernels, as a torch extension.

The C++ sources are always compiled. The CUDA sources are added when torch has CUDA and
nvcc is found; FLAMEKIT_CUDA=1 forces them in (the build fails loudly if impossible) and
FLAMEKIT_CUDA=0 leaves them out. Install with the torch you want to use already present:

    pip install -e . --no-build-isolation
"""

from __future__ import annotations

import glob
import os
import shutil

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join("csrc")


def _cuda_requested() -> bool:
    flag = os.environ.get("FLAMEKIT_CUDA", "").strip().lower()
    if flag in {"1", "true", "yes", "on"}:
        return True
    if flag in {"0", "false", "no", "off"}:
        return False
    import torch
    from torch.utils.cpp_extension import CUDA_HOME

    has_nvcc = CUDA_HOME is not None or shutil.which("nvcc") is not None
    return torch.version.cuda is not None and has_nvcc


def _extensions():
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension
    except ImportError as exc:  # pragma: no cover - only without torch
        raise SystemExit(
            "flamekit builds its extension against the installed torch: install torch first "
            "(pip install torch==2.13.0 on CPU machines), then "
            "pip install -e . --no-build-isolation"
        ) from exc

    sources = sorted(glob.glob(os.path.join(CSRC, "bindings", "*.cpp")))
    sources += sorted(glob.glob(os.path.join(CSRC, "cpu", "*.cpp")))
    # -fopenmp: at::parallel_for is an inline template over OpenMP pragmas; without the flag
    # it silently runs on one thread. The module then shares torch's libgomp at run time.
    cxx_flags = ["-O3", "-std=c++17", "-ffp-contract=off", "-fopenmp"]
    link_flags = ["-fopenmp"]
    include_dirs = [os.path.join(ROOT, CSRC, "include")]
    if _cuda_requested():
        sources += sorted(glob.glob(os.path.join(CSRC, "cuda", "*.cu")))
        ext = CUDAExtension(
            "flamekit._C",
            sources,
            include_dirs=include_dirs,
            define_macros=[("FLAMEKIT_WITH_CUDA", "1")],
            extra_link_args=link_flags,
            extra_compile_args={
                "cxx": cxx_flags,
                "nvcc": ["-O3", "-std=c++17", "--fmad=false"],
            },
        )
    else:
        ext = CppExtension(
            "flamekit._C",
            sources,
            include_dirs=include_dirs,
            extra_compile_args=cxx_flags,
            extra_link_args=link_flags,
        )
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = _extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
