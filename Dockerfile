# securealign's demo as a Hugging Face Space (Docker SDK): the app listens on 0.0.0.0:7860.
# Installation is scripts/install.sh, the same script the README's set-up runs, so the image and a local checkout
# are prepared identically; here its three steps run in separate layers, cheapest to change last.
# tests/test_space_image.py replays this file (install and start as uid 1000 with its own HOME) without Docker.
FROM python:3.11-slim

# Spaces run the container as uid 1000; everything (venv, model cache) lives in that user's home
RUN useradd --create-home --uid 1000 user
USER 1000
ENV HOME=/home/user \
    SECUREALIGN_CACHE=/home/user/.cache/securealign \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    PYTHON=/usr/local/bin/python3.11 \
    PYTHONUNBUFFERED=1 \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    GRADIO_ANALYTICS_ENABLED=False \
    PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
# torch is pinned to 2.13.0 (pyproject.toml) and locked to its CPU build, torch==2.13.0+cpu (requirements.lock):
# PyPI's torch for x86_64 is the multi-GB CUDA build, so the CPU build comes from PyTorch's CPU index
WORKDIR /home/user/app

# 1. the locked packages (several GB): invalidated only by a change of the lock
COPY --chown=user requirements.lock ./
COPY --chown=user scripts/install.sh scripts/
RUN bash scripts/install.sh demo packages

# 2. the one-time model preparation: needs only the modules that load models
COPY --chown=user securealign/__init__.py securealign/__main__.py securealign/cli.py securealign/paths.py securealign/
COPY --chown=user securealign/models/__init__.py securealign/models/setup.py securealign/models/zoo.py \
     securealign/models/encoders.py securealign/models/causal_lm.py securealign/models/
RUN bash scripts/install.sh demo models

# 3. the code (a code change rebuilds only this small layer)
COPY --chown=user . .
RUN bash scripts/install.sh demo project
EXPOSE 7860
CMD ["/home/user/app/.venv/bin/python", "app.py"]
