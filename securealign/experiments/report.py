"""`python -m securealign report`: the paper-style tables from the precomputed results.

Table 1: accuracy of the provider's head on the client's mapped embeddings per data regime, beside both models'
native accuracy. Table 1b: the same regimes over seeds, beside the baselines the map must beat. Table 2: Energy-score
OOD detection, native vs mapped, per regime over seeds. Table 3: map kinds compared. Then the similarity matrices,
with linear CKA set beside the paper's range.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import binomtest
from scipy.stats import t as student_t

from securealign.experiments.artifacts import (
    load_manifest,
    load_predictor_study,
    load_results,
    load_seed_results,
    load_similarity,
)
from securealign.experiments.evaluation import in_distribution_count
from securealign.models.zoo import get_spec

# The paper's linear CKA between embedding APIs (Gorbett and Jana, 2026), for the side-by-side line
PAPER_CKA = (0.595, 0.881)


# Pairs are summarised by what the two models are, so adding causal LMs leaves the sentence encoders' means as they
# were and the paper's LLM-to-LLM setting gets means of its own
PAIR_GROUPS = {
    ("encoder", "encoder"): "sentence encoders",
    ("encoder", "causal"): "sentence encoder -> causal LM",
    ("causal", "encoder"): "causal LM -> sentence encoder",
    ("causal", "causal"): "LLM-to-LLM (causal LMs, mean-pooled)",
}


def pair_group(source: str, target: str) -> str:
    """Which of ``PAIR_GROUPS`` an ordered pair belongs to, from the zoo's kinds."""
    return PAIR_GROUPS[(get_spec(source).kind, get_spec(target).kind)]


def grouped(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows by pair group, in ``PAIR_GROUPS`` order, groups without rows left out."""
    out: dict[str, list[dict]] = {group: [] for group in PAIR_GROUPS.values()}
    for r in rows:
        out[pair_group(r["source"], r["target"])].append(r)
    return {group: group_rows for group, group_rows in out.items() if group_rows}


def _pairs_of(rows: list[dict]) -> int:
    return len({(r["source"], r["target"]) for r in rows})


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            str(cell).rjust(w) if i else str(cell).ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=False))
        )
        for row in [header, ["-" * w for w in widths], *rows]
    ]
    return "\n".join(lines)


def accuracy_table(task: str, rows: list[dict], regimes: list[str]) -> str:
    """Table 1 for one task: one line per ordered pair, then the mean over pairs and the mean change against the
    provider's native accuracy (the paper's "within a few points" reading) and against the weaker of the two
    models (a linear map cannot add what the client's model does not encode), and how many pairs differ from the
    provider's native accuracy at p < 0.05 (exact McNemar test on the same test texts)."""
    pairs = sorted({(r["source"], r["target"]) for r in rows if r["task"] == task})
    body, mapped, native, weaker, significant = [], [], [], [], []
    for source, target in pairs:
        by_regime = {
            r["regime"]: r
            for r in rows
            if (r["task"], r["source"], r["target"], r["map"]) == (task, source, target, "ridge")
        }
        first = next(iter(by_regime.values()))
        accs = [by_regime[g]["mapped_acc"] for g in regimes]
        mapped.append(accs)
        # -1 / +1: mapped significantly below / above the provider's native accuracy; 0: no significant difference
        significant.append(
            [
                np.sign(by_regime[g]["mapped_acc"] - first["baseline_acc"]) if by_regime[g]["p_vs_native"] < 0.05 else 0
                for g in regimes
            ]
        )
        native.append(first["baseline_acc"])
        weaker.append(min(first["baseline_acc"], first["source_acc"]))
        body.append(
            [
                f"{source} -> {target}",
                f"{100 * first['source_acc']:.1f}",
                f"{100 * first['baseline_acc']:.1f}",
                *(f"{100 * a:.1f}" for a in accs),
            ]
        )
    if pairs:
        means = np.mean(mapped, axis=0)
        body.append(["mean over pairs", "", f"{100 * np.mean(native):.1f}", *(f"{100 * m:.1f}" for m in means)])
        body.append(["  change vs provider native", "", "", *(f"{100 * (m - np.mean(native)):+.1f}" for m in means)])
        body.append(["  change vs weaker model", "", "", *(f"{100 * (m - np.mean(weaker)):+.1f}" for m in means)])
        body.append(
            [
                "  pairs below / above native (p<0.05)",
                "",
                "",
                *(f"{sum(d < 0 for d in col)} / {sum(d > 0 for d in col)}" for col in zip(*significant, strict=False)),
            ]
        )
    return _table(["client -> provider", "client native", "provider native", *regimes], body)


def mean_ci(values: np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its 95% Student-t interval (0 for a single value)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return float(values.mean()), 0.0
    half = student_t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean()), float(half)


def seed_stats(rows: list[dict], task: str, regime: str, field: str) -> dict[str, float] | None:
    """One field of one regime over seeds: the mean over pairs per seed, summarised as mean +- 95% interval over
    seeds, and each pair's standard deviation over seeds (median and largest); None where the field is empty."""
    by_pair_seed = {
        (r["source"], r["target"], r["seed"]): r[field]
        for r in rows
        if r["task"] == task and r["regime"] == regime and r[field] is not None
    }
    if not by_pair_seed:
        return None
    pairs = sorted({k[:2] for k in by_pair_seed})
    seeds = sorted({k[2] for k in by_pair_seed})
    grid = np.array([[by_pair_seed[(*pair, seed)] for seed in seeds] for pair in pairs])  # pairs x seeds
    mean, half = mean_ci(grid.mean(axis=0))
    spread = grid.std(axis=1, ddof=1) if len(seeds) > 1 else np.zeros(len(pairs))
    return {
        "mean": mean,
        "ci": half,
        "pair_sd_median": float(np.median(spread)),
        "pair_sd_max": float(spread.max()),
        "pair_means": grid.mean(axis=1),
        "seeds": len(seeds),
        "pairs": len(pairs),
    }


def _pm(stats: dict | None, scale: float = 100.0, digits: int = 1) -> str:
    return "-" if stats is None else f"{scale * stats['mean']:.{digits}f} ± {scale * stats['ci']:.{digits}f}"


def seed_table(task: str, rows: list[dict], regimes: list[str]) -> str:
    """Table 1b for one task: per regime, the mapped accuracy and each baseline as the mean over pairs with a 95%
    interval over seeds, the per-pair spread over seeds, and in how many pairs the map beats the client's own
    probe trained on the same texts with the provider's labels (means over seeds)."""
    body = []
    for regime in regimes:
        stats = {
            f: seed_stats(rows, task, regime, f)
            for f in ("baseline_acc", "mapped_acc", "probe_distilled_acc", "probe_true_acc", "shuffled_acc")
        }
        n = in_distribution_count(regime, load_manifest()["task_sizes"][task]["train"])
        mapped, probe = stats["mapped_acc"], stats["probe_distilled_acc"]
        wins = "-" if probe is None else f"{np.sum(mapped['pair_means'] > probe['pair_means'])} / {mapped['pairs']}"
        body.append(
            [
                regime,
                str(n),
                _pm(stats["baseline_acc"]),
                _pm(mapped),
                f"{100 * mapped['pair_sd_median']:.1f} / {100 * mapped['pair_sd_max']:.1f}",
                _pm(probe),
                _pm(stats["probe_true_acc"]),
                _pm(stats["shuffled_acc"]),
                wins,
            ]
        )
    return _table(
        [
            "regime",
            "N (probe: labels revealed)",
            "provider native",
            "mapped",
            "pair SD med/max",
            "probe (provider labels)",
            "probe (true labels)",
            "shuffled map",
            "map > probe",
        ],
        body,
    )


def seed_ood_table(task: str, rows: list[dict], regimes: list[str]) -> str:
    """Table 2 for one task: Energy AUROC per regime, native vs mapped, mean over pairs +- 95% interval over seeds,
    and how many pairs fall below chance (0.5) or below 0.4 (means over seeds)."""
    body = []
    for regime in regimes:
        native, mapped = (seed_stats(rows, task, regime, f) for f in ("auroc_native", "auroc_mapped"))
        lows = mapped["pair_means"]
        body.append(
            [
                regime,
                _pm(native, 1, 3),
                _pm(mapped, 1, 3),
                f"{lows.min():.3f}",
                f"{int(np.sum(lows < 0.5))} / {len(lows)}",
                f"{int(np.sum(lows < 0.4))} / {len(lows)}",
            ]
        )
    return _table(["regime", "AUROC native", "AUROC mapped", "lowest pair", "pairs < 0.5", "pairs < 0.4"], body)


def cka_line(manifest: dict) -> str:
    """Linear CKA here (off-diagonal, public corpus and each task's test texts) beside the paper's range."""
    parts = []
    for dataset in manifest["similarity_datasets"]:
        sim = load_similarity(dataset)
        keys, matrix = sim["keys"], np.array(sim["matrices"]["cka"])
        enc = [i for i, k in enumerate(keys) if get_spec(k).kind == "encoder"]
        off = matrix[~np.eye(len(keys), dtype=bool)]
        sub = matrix[np.ix_(enc, enc)][~np.eye(len(enc), dtype=bool)]
        parts.append(f"{dataset} {off.min():.2f}-{off.max():.2f} (encoders only {sub.min():.2f}-{sub.max():.2f})")
    return (
        f"Linear CKA between different models here: {'; '.join(parts)}. Paper (embedding APIs, large models): "
        f"{PAPER_CKA[0]:.3f}-{PAPER_CKA[1]:.3f}."
    )


def ood_table(task: str, rows: list[dict], regimes: list[str]) -> str:
    """Table 2 for one task: AUROC / FPR@95TPR of the Energy score, native vs mapped, then the mean per regime."""
    keys = ("auroc_native", "auroc_mapped", "fpr95_native", "fpr95_mapped")
    body, by_regime = [], {g: [] for g in regimes}
    for r in rows:
        if r["task"] == task and r["map"] == "ridge" and r["regime"] in regimes:
            body.append([f"{r['source']} -> {r['target']}", r["regime"], *(f"{r[k]:.3f}" for k in keys)])
            by_regime[r["regime"]].append([r[k] for k in keys])
    body += [
        ["mean over pairs", g, *(f"{m:.3f}" for m in np.mean(values, axis=0))]
        for g, values in by_regime.items()
        if values
    ]
    return _table(
        ["client -> provider", "map regime", "AUROC native", "AUROC mapped", "FPR95 native", "FPR95 mapped"], body
    )


def map_kind_table(task: str, rows: list[dict]) -> str:
    """Table 3 for one task: ridge vs least squares vs Procrustes in the task-supervised regime, with fit quality."""
    body = [
        [
            f"{r['source']} -> {r['target']}",
            r["map"],
            f"{100 * r['mapped_acc']:.1f}",
            f"{r['r2']:.3f}",
            f"{r['cosine']:.3f}",
            f"{r['top1']:.3f}",
            f"{r['mean_rank']:.1f}",
        ]
        for r in rows
        if r["task"] == task and r["regime"] == "task"
    ]
    return _table(["client -> provider", "map", "acc", "R2", "cosine", "top-1", "mean rank"], body)


def similarity_table(dataset: str, metric: str) -> str:
    sim = load_similarity(dataset)
    keys, matrix = sim["keys"], sim["matrices"][metric]
    return _table([metric, *keys], [[k, *(f"{v:.3f}" for v in row)] for k, row in zip(keys, matrix, strict=False)])


def _sizes(manifest: dict) -> list[str]:
    """The subsets the numbers rest on (the precompute embeds modest subsets on 2 cores)."""
    lines = [
        f"public corpus {manifest['public_texts']} texts (Guardian headlines + movie plots; other seeds draw "
        f"them from all {manifest['public_pool']}); similarity on the "
        f"first {manifest['similarity_texts']} texts of each set; maps stored for {manifest['map_regimes']} "
        f"({manifest['map_dtype']}); pooling: "
        + ", ".join(f"{k} {p}" for k, p in manifest["pooling"].items() if get_spec(k).kind == "causal")
    ]
    for task, size in manifest["task_sizes"].items():
        lines.append(
            f"{task}: {size['train']} train / {size['test']} test texts, OOD = first {size['ood']} "
            f"{size['ood_name']} test texts"
        )
    return lines


def sampling_note(accuracy: float, n_test: int) -> str:
    """How far one accuracy could move by test-set sampling alone, so small differences in Table 1 are read as such."""
    ci = binomtest(round(accuracy * n_test), n_test).proportion_ci(0.95, method="wilson")
    return (
        f"  sampling uncertainty: one accuracy near {100 * accuracy:.0f}% on these {n_test:,} test texts has a 95% "
        f"Wilson interval of {100 * ci.low:.1f}-{100 * ci.high:.1f} (about ±{50 * (ci.high - ci.low):.1f} points); "
        "all pairs share the same test texts"
    )


def predictor_tables(study: dict) -> str:
    """Table 4: the paper's predictors (exact token match, vocabulary Jaccard) beside generation quality for every
    ordered causal pair; Table 4b: what moves next-token top-1 agreement (source layer, training texts, penalty)."""
    rows = []
    for p in study["pairs"]:
        cont, ppl = p["continuation"], p["continuation"]["ppl_mapped_median"]
        rows.append(
            [
                f"{p['source']} -> {p['target']}",
                f"{p['exact_match_rate']:.3f}",
                f"{p['vocabulary_jaccard']:.3f}",
                f"{p['default']['top1']:.3f}",
                f"{p['default']['top5']:.3f}",
                f"{cont['agreement']:.3f}",
                f"{ppl:.1f} / {p['native_target_ppl_median']:.1f}" if ppl is not None else "-",
            ]
        )
    agree = f"{study['new_tokens']}-tok agree"
    header = ["pair (source -> target)", "exact match", "Jaccard", "top-1", "top-5", agree, "ppl map / own"]
    corr = study["correlations"]
    lines = [
        f"\nTable 4 - the predictor study ({study['created']}): next-token agreement with the target's own greedy "
        f"token on {study['pairs'][0]['default']['held_tokens']:,}+ held-out tokens ({study['held_texts']} texts); "
        f"{study['new_tokens']}-token greedy continuations of {study['continuation_prompts']} held-out prompts "
        "(token agreement with the target's own, median perplexity under the target vs its own text's)",
        _table(header, rows),
        "  Pearson r across the pairs (few pairs: indicative only): "
        + "; ".join(
            f"{predictor.replace('_', ' ')} vs {name.replace('_', ' ')} {v['r']:+.2f}"
            for predictor, by_quality in corr.items()
            for name, v in by_quality.items()
            if name in ("top1", "continuation_agreement") and v["r"] is not None
        ),
    ]

    def top1(p: dict, layer: str, size: int, penalty: str) -> str:
        return next(
            f"{v['top1']:.3f}"
            for v in p["variants"]
            if (v["layer"], v["train_texts"], v["penalty"]) == (layer, size, penalty)
        )

    sizes, full, paper = study["train_sizes"], study["train_sizes"][-1], study["pairs"][0]["default"]["penalty"]
    penalties = sorted({v["penalty"] for v in study["pairs"][0]["variants"]} - {paper})
    variant_rows = [
        [
            f"{p['source']} -> {p['target']}",
            top1(p, "penultimate", full, paper),
            *(top1(p, "last", size, paper) for size in sizes),
            *(top1(p, "last", full, penalty) for penalty in penalties),
        ]
        for p in study["pairs"]
    ]
    lines += [
        f"\nTable 4b - what moves top-1 agreement (default: last layer, {full:,} training texts, {paper})",
        _table(
            ["pair", "penultimate", *(f"last {size:,}" for size in sizes), *penalties],
            variant_rows,
        ),
    ]
    return "\n".join(lines)


def render(tasks: list[str] | None = None, show_map_kinds: bool = True) -> str:
    """The whole report as text."""
    manifest, rows, seeds = load_manifest(), load_results(), load_seed_results()
    regimes = manifest["regimes"]
    parts = [
        f"securealign results ({manifest['created']}, {manifest['seconds']} s); demo regime {manifest['demo_regime']}",
        *_sizes(manifest),
    ]
    parts += [f"  regime {name}: {text}" for name, text in manifest["regime_descriptions"].items()]
    parts += [f"  baseline {name}: {text}" for name, text in manifest["baselines"].items()]
    for task in tasks or manifest["tasks"]:
        title = manifest["task_titles"][task]
        native = np.mean([r["baseline_acc"] for r in rows if r["task"] == task])
        task_rows = [r for r in rows if r["task"] == task]
        task_seeds = [r for r in seeds if r["task"] == task]
        for group, group_rows in grouped(task_rows).items():
            parts += [
                f"\nTable 1 - {title}: accuracy (%) of the provider's head (ridge maps), seed 0; {group} "
                f"({_pairs_of(group_rows)} ordered pairs)",
                accuracy_table(task, group_rows, regimes),
            ]
        parts.append(sampling_note(native, manifest["task_sizes"][task]["test"]))
        for group, group_seeds in grouped(task_seeds).items():
            parts += [
                f"\nTable 1b - {title}: accuracy (%) over {manifest['seeds']} seeds (split, public subset, "
                "few-shot draw): mean over pairs ± 95% interval over seeds, beside the baselines on the same texts; "
                f"{group} ({_pairs_of(group_seeds)} ordered pairs)",
                seed_table(task, group_seeds, regimes),
            ]
        for group, group_seeds in grouped(task_seeds).items():
            parts += [
                f"\nTable 2 - {title}: Energy-score OOD AUROC per regime over {manifest['seeds']} seeds (in: test "
                f"texts, out: {manifest['task_sizes'][task]['ood_name']}); {group} "
                f"({_pairs_of(group_seeds)} ordered pairs)",
                seed_ood_table(task, group_seeds, regimes),
            ]
        parts += ["\nseed 0 per pair:", ood_table(task, rows, ["task", manifest["demo_regime"]])]
        if show_map_kinds:
            parts += [
                f"\nTable 3 - {title}: map kinds (task-supervised), held-out fit quality on test pairs",
                map_kind_table(task, rows),
            ]
    parts.append("\n" + cka_line(manifest))
    for dataset in manifest["similarity_datasets"]:
        for metric in manifest["similarity_metrics"]:
            parts += [f"\nSimilarity on {dataset}: {metric}", similarity_table(dataset, metric)]
    study = load_predictor_study()
    if study is not None:
        parts.append(predictor_tables(study))
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    """Print the report."""
    parser = argparse.ArgumentParser(prog="python -m securealign report", description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", help="only these tasks")
    parser.add_argument("--no-map-kinds", action="store_true", help="omit Table 3")
    args = parser.parse_args(argv)
    print(render(args.tasks, not args.no_map_kinds))
    return 0
