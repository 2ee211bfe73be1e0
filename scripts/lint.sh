#!/usr/bin/env bash
# Lints the code: ruff's rules (E, F, W, I, UP, B) and formatter, and mypy on the crypto package (settings in
# pyproject.toml). Extra arguments go to ruff check (e.g. --fix). Needs scripts/install.sh test.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
.venv/bin/ruff check "$@" . || status=1
.venv/bin/ruff format --check . || status=1
.venv/bin/mypy securealign/crypto || status=1
exit "$status"
