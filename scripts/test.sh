#!/usr/bin/env bash
# Set up a fresh machine and run the test suite: .venv with CPU torch and robustft[test,local,train,ray]
# (the first install builds llama-server, ~14 min on 2 cores) and Debian's chromium +
# chromium-driver for the browser tests, then the lint step (ruff, import rules) and pytest.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh test,local,train,ray
# Browser tests drive Debian's headless Chromium through chromedriver.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      chromium chromium-driver >/dev/null
  else
    echo "note: chromium/chromium-driver missing and not root: browser tests will skip" >&2
  fi
fi
scripts/lint.sh
export HF_HUB_OFFLINE=1
.venv/bin/python -m pytest -q "$@"
