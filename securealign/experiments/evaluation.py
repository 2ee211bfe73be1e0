"""The paper's experiments on our zoo: accuracy transfer through a map in several data regimes, and OOD detection.

Pure functions of embeddings, so the precompute command, the tests and the benchmark share one definition of
each regime and metric.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from securealign.alignment import AffineMap, fit_map, fit_quality, fit_ridge
from securealign.heads import LinearHead, energy_score, fit_head, ood_metrics

# (name, description): which pairs of embeddings the map is fitted on
REGIMES: dict[str, str] = {
    "task": "task-supervised: the task's own training texts",
    "public": "public-only: unlabeled public corpus",
    "public+64": "public corpus + 64 in-distribution training texts",
    "public+128": "public corpus + 128 in-distribution training texts",
}
MAP_KINDS = ("ridge", "lstsq", "procrustes")
# What the map must beat, measured on the same in-distribution texts a regime's map is fitted on
BASELINES: dict[str, str] = {
    "probe_distilled": "the client's own probe on the regime's N in-distribution texts, labelled by the provider's "
    "head (costs the provider N revealed labels)",
    "probe_true": "the client's own probe on the same N texts with their true labels",
    "shuffled": "the regime's map fitted on shuffled pairs (the floor: a map that learned nothing)",
}


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
    n = in_distribution_count(regime, len(source.train))
    if regime == "task":
        return source.train, target.train
    return np.vstack([source.public, source.train[:n]]), np.vstack([target.public, target.train[:n]])


def in_distribution_count(regime: str, n_train: int) -> int:
    """How many of the task's training texts a regime's map is fitted on (0 for public-only)."""
    if regime == "task":
        return n_train
    if regime == "public":
        return 0
    if regime.startswith("public+"):
        return int(regime.split("+")[1])
    raise ValueError(f"unknown regime {regime!r}; valid regimes: {', '.join(REGIMES)}")


def probe_accuracy(Z_train: np.ndarray, y_train: np.ndarray, Z_test: np.ndarray, y_test: np.ndarray) -> float:
    """Test accuracy of a logistic probe (the heads' own settings) trained on few texts; a class the few labels
    miss is simply never predicted, and a single seen class is predicted for every text."""
    seen = np.unique(y_train)
    if len(seen) == 1:
        return float(np.mean(np.asarray(y_test) == seen[0]))
    model = LogisticRegression(C=1.0, max_iter=3000).fit(np.asarray(Z_train, dtype=np.float64), y_train)
    return float(np.mean(model.predict(np.asarray(Z_test, dtype=np.float64)) == y_test))


def baseline_row(
    regime: str,
    affine: AffineMap,
    heads: tuple[LinearHead, LinearHead],
    source: ModelEmbeddings,
    target: ModelEmbeddings,
    labels: tuple[np.ndarray, np.ndarray],
    seed: int = 0,
) -> dict[str, float | None]:
    """The regime's baselines (see ``BASELINES``) beside its fitted ridge map ``affine``; ``heads`` are the source's
    and the target's own. Probes are None where the regime has no in-distribution text; on the whole training split
    the true-label probe is the source's own head. The shuffled map keeps the real map's lambda: validation on
    shuffled pairs would only pick the largest value, and the floor should differ from the map in the pairing alone."""
    train_labels, test_labels = labels
    source_head, head = heads
    n = in_distribution_count(regime, len(train_labels))
    rng = np.random.default_rng(seed)
    Zb, Za = regime_pairs(regime, source, target)
    shuffled = fit_ridge(Zb, Za[rng.permutation(len(Za))], relative_lambda=affine.lam)
    row: dict[str, float | None] = {
        "n_in_distribution": n,
        "labels_revealed": n,
        "shuffled_acc": head.accuracy(shuffled.apply(source.test), test_labels),
    }
    if n == 0:
        return row | {"probe_distilled_acc": None, "probe_true_acc": None}
    distilled = head.predict(target.train[:n])
    true = (
        source_head.accuracy(source.test, test_labels)
        if n == len(train_labels)
        else probe_accuracy(source.train[:n], train_labels[:n], source.test, test_labels)
    )
    return row | {
        "probe_distilled_acc": probe_accuracy(source.train[:n], distilled, source.test, test_labels),
        "probe_true_acc": true,
    }


def reseeded(
    embeddings: dict[str, ModelEmbeddings],
    labels: tuple[np.ndarray, np.ndarray],
    public_pool: dict[str, np.ndarray],
    n_public: int,
    seed: int,
) -> tuple[dict[str, ModelEmbeddings], tuple[np.ndarray, np.ndarray]]:
    """Another draw of everything a run depends on: a new stratified train/test split of the same labeled texts
    (same sizes), a new public subset of ``n_public`` texts from the pool, and with the new train order new
    few-shot texts. Seed 0 is the committed run: the fixed split and the pool's first ``n_public`` texts."""
    if seed == 0:
        return {
            k: ModelEmbeddings(e.train, e.test, e.ood, public_pool[k][:n_public]) for k, e in embeddings.items()
        }, labels
    train_labels, test_labels = labels
    y = np.concatenate([train_labels, test_labels])
    train_idx, test_idx = train_test_split(
        np.arange(len(y)), train_size=len(train_labels), stratify=y, random_state=seed
    )
    public_idx = np.random.default_rng(seed).choice(len(next(iter(public_pool.values()))), n_public, replace=False)
    out = {}
    for key, e in embeddings.items():
        rows = np.vstack([e.train, e.test])
        out[key] = ModelEmbeddings(rows[train_idx], rows[test_idx], e.ood, public_pool[key][public_idx])
    return out, (y[train_idx], y[test_idx])


def mcnemar_p(native_correct: np.ndarray, mapped_correct: np.ndarray) -> float:
    """Exact McNemar test on the same test texts: is the mapped head right on a different number of texts than the
    native one by more than chance? (Two-sided binomial test on the texts where exactly one of them is right.)"""
    native_only = int(np.sum(native_correct & ~mapped_correct))
    mapped_only = int(np.sum(mapped_correct & ~native_correct))
    if native_only + mapped_only == 0:
        return 1.0
    return float(binomtest(native_only, native_only + mapped_only, 0.5).pvalue)


def transfer_row(
    head: LinearHead, affine: AffineMap, source: ModelEmbeddings, target: ModelEmbeddings, test_labels: np.ndarray
) -> dict[str, float]:
    """Accuracy and OOD detection of the target head on mapped source embeddings, plus held-out fit quality."""
    mapped_test, mapped_ood = affine.apply(source.test), affine.apply(source.ood)
    ood = ood_metrics(energy_score(head.logits(mapped_test)), energy_score(head.logits(mapped_ood)))
    quality = fit_quality(affine, source.test, target.test)
    return {
        "mapped_acc": head.accuracy(mapped_test, test_labels),
        "p_vs_native": mcnemar_p(head.predict(target.test) == test_labels, head.predict(mapped_test) == test_labels),
        "auroc_mapped": ood["auroc"],
        "fpr95_mapped": ood["fpr95"],
        "r2": quality["r2"],
        "cosine": quality["cosine"],
        "top1": quality["top1"],
        "mean_rank": quality["mean_rank"],
        "lambda": affine.lam,
    }


def native_row(head: LinearHead, target: ModelEmbeddings, test_labels: np.ndarray) -> dict[str, float]:
    """The baseline: the target head on the target's own embeddings."""
    ood = ood_metrics(energy_score(head.logits(target.test)), energy_score(head.logits(target.ood)))
    return {"acc": head.accuracy(target.test, test_labels), "auroc": ood["auroc"], "fpr95": ood["fpr95"]}


def evaluate_pair(
    task: str,
    source_key: str,
    target_key: str,
    source: ModelEmbeddings,
    target: ModelEmbeddings,
    heads: dict[str, LinearHead],
    labels: tuple[np.ndarray, np.ndarray],
    regimes: tuple[str, ...] = tuple(REGIMES),
    map_kinds: tuple[str, ...] = MAP_KINDS,
    seed: int = 0,
) -> tuple[list[dict], dict[str, AffineMap]]:
    """Every regime (ridge, with its baselines) plus the other map kinds in the task regime, for one ordered pair;
    returns rows and the ridge maps."""
    _, test_labels = labels
    base = native_row(heads[target_key], target, test_labels)
    src_native = native_row(heads[source_key], source, test_labels)
    rows, maps = [], {}
    jobs = [(regime, "ridge") for regime in regimes] + [("task", kind) for kind in map_kinds if kind != "ridge"]
    for regime, kind in jobs:
        pairs = regime_pairs(regime, source, target)
        affine = fit_map(kind, *pairs)
        row = {
            "task": task,
            "source": source_key,
            "target": target_key,
            "regime": regime,
            "map": kind,
            "pairs": len(pairs[0]),
            "baseline_acc": base["acc"],
            "source_acc": src_native["acc"],
            "auroc_native": base["auroc"],
            "fpr95_native": base["fpr95"],
        }
        row.update(transfer_row(heads[target_key], affine, source, target, test_labels))
        if kind == "ridge":
            row.update(
                baseline_row(regime, affine, (heads[source_key], heads[target_key]), source, target, labels, seed)
            )
            maps[regime] = affine
        rows.append(row)
    return rows, maps


def fit_heads(
    embeddings: dict[str, ModelEmbeddings], train_labels: np.ndarray, classes: list[str]
) -> dict[str, LinearHead]:
    """Each model's own head on the task's training split (the provider's private labeled data)."""
    return {key: fit_head(emb.train, train_labels, classes) for key, emb in embeddings.items()}
