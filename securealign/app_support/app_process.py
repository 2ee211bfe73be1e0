"""The demo (``python app.py``) and the provider (``python -m securealign serve``) as subprocesses on a free
loopback port: how the API, browser and protocol tests and the start-up benchmark meet them.

A subprocess rather than ``launch()`` in the caller's process: the app then starts exactly as a user starts it
(its own environment, its own model cache), and stopping it frees the models' memory.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import httpx

from securealign.paths import REPO_ROOT

CHROMIUM = "/usr/bin/chromium"  # Debian's package (scripts/install.sh test); a browser is never downloaded
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_TIMEOUT_S = 180  # generous: CI shares 2 cores with model conversion and other suites
POLL_S = 0.1  # how often a starting process is asked whether it answers: the start-up benchmark's resolution


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def launch_app(extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """Run app.py until the block exits; yields its URL once the first page answers."""
    port = free_port()
    env = {
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        **(extra_env or {}),
    }
    with _answering([str(REPO_ROOT / "app.py")], f"http://127.0.0.1:{port}/", env) as (url, _):
        yield url


@contextlib.contextmanager
def launch_provider(*args: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``python -m securealign serve ARGS`` until the block exits; yields its URL and process once /health
    answers (the process, so that a test can measure or stop it)."""
    port = free_port()
    command = ["-m", "securealign", "serve", "--port", str(port), *args]
    with _answering(command, f"http://127.0.0.1:{port}", {}, health="/health") as started:
        yield started


@contextlib.contextmanager
def _answering(
    command: list[str], url: str, extra_env: dict[str, str], health: str = ""
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``python COMMAND`` offline, wait until ``url + health`` answers 200, stop it when the block exits."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **extra_env}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, *command], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(
                        f"{' '.join(command)} exited with {proc.returncode}:\n{log.read().decode()[-3000:]}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url + health, timeout=5).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{' '.join(command)} did not answer on {url} within {START_TIMEOUT_S} s")
                time.sleep(POLL_S)
            yield url, proc
        finally:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
