#!/usr/bin/env bash
# Lint: ruff on the whole tree, the import rules of pyproject.toml [tool.importlinter]
# (layers, langgraph only in robustft.graph, no import cycles) checked by import-linter on the
# package as it installs (agents/, graph/ and prompts/ under robustft/), then the documentation
# site built with `mkdocs build --strict` (a broken link or a page outside the nav fails).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
.venv/bin/ruff check .
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
.venv/bin/python -m pip install -q --no-deps --no-build-isolation --no-compile \
    --target "$tree" "$root" 2>&1 | grep -v "^WARNING: Location" || true
(cd "$tree" && "$root/.venv/bin/lint-imports" "$root/pyproject.toml" --no-cache)
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir "$tree/site"
