#!/usr/bin/env bash
# One command on a fresh machine: install flamekit and run its main job on the bundled
# default. Until fitting lands, that job is the render demo: a shaded, textured head.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
OUT=${1:-flamekit_demo.png}
flamekit render-demo --out "$OUT"
