"""Reading the precomputed artifacts in ``assets/`` (written by ``python -m securealign precompute``).

The app starts from these so its first page needs no model: similarity matrices, result tables, the provider's
heads, the demo regime's maps and the Energy scores behind the OOD histograms.

Layout (all small enough to commit; the manifest says which encoders, tasks and regimes were run)::

    assets/manifest.json                             what was run, subset sizes, the demo regime, total bytes
    assets/results.json                              one row per (task, source, target, regime, map kind)
    assets/seeds.json                                compact ridge rows per seed (split, public subset, few-shot draw)
    assets/examples.json                             per task, held-out example queries with their labels
    assets/similarity/<dataset>.json                 N x N matrices per metric on one shared text set
    assets/heads/<task>/<target>.npz                 LinearHead (V, c, classes), float32
    assets/maps/<regime>/<task>/<source>__<target>.npz   ridge AffineMap, float16 (only ``map_regimes``)
    assets/ood/<task>/<source>__<target>.npz         Energy scores, native and mapped, in- and out-of-distribution
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
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


@functools.cache
def load_manifest() -> dict:
    """What was precomputed: encoders, tasks, regimes, the demo regime, similarity datasets and metrics, sizes."""
    return json.loads(_path("manifest.json").read_text())


@functools.cache
@functools.cache
def load_examples() -> dict[str, list[tuple[str, str]]]:
    """Per task, the example queries and their labels (``datasets.example_queries``): the first page shows them
    without loading and splitting a dataset."""
    rows = json.loads(_path("examples.json").read_text())
    return {task: [(text, label) for text, label in pairs] for task, pairs in rows.items()}


def load_similarity(dataset: str) -> dict:
    """``{"keys": [...], "n_texts": int, "matrices": {metric: N x N list}}`` for one text set."""
    if dataset not in load_manifest()["similarity_datasets"]:
        raise MissingArtifactError(
            f"no similarity for {dataset!r}; available: {load_manifest()['similarity_datasets']}"
        )
    return json.loads(_path("similarity", f"{dataset}.json").read_text())


PREDICTOR_STUDY = ("generation", "predictor_study.json")  # written by benchmarks/predictor_study.py study


def load_predictor_study() -> dict | None:
    """The predictor study over every ordered causal pair (securealign/experiments/predictor_study.py), or None
    before it has been run."""
    path = assets_dir().joinpath(*PREDICTOR_STUDY)
    return json.loads(path.read_text()) if path.exists() else None


@functools.cache
def load_results() -> list[dict]:
    """Every (task, source, target, regime, map kind) row: accuracies, OOD metrics and fit quality."""
    return json.loads(_path("results.json").read_text())


@functools.cache
def load_seed_results() -> list[dict]:
    """Every (task, source, target, regime, seed) row of the ridge maps with their baselines, seed 0 included."""
    return json.loads(_path("seeds.json").read_text())


@functools.cache
def load_map(task: str, source: str, target: str, regime: str | None = None) -> AffineMap:
    """The ridge map from ``source`` into ``target`` fitted for ``task`` in ``regime`` (default: the demo regime).

    Only the regimes in the manifest's ``map_regimes`` are stored (size); other regimes raise with the list.
    """
    stored = load_manifest()["map_regimes"]
    regime = regime or load_manifest()["demo_regime"]
    if regime not in stored:
        raise MissingArtifactError(f"maps are stored only for regimes {stored}, not {regime!r}")
    return AffineMap.load(_path("maps", regime, task, f"{source}__{target}.npz"))


@functools.cache
def load_head(task: str, target: str) -> LinearHead:
    """The provider's head for ``task`` on ``target`` embeddings."""
    return LinearHead.load(_path("heads", task, f"{target}.npz"))


def pairs() -> list[tuple[str, str]]:
    """Every ordered (client, provider) pair the assets hold rows, a map and OOD scores for: every pair of the
    sentence encoders, and those of the models added later with the partners they were run with (``precompute
    --add``), so not necessarily every pair of ``encoders``."""
    return [(source, target) for source, target in load_manifest()["pairs"]]


def served_model_id(task: str, source: str, target: str) -> str:
    """The id under which a provider serves ``target``'s head for ``task`` with the map from ``source``."""
    return f"{task}:{source}->{target}"


def demo_models() -> Iterator[tuple[str, LinearHead, AffineMap]]:
    """Every (model id, head, demo-regime map) the assets hold: what a provider serves for the app's pairs."""
    for task in load_manifest()["tasks"]:
        for source, target in pairs():
            yield served_model_id(task, source, target), load_head(task, target), load_map(task, source, target)


def load_ood_scores(task: str, source: str, target: str) -> dict[str, np.ndarray]:
    """Energy scores for the OOD histograms, each a 1-D array (float16 on disk).

    ``native_in``/``native_out``: the target head on the target's own embeddings of the task's test texts and of
    the OOD texts; ``mapped_in``/``mapped_out``: the same head on source embeddings through the demo regime's map.
    """
    with np.load(_path("ood", task, f"{source}__{target}.npz")) as data:
        return {name: data[name].astype(np.float64) for name in data.files}
