#!/usr/bin/env bash
# Installs what the demo needs, then starts it (http://127.0.0.1:7860 unless GRADIO_SERVER_* say otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh demo
exec .venv/bin/python app.py
