"""`python -m securealign report`: the paper-style tables from the precomputed results.

Table 1: accuracy of the provider's head on the client's mapped embeddings per data regime, beside both models'
native accuracy. Table 2: Energy-score OOD detection, native vs mapped. Table 3: map kinds compared. Then the
similarity matrices.
"""

from __future__ import annotations

import argparse

from securealign.artifacts import load_manifest, load_results, load_similarity


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).rjust(w) if i else str(cell).ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in [header, ["-" * w for w in widths], *rows]]
    return "\n".join(lines)


def accuracy_table(task: str, rows: list[dict], regimes: list[str]) -> str:
    """Table 1 for one task: one line per ordered pair."""
    pairs = sorted({(r["source"], r["target"]) for r in rows if r["task"] == task})
    body = []
    for source, target in pairs:
        by_regime = {r["regime"]: r for r in rows
                     if (r["task"], r["source"], r["target"], r["map"]) == (task, source, target, "ridge")}
        first = next(iter(by_regime.values()))
        body.append([f"{source} -> {target}", f"{100 * first['source_acc']:.1f}", f"{100 * first['baseline_acc']:.1f}",
                     *(f"{100 * by_regime[g]['mapped_acc']:.1f}" for g in regimes)])
    return _table(["client -> provider", "client native", "provider native", *regimes], body)


def ood_table(task: str, rows: list[dict], regimes: list[str]) -> str:
    """Table 2 for one task: AUROC / FPR@95TPR of the Energy score, native vs mapped."""
    body = []
    for r in rows:
        if r["task"] == task and r["map"] == "ridge" and r["regime"] in regimes:
            body.append([f"{r['source']} -> {r['target']}", r["regime"], f"{r['auroc_native']:.3f}",
                         f"{r['auroc_mapped']:.3f}", f"{r['fpr95_native']:.3f}", f"{r['fpr95_mapped']:.3f}"])
    return _table(["client -> provider", "map regime", "AUROC native", "AUROC mapped", "FPR95 native",
                   "FPR95 mapped"], body)


def map_kind_table(task: str, rows: list[dict]) -> str:
    """Table 3 for one task: ridge vs least squares vs Procrustes in the task-supervised regime, with fit quality."""
    body = [[f"{r['source']} -> {r['target']}", r["map"], f"{100 * r['mapped_acc']:.1f}", f"{r['r2']:.3f}",
             f"{r['cosine']:.3f}", f"{r['top1']:.3f}", f"{r['mean_rank']:.1f}"]
            for r in rows if r["task"] == task and r["regime"] == "task"]
    return _table(["client -> provider", "map", "acc", "R2", "cosine", "top-1", "mean rank"], body)


def similarity_table(dataset: str, metric: str) -> str:
    sim = load_similarity(dataset)
    keys, matrix = sim["keys"], sim["matrices"][metric]
    return _table([metric, *keys], [[k, *(f"{v:.3f}" for v in row)] for k, row in zip(keys, matrix)])


def render(tasks: list[str] | None = None, show_map_kinds: bool = True) -> str:
    """The whole report as text."""
    manifest, rows = load_manifest(), load_results()
    regimes = manifest["regimes"]
    parts = [f"securealign results ({manifest['created']}; public corpus {manifest['public_texts']} texts, "
             f"OOD {manifest['ood_texts']} texts; demo regime {manifest['demo_regime']})"]
    for task in tasks or manifest["tasks"]:
        title = manifest["task_titles"][task]
        parts += [f"\nTable 1 - {title}: accuracy (%) of the provider's head", accuracy_table(task, rows, regimes)]
        parts += [f"\nTable 2 - {title}: Energy-score OOD detection", ood_table(task, rows, ["task", manifest["demo_regime"]])]
        if show_map_kinds:
            parts += [f"\nTable 3 - {title}: map kinds (task-supervised), held-out fit quality", map_kind_table(task, rows)]
    for dataset in manifest["similarity_datasets"]:
        for metric in manifest["similarity_metrics"]:
            parts += [f"\nSimilarity on {dataset}: {metric}", similarity_table(dataset, metric)]
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    """Print the report."""
    parser = argparse.ArgumentParser(prog="python -m securealign report", description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", help="only these tasks")
    parser.add_argument("--no-map-kinds", action="store_true", help="omit Table 3")
    args = parser.parse_args(argv)
    print(render(args.tasks, not args.no_map_kinds))
    return 0
