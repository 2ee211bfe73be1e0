"""The Space's image, replayed without Docker: scripts/replay_space.py carries out the Dockerfile's install and
start as uid 1000 with its own HOME (a fresh venv from the lock, a fresh model cache), and the app must answer
on 0.0.0.0 at the exposed port. Minutes long: it installs and prepares everything from scratch.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


def test_the_dockerfile_installs_and_starts_as_uid_1000() -> None:
    if os.geteuid() != 0:
        pytest.skip("the replay switches to uid 1000, which needs root (CI runs as root)")
    # the scratch root is the script's own (pytest's tmp_path is private to root, so uid 1000 could not enter it)
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts/replay_space.py")], capture_output=True, text=True, timeout=3600
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "the app answered on 0.0.0.0:7860 as uid 1000" in done.stdout
    assert "[replay] RUN bash scripts/install.sh demo packages" in done.stdout
