"""The paper's experiments on our zoo: accuracy transfer through a map in several data regimes, and OOD detection.

Pure functions of embeddings, so the precompute command, the tests and the benchmark share one definition of
each regime and metric.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

from securealign.alignment import AffineMap, fit_map, fit_quality
from securealign.heads import LinearHead, energy_score, fit_head, ood_metrics

# (name, description): which pairs of embeddings the map is fitted on
REGIMES: dict[str, str] = {
    "task": "task-supervised: the task's own training texts",
    "public": "public-only: unlabeled public corpus",
    "public+64": "public corpus + 64 in-distribution training texts",
    "public+128": "public corpus + 128 in-distribution training texts",
}
MAP_KINDS = ("ridge", "lstsq", "procrustes")


@dataclass
class ModelEmbeddings:
    """One model's embeddings of everything an experiment needs (rows aligned across models)."""

    train: np.ndarray
    test: np.ndarray
    ood: np.ndarray
    public: np.ndarray


def regime_pairs(regime: str, source: ModelEmbeddings, target: ModelEmbeddings) -> tuple[np.ndarray, np.ndarray]:
    """The (Z_B, Z_A) pairs a regime fits its map on.

    Few-shot regimes append the first N training texts (the split is already shuffled and stratified) to the
    public corpus, as the paper does; nothing from the test split is ever used.
    """
    if regime == "task":
        return source.train, target.train
    if regime == "public":
        return source.public, target.public
    if regime.startswith("public+"):
        n = int(regime.split("+")[1])
        return np.vstack([source.public, source.train[:n]]), np.vstack([target.public, target.train[:n]])
    raise ValueError(f"unknown regime {regime!r}; valid regimes: {', '.join(REGIMES)}")


def mcnemar_p(native_correct: np.ndarray, mapped_correct: np.ndarray) -> float:
    """Exact McNemar test on the same test texts: is the mapped head right on a different number of texts than the
    native one by more than chance? (Two-sided binomial test on the texts where exactly one of them is right.)"""
    native_only = int(np.sum(native_correct & ~mapped_correct))
    mapped_only = int(np.sum(mapped_correct & ~native_correct))
    if native_only + mapped_only == 0:
        return 1.0
    return float(binomtest(native_only, native_only + mapped_only, 0.5).pvalue)


def transfer_row(head: LinearHead, affine: AffineMap, source: ModelEmbeddings, target: ModelEmbeddings,
                 test_labels: np.ndarray) -> dict[str, float]:
    """Accuracy and OOD detection of the target head on mapped source embeddings, plus held-out fit quality."""
    mapped_test, mapped_ood = affine.apply(source.test), affine.apply(source.ood)
    ood = ood_metrics(energy_score(head.logits(mapped_test)), energy_score(head.logits(mapped_ood)))
    quality = fit_quality(affine, source.test, target.test)
    return {
        "mapped_acc": head.accuracy(mapped_test, test_labels),
        "p_vs_native": mcnemar_p(head.predict(target.test) == test_labels, head.predict(mapped_test) == test_labels),
        "auroc_mapped": ood["auroc"], "fpr95_mapped": ood["fpr95"],
        "r2": quality["r2"], "cosine": quality["cosine"], "top1": quality["top1"], "mean_rank": quality["mean_rank"],
        "lambda": affine.lam,
    }


def native_row(head: LinearHead, target: ModelEmbeddings, test_labels: np.ndarray) -> dict[str, float]:
    """The baseline: the target head on the target's own embeddings."""
    ood = ood_metrics(energy_score(head.logits(target.test)), energy_score(head.logits(target.ood)))
    return {"acc": head.accuracy(target.test, test_labels), "auroc": ood["auroc"], "fpr95": ood["fpr95"]}


def evaluate_pair(task: str, source_key: str, target_key: str, source: ModelEmbeddings, target: ModelEmbeddings,
                  heads: dict[str, LinearHead], labels: tuple[np.ndarray, np.ndarray],
                  regimes: tuple[str, ...] = tuple(REGIMES)) -> tuple[list[dict], dict[str, AffineMap]]:
    """Every regime (ridge) plus the other map kinds in the task regime, for one ordered pair; returns rows and maps."""
    _, test_labels = labels
    base = native_row(heads[target_key], target, test_labels)
    src_native = native_row(heads[source_key], source, test_labels)
    rows, maps = [], {}
    jobs = [(regime, "ridge") for regime in regimes] + [("task", kind) for kind in MAP_KINDS if kind != "ridge"]
    for regime, kind in jobs:
        pairs = regime_pairs(regime, source, target)
        affine = fit_map(kind, *pairs)
        row = {"task": task, "source": source_key, "target": target_key, "regime": regime, "map": kind,
               "pairs": len(pairs[0]),
               "baseline_acc": base["acc"], "source_acc": src_native["acc"],
               "auroc_native": base["auroc"], "fpr95_native": base["fpr95"]}
        row.update(transfer_row(heads[target_key], affine, source, target, test_labels))
        rows.append(row)
        if kind == "ridge":
            maps[regime] = affine
    return rows, maps


def fit_heads(embeddings: dict[str, ModelEmbeddings], train_labels: np.ndarray,
              classes: list[str]) -> dict[str, LinearHead]:
    """Each model's own head on the task's training split (the provider's private labeled data)."""
    return {key: fit_head(emb.train, train_labels, classes) for key, emb in embeddings.items()}
