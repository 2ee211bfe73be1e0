#!/usr/bin/env bash
# Installs what the tests need, lints (ruff check, ruff format --check, mypy on securealign/crypto), then runs the
# whole suite offline. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
bash scripts/lint.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
