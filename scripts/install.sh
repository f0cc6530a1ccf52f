#!/usr/bin/env bash
# Installs flamekit from this source folder into the current Python, building flamekit._C.
#
# torch is installed first, pinned, so that pip never resolves another torch (which would
# pull several GB of CUDA packages); an already-installed torch is kept (set
# FLAMEKIT_TORCH to change the pin). The extension is built against that torch, hence
# --no-build-isolation. Extra arguments are passed to the flamekit install (e.g. ".[test]").
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${FLAMEKIT_TORCH:-torch==2.13.0}

if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  echo "==> installing $TORCH_SPEC"
  "$PYTHON" -m pip install --quiet "$TORCH_SPEC"
fi
echo "==> build requirements"
"$PYTHON" -m pip install --quiet "setuptools>=64" wheel "pybind11>=2.10" ninja numpy
echo "==> building and installing flamekit (editable)"
"$PYTHON" -m pip install --quiet --no-build-isolation -e ".${1:-}"
"$PYTHON" -c "import torch, flamekit; print('flamekit', flamekit.__version__, 'torch', torch.__version__, 'extension built:', flamekit.extension_available())"
