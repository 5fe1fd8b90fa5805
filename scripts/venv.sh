#!/usr/bin/env bash
# Create .venv when missing and install CPU torch plus robustft with the extras given ($1).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0  # the CPU wheel; unpinned pulls CUDA builds
.venv/bin/python -m pip install -q -e ".[$1]"
