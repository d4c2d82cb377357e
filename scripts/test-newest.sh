#!/usr/bin/env bash
# make test-newest: tsnative built against the newest torch release (requirements-newest.txt) in
# a virtualenv of its own (.venv-newest, build tree build/newest), then the tests that follow
# torch's own behaviour from release to release: export (its warnings, torch.export), the
# errors and messages that carry LibTorch's words, ts-infer, AOTInductor packages and ONNX.
# The whole suite runs on torch 2.13 (make test) and 2.14.1 with torchvision (make test-compat).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv-newest
[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
export VIRTUAL_ENV="$PWD/$venv" PATH="$PWD/$venv/bin:$PATH"
# The machine may cap torch below the newest release: that cap is not this environment's.
export PIP_CONSTRAINT=/dev/null
python -m pip install -q --disable-pip-version-check -r requirements-newest.txt
SKBUILD_BUILD_DIR=build/newest python -m pip install -q --disable-pip-version-check \
  --no-build-isolation --no-deps .
python -c 'import torch, tsnative; print(f"make test-newest: torch {torch.__version__}, tsnative {tsnative.__version__}")'
python -m pytest "$@"
