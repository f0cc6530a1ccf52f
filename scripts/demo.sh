#!/usr/bin/env bash
# One command on a fresh machine: install flamekit and run its main job on the bundled
# default. Until fitting lands, that job is the render demo: a shaded, textured head.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
PYTHON=${PYTHON:-python3}
OUT=${1:-flamekit_demo.png}
# Same as `flamekit render-demo`, through the installing Python (its scripts folder may not
# be on PATH).
"$PYTHON" -m flamekit_cli.main render-demo --out "$OUT"
