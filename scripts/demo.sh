#!/usr/bin/env bash
# One command on a fresh machine: install flamekit and run its main job on a bundled photo:
# `flamekit demo` fits the astronaut portrait that ships with scikit-image (public domain)
# with the default detector and segmenter, the registered FLAME model or, without one, the
# built-in demo head (not FLAME), then renders the demo head to a PNG too.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
PYTHON=${PYTHON:-python3}
OUT=${1:-flamekit_demo}
# Through the installing Python (its scripts folder may not be on PATH).
"$PYTHON" -m flamekit_cli.main demo --out "$OUT"
"$PYTHON" -m flamekit_cli.main render-demo --out "$OUT/render_demo.png"
echo "outputs: $OUT/astronaut/ (vis.jpg, render.png, mesh.obj, params.json, ...) and $OUT/render_demo.png"
