#!/usr/bin/env bash
# Set up a fresh machine and run the test suite: .venv with CPU torch and robustft[test,local,train]
# (the first install builds llama-server, ~14 min on 2 cores), then ruff and pytest.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh test,local,train
.venv/bin/ruff check .
export HF_HUB_OFFLINE=1
.venv/bin/python -m pytest -q "$@"
