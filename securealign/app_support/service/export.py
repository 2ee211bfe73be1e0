"""The exported report: one self-contained HTML page per export."""

from __future__ import annotations

import tempfile
from pathlib import Path


def export_html(html: str, stem: str = "securealign-comparison") -> Path:
    """Write a self-contained report page to a fresh temporary file (one per export, so sessions never clash)."""
    folder = Path(tempfile.mkdtemp(prefix="securealign-export-"))
    path = folder / f"{stem}.html"
    path.write_text(html, encoding="utf-8")
    return path
