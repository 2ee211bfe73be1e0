"""The precomputed results as the page shows them: similarity matrices, map quality per pair, the results
table, the guided story's numbers and the OOD comparison (all read from the committed assets, no model).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from securealign.app_support.service.checks import check_choice
from securealign.app_support.service.choices import METRIC_LABELS, catalogue, check_pair, check_task, model_name
from securealign.datasets import TASKS
from securealign.experiments import artifacts

FIT_MEASURES = {
    "r2": "held-out R² of the map",
    "cosine": "mean cosine to the true target embedding",
    "top1": "top-1 retrieval of the true target",
    "mapped_acc": "provider head accuracy on mapped embeddings",
    "retained": "accuracy retained (mapped / provider native)",
}


def similarity(dataset: str, metric: str) -> dict:
    """One precomputed N x N similarity matrix with display labels."""
    cat = catalogue()
    check_choice("dataset", dataset, [d for _, d in cat["similarity_datasets"]])
    check_choice("metric", metric, [m for _, m in cat["similarity_metrics"]])
    sim = artifacts.load_similarity(dataset)
    return {
        "keys": sim["keys"],
        "labels": [model_name(k) for k in sim["keys"]],
        "dataset_label": {d: label for label, d in cat["similarity_datasets"]}[dataset],
        "metric_label": METRIC_LABELS.get(metric, metric),
        "matrix": np.asarray(sim["matrices"][metric], dtype=float),
        "n_texts": sim["n_texts"],
    }


def ridge_rows(task: str, regime: str) -> list[dict]:
    return [r for r in artifacts.load_results() if r["task"] == task and r["regime"] == regime and r["map"] == "ridge"]


def map_quality_matrix(task: str, regime: str, measure: str) -> dict:
    """Per ordered pair (row: client, column: provider), one fit-quality measure of the ridge map; NaN on the
    diagonal, where no map is fitted."""
    cat = catalogue()
    check_task(task)
    check_choice("regime", regime, [r for _, r in cat["regimes"]])
    check_choice("measure", measure, list(FIT_MEASURES))
    keys = [k for _, k in cat["encoders"]]
    matrix = np.full((len(keys), len(keys)), np.nan)
    for row in ridge_rows(task, regime):
        value = row["mapped_acc"] / row["baseline_acc"] if measure == "retained" else row[measure]
        matrix[keys.index(row["source"]), keys.index(row["target"])] = value
    return {"keys": keys, "labels": [model_name(k) for k in keys], "matrix": matrix}


RESULT_COLUMNS = {
    "source": "client model",
    "target": "provider model",
    "regime": "map fitted on",
    "map": "map",
    "source_acc": "client native acc (%)",
    "baseline_acc": "provider native acc (%)",
    "mapped_acc": "mapped acc (%)",
    "probe_distilled_acc": "client probe, provider's labels (%)",
    "probe_true_acc": "client probe, true labels (%)",
    "shuffled_acc": "shuffled-pair map (%)",
    "p_vs_native": "McNemar p (mapped vs native)",
    "auroc_native": "OOD AUROC native",
    "auroc_mapped": "OOD AUROC mapped",
    "r2": "map R²",
    "top1": "top-1 retrieval (%)",
}
BASELINE_COLUMNS = ("probe_distilled_acc", "probe_true_acc", "shuffled_acc")
REGIME_SHORT = {
    "task": "task texts",
    "public": "public only",
    "public+64": "public + 64 task texts",
    "public+128": "public + 128 task texts",
}
PERCENT_COLUMNS = ("source_acc", "baseline_acc", "mapped_acc", "top1", *BASELINE_COLUMNS)


def results_table(task: str, regime: str | None = None) -> pd.DataFrame:
    """The precomputed rows of one task (optionally one regime) as people read them: display names, accuracies
    in percent, two decimals, p-values with two significant digits (numbers stay numbers, so columns sort)."""
    check_task(task)
    if regime is not None:
        check_choice("regime", regime, [r for _, r in catalogue()["regimes"]])
    # the baselines on the same texts (seed 0 of seeds.json; empty where the seeds do not cover the pair)
    baselines = {
        (r["source"], r["target"], r["regime"]): r
        for r in artifacts.load_seed_results()
        if r["task"] == task and r["seed"] == 0
    }
    rows = []
    for r in artifacts.load_results():
        if r["task"] == task and regime in (None, r["regime"]):
            same = baselines.get((r["source"], r["target"], r["regime"])) if r["map"] == "ridge" else None
            rows.append({**{k: (same or {}).get(k) for k in BASELINE_COLUMNS}, **r})
    frame = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    for column in PERCENT_COLUMNS:
        frame[column] = (100 * frame[column]).round(1)
    frame = frame.round({c: 2 for c in RESULT_COLUMNS if c not in PERCENT_COLUMNS + ("p_vs_native",)})
    frame["p_vs_native"] = frame["p_vs_native"].map(lambda p: float(f"{p:.2g}"))  # two significant digits, sortable
    frame["regime"] = frame["regime"].map(lambda r: REGIME_SHORT.get(r, r))
    frame["source"] = frame["source"].map(model_name)
    frame["target"] = frame["target"].map(model_name)
    return frame.rename(columns=RESULT_COLUMNS)


def pair_summary(task: str, source: str, target: str) -> dict:
    """The numbers the guided story quotes for one pair: how alike the two models are on public text (linear CKA,
    beside the range over all pairs) and what the demo regime's map keeps of the provider's accuracy."""
    check_task(task)
    check_pair(source, target)
    sim = similarity("public", "cka")
    i, j = sim["keys"].index(source), sim["keys"].index(target)
    off_diagonal = sim["matrix"][~np.eye(len(sim["keys"]), dtype=bool)]
    regime = catalogue()["demo_regime"]
    row = next(r for r in ridge_rows(task, regime) if (r["source"], r["target"]) == (source, target))
    return {
        "cka": float(sim["matrix"][i, j]),
        "cka_min": float(off_diagonal.min()),
        "cka_max": float(off_diagonal.max()),
        "n_texts": sim["n_texts"],
        "regime": regime,
        "regime_label": artifacts.load_manifest()["regime_descriptions"][regime],
        "task_title": {t: title for title, t in catalogue()["tasks"]}[task],
        "source_acc": row["source_acc"],
        "provider_acc": row["baseline_acc"],
        "mapped_acc": row["mapped_acc"],
        "retained": row["mapped_acc"] / row["baseline_acc"],
        "p_vs_native": row["p_vs_native"],
    }


def ood_comparison(task: str, source: str, target: str) -> dict:
    """Energy scores in- and out-of-distribution, native (provider model) vs mapped (client model through the
    demo regime's map), with the precomputed AUROC and FPR@95TPR."""
    check_task(task)
    check_pair(source, target)
    regime = catalogue()["demo_regime"]
    row = next(r for r in ridge_rows(task, regime) if r["source"] == source and r["target"] == target)
    task_titles = {t: title for title, t in catalogue()["tasks"]}
    ood_task = TASKS[task].ood_name
    return {
        "scores": artifacts.load_ood_scores(task, source, target),
        "metrics": {
            "native": {"auroc": row["auroc_native"], "fpr95": row["fpr95_native"]},
            "mapped": {"auroc": row["auroc_mapped"], "fpr95": row["fpr95_mapped"]},
        },
        "in_name": task_titles.get(task, task),
        "out_name": task_titles.get(ood_task, ood_task),
        "regime": regime,
    }
