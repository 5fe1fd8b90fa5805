#!/usr/bin/env bash
# Create .venv when missing and install robustft with the extras given ($1); torch (CPU wheel)
# only when they include train: the rest of robustft never imports torch.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
case ",$1," in
  *,train,*) .venv/bin/python -m pip install -q torch==2.13.0 ;;  # CPU wheel; unpinned: CUDA
esac
.venv/bin/python -m pip install -q -e ".[$1]"
