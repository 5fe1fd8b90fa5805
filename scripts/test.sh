#!/usr/bin/env bash
# Set up a fresh machine and run the test suite: virtual environment, CPU torch, the package
# with its test extra, ruff, pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e ".[test,local]"
.venv/bin/ruff check .
export HF_HUB_OFFLINE=1
.venv/bin/python -m pytest -q "$@"
