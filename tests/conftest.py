"""Suite-wide settings: every test runs offline, against the real models and data the packages ship."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from securealign.app_support import app_process

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests leave files worth looking at (screenshots, tables); gitignored."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def launch_app():
    """``launch_app(extra_env=None)``: a context manager running the real demo (``python app.py``) on a free
    loopback port, yielding its URL (see securealign.app_support.app_process)."""
    return app_process.launch_app


@pytest.fixture(scope="session")
def launch_provider():
    """``launch_provider(*serve_args)``: a context manager running ``python -m securealign serve`` on a free
    loopback port, yielding (URL, process) (see securealign.app_support.app_process)."""
    return app_process.launch_provider


@pytest.fixture(scope="session")
def free_port():
    """``free_port()``: a loopback port nothing listens on, for a server a test starts itself."""
    return app_process.free_port


@pytest.fixture(scope="module", autouse=True)
def _release_models_after_module():
    """Let go of the models and pairs a test module loaded, once its own fixtures are torn down: one process runs
    the whole suite, and the Qwen pair with its encrypted head (~14 GB) still held when the browser test starts
    the app (another ~14 GB) exceeded the machine's 24 GB. Only modules already imported are touched, so a module
    that never loaded torch does not import it here."""
    yield
    import gc
    import sys

    pair = sys.modules.get("securealign.generation.pair")
    if pair is not None:
        pair.load_pair.cache_clear()
        pair._held.clear()
    quality = sys.modules.get("securealign.generation.quality")
    if quality is not None:
        quality.compatibility.cache_clear()
    causal_lm = sys.modules.get("securealign.models.causal_lm")
    if causal_lm is not None:
        causal_lm.release_causal_lms()
    gc.collect()
