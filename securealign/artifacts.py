"""Reading the precomputed artifacts in ``assets/`` (written by ``python -m securealign precompute``).

The app starts from these so its first page needs no model: similarity matrices, result tables, the provider's
heads, the demo regime's maps and the Energy scores behind the OOD histograms.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from securealign.alignment import AffineMap
from securealign.heads import LinearHead
from securealign.paths import assets_dir


class MissingArtifactError(FileNotFoundError):
    """An artifact that precompute has not written (or a combination it does not cover)."""


def _path(*parts: str) -> Path:
    path = assets_dir().joinpath(*parts)
    if not path.exists():
        raise MissingArtifactError(f"no precomputed artifact {'/'.join(parts)}; run `python -m securealign precompute`")
    return path


@functools.lru_cache(maxsize=None)
def load_manifest() -> dict:
    """What was precomputed: encoders, tasks, regimes, the demo regime, similarity datasets and metrics, sizes."""
    return json.loads(_path("manifest.json").read_text())


@functools.lru_cache(maxsize=None)
def load_similarity(dataset: str) -> dict:
    """``{"keys": [...], "n_texts": int, "matrices": {metric: N x N list}}`` for one text set."""
    if dataset not in load_manifest()["similarity_datasets"]:
        raise MissingArtifactError(f"no similarity for {dataset!r}; available: {load_manifest()['similarity_datasets']}")
    return json.loads(_path("similarity", f"{dataset}.json").read_text())


@functools.lru_cache(maxsize=None)
def load_results() -> list[dict]:
    """Every (task, source, target, regime, map kind) row: accuracies, OOD metrics and fit quality."""
    return json.loads(_path("results.json").read_text())


def load_map(task: str, source: str, target: str) -> AffineMap:
    """The demo regime's ridge map from ``source`` into ``target`` for ``task``."""
    return AffineMap.load(_path("maps", task, f"{source}__{target}.npz"))


def load_head(task: str, target: str) -> LinearHead:
    """The provider's head for ``task`` on ``target`` embeddings."""
    return LinearHead.load(_path("heads", task, f"{target}.npz"))


def load_ood_scores(task: str, source: str, target: str) -> dict[str, np.ndarray]:
    """Energy scores (demo regime): ``native_in``/``native_out`` on target embeddings, ``mapped_in``/``mapped_out``."""
    with np.load(_path("ood", task, f"{source}__{target}.npz")) as data:
        return {name: data[name].astype(np.float64) for name in data.files}
