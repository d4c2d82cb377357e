#!/usr/bin/env bash
# make test-compat: a user's install into their own environment, followed to the letter. Runs
# the lines of README.md's install-steps block as written, in the virtualenv .venv-compat (with
# PyPI's CUDA torch, as that block installs), checks that no step after the first replaced the
# torch it installed, then runs the pytest suite there.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv-compat
needed_gb=10  # the CUDA wheels take 5.5 GB, the build and the test files the rest

if [ ! -x "$venv/bin/python" ]; then
  free_gb=$(df -Pk . | awk 'NR == 2 { print int($4 / 1048576) }')
  if [ "$free_gb" -lt "$needed_gb" ]; then
    # A leg that cannot run fails: CI passing without torchvision's models would say nothing.
    echo "make test-compat: cannot run: ${free_gb} GB of disk free, the CUDA torch" \
      "environment needs ${needed_gb} GB" >&2
    exit 1
  fi
  "${PYTHON:-python3}" -m venv "$venv"
fi
# What `source $venv/bin/activate` does, for the lines below.
export VIRTUAL_ENV="$PWD/$venv" PATH="$PWD/$venv/bin:$PATH"
# Its own build tree: build/python belongs to make test's environment.
export SKBUILD_BUILD_DIR=build/compat

steps=$(awk '/<!-- install-steps/ { marked = 1; next }
             marked && /^```/ { if (inside) exit; inside = 1; next }
             inside' README.md)
if [ -z "$steps" ]; then
  echo "make test-compat: README.md has no install-steps block" >&2
  exit 1
fi

torch_version() { python -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null || true; }

installed_torch=""
while IFS= read -r line; do
  echo "+ $line"
  bash -euo pipefail -c "$line"
  now=$(torch_version)
  if [ -n "$installed_torch" ] && [ "$now" != "$installed_torch" ]; then
    echo "make test-compat: '$line' replaced torch $installed_torch with ${now:-nothing}" >&2
    exit 1
  fi
  installed_torch=$now
done <<<"$steps"

python -m pip install -q -r requirements-test.txt
if [ "$(torch_version)" != "$installed_torch" ]; then
  echo "make test-compat: installing the test requirements replaced torch $installed_torch" >&2
  exit 1
fi
python - <<'PY'
import torch, tsnative
import torchvision
print(f"make test-compat: torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"torchvision {torchvision.__version__}, tsnative {tsnative.__version__}")
PY
python -m pytest "$@"
