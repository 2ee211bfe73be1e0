"""Where things live: the user cache, the committed assets, and files shipped inside installed packages.

Model conversions and embedding caches are large and machine-specific, so they go to a cache directory outside
the repository that users (and CI) can move with ``SECUREALIGN_CACHE``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """The writable cache root: ``$SECUREALIGN_CACHE`` or ``~/.cache/securealign`` (created on demand)."""
    root = Path(os.environ.get("SECUREALIGN_CACHE") or Path.home() / ".cache" / "securealign")
    root.mkdir(parents=True, exist_ok=True)
    return root


def assets_dir() -> Path:
    """The committed, precomputed artifacts that let the app start without computing anything."""
    return REPO_ROOT / "assets"


def module_dir(module: str) -> Path:
    """The directory of an installed package, found without importing it.

    Several model packages import heavy or unrelated code in their ``__init__`` (or fail to import at all), so
    their data must be located through the import system's metadata only.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {module!r} is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def distribution_file(distribution: str, suffix: str) -> Path:
    """The file whose recorded path ends with ``suffix`` inside an installed distribution.

    Needed for distributions whose top-level folder is not an importable name (hyphens) and which therefore
    cannot be found with :func:`module_dir`.
    """
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError as err:
        raise FileNotFoundError(f"distribution {distribution!r} is not installed") from err
    for entry in files:
        if str(entry).endswith(suffix):
            path = Path(entry.locate())
            if path.exists():
                return path
    raise FileNotFoundError(f"{suffix!r} not found in distribution {distribution!r}")


def is_distribution_installed(distribution: str) -> bool:
    """Whether pip has installed ``distribution`` (by its PyPI name)."""
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True
