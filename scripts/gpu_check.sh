#!/usr/bin/env bash
# `make gpu-check`: every GPU figure the project needs, in one run of at most 9 minutes
# (benchmarks/gpu_check.py says what it measures and where it writes). On a fresh machine with
# no network: packages it lacks arrive as wheels in .whl/ (scripts/gpu_wheels.sh fetches them
# beforehand) and are installed into /tmp/site. Arguments go to gpu_check.py, e.g.
#   bash scripts/gpu_check.sh --cpu-dry-run        # the CPU-capable steps, small (CI)
#   bash scripts/gpu_check.sh --only env cuda-tests
set -uo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi

SITE=""
DRY=0
for a in "$@"; do [ "$a" = "--cpu-dry-run" ] && DRY=1; done
# The wheels are for the GPU machine's Python 3.12; a dry run uses this machine's own packages.
if [ "$DRY" = 0 ] && compgen -G ".whl/*.whl" > /dev/null; then
  echo "installing $(ls .whl/*.whl | wc -l) carried wheels into /tmp/site"
  if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl; then
    SITE=/tmp/site
  else
    echo "warning: the carried wheels did not install; steps that need them will say so" >&2
  fi
fi
export PYTHONPATH="$PWD${SITE:+:$SITE}${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
exec "$PY" benchmarks/gpu_check.py "$@"
