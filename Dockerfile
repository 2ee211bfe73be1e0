# securealign's demo as a Hugging Face Space (Docker SDK): the app listens on 0.0.0.0:7860.
# Installation (packages, model weights, one-time model conversion) is scripts/install.sh, the same step the
# README's set-up runs, so the image and a local checkout are prepared identically.
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
# PyPI's torch 2.13.0 for x86_64 is the CUDA build (several GB); PyTorch's CPU index offers 2.13.0+cpu, which
# satisfies the pinned torch==2.13.0 and is preferred by pip, so the image carries the CPU build a Space runs
WORKDIR /home/user/app

# dependencies and models first, so a code-only change reuses this (large) layer
COPY --chown=user requirements.txt requirements-nodeps.txt requirements-test.txt pyproject.toml ./
COPY --chown=user scripts/ scripts/
COPY --chown=user securealign/ securealign/
RUN bash scripts/install.sh demo

COPY --chown=user . .
EXPOSE 7860
CMD ["/home/user/app/.venv/bin/python", "app.py"]
