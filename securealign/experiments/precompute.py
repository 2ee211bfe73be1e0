"""`python -m securealign precompute`: run the experiments once and write what the app and report need to assets/.

Resumable: embeddings are cached by ``embed()``, so an interrupted run picks up where it stopped, and the new
assets are built in a staging folder of the cache and swapped in only when complete, so a failed run leaves the
committed ones untouched. Sizes are kept small enough to commit: maps as float16, and only the demo regime's
maps (the ones the encrypted demo serves); every regime's numbers are in ``results.json``.

Subsets (2 cores embed mpnet at ~3-10 texts/s): each task's own train/test split from ``load_task`` (Rotten
Tomatoes 2,000/1,000 of 12.8k; BBC News and debates 70/30 of all rows), the first ``--ood-texts`` OOD texts, the
first ``--public-texts`` public texts, and the first ``--similarity-texts`` texts for the similarity matrices.

Variance: ``--seeds`` repeats every task x pair x regime (ridge maps and their baselines) on other draws of the
split, the public subset (from the whole public corpus) and the few-shot texts (``evaluation.reseeded``); seed 0
is the committed run above, and the compact per-seed rows go to ``seeds.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from itertools import permutations
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from securealign.datasets import TASKS, example_queries, load_ood_texts, load_public_corpus, load_task
from securealign.experiments.evaluation import BASELINES, REGIMES, ModelEmbeddings, evaluate_pair, fit_heads, reseeded
from securealign.heads import LinearHead, energy_score
from securealign.models.embeddings import embed
from securealign.models.zoo import get_spec, is_installed, list_models
from securealign.paths import assets_dir, cache_dir
from securealign.similarity import METRICS, similarity_matrix

DEMO_REGIME = "public+128"  # the realistic deployment: shared public text plus a few in-distribution pairs
MAP_REGIMES = (DEMO_REGIME,)
PUBLIC_TEXTS = 3000
OOD_TEXTS = 600
SIMILARITY_TEXTS = 500
SEEDS = 5
# what seeds.json keeps of each row: enough for means, intervals and spreads, small enough to commit
SEED_FIELDS = (
    "task",
    "source",
    "target",
    "regime",
    "seed",
    "baseline_acc",
    "source_acc",
    "mapped_acc",
    "auroc_native",
    "auroc_mapped",
    "probe_distilled_acc",
    "probe_true_acc",
    "shuffled_acc",
)
# Causal LMs enter the similarity matrices with mean-pooled final states: like the encoders' pooling, a summary
# of the whole text, whereas a base LM's last-token state is about predicting the next token.
CAUSAL_POOLING = "mean"


def _embed_all(keys: list[str], texts: list[str], what: str) -> dict[str, np.ndarray]:
    out = {}
    for key in keys:
        start = time.perf_counter()
        pooling = CAUSAL_POOLING if get_spec(key).kind == "causal" else None
        out[key] = embed(key, texts, pooling=pooling, progress=True)
        print(f"  {key:16s} {what:32s} {len(texts):5d} texts  {time.perf_counter() - start:6.1f} s", flush=True)
    return out


def task_embeddings(
    key: str, task_name: str, public_texts: int = PUBLIC_TEXTS, ood_texts: int = OOD_TEXTS
) -> ModelEmbeddings:
    """One encoder's embeddings of a task exactly as the committed run (seed 0) uses them, for benchmark scripts
    that study one effect further; cached, so cheap after a precompute."""
    task = load_task(task_name)
    return ModelEmbeddings(
        embed(key, task.train_texts),
        embed(key, task.test_texts),
        embed(key, load_ood_texts(task_name, ood_texts)),
        embed(key, load_public_corpus(public_texts)),
    )


def _write_similarity(root: Path, name: str, embs: dict[str, np.ndarray]) -> None:
    start = time.perf_counter()
    matrices = {metric: similarity_matrix(embs, metric)[1].round(4).tolist() for metric in METRICS}
    payload = {"keys": list(embs), "n_texts": len(next(iter(embs.values()))), "matrices": matrices}
    (root / "similarity" / f"{name}.json").write_text(json.dumps(payload, indent=1))
    print(f"  similarity on {name}: {len(embs)} models, {time.perf_counter() - start:.1f} s", flush=True)


def _write_pair(
    root: Path, task: str, source: str, target: str, maps: dict, head: LinearHead, embs: dict[str, ModelEmbeddings]
) -> None:
    """The stored maps of one ordered pair and the Energy scores behind its OOD histogram (demo regime)."""
    for regime in MAP_REGIMES:
        folder = root / "maps" / regime / task
        folder.mkdir(parents=True, exist_ok=True)
        maps[regime].save(folder / f"{source}__{target}.npz", dtype=np.float16)
    demo = maps[DEMO_REGIME]
    (root / "ood" / task).mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        root / "ood" / task / f"{source}__{target}.npz",
        native_in=energy_score(head.logits(embs[target].test)).astype(np.float16),
        native_out=energy_score(head.logits(embs[target].ood)).astype(np.float16),
        mapped_in=energy_score(head.logits(demo.apply(embs[source].test))).astype(np.float16),
        mapped_out=energy_score(head.logits(demo.apply(embs[source].ood))).astype(np.float16),
    )


def _seed_rows(
    name: str,
    encoders: list[str],
    embs: dict[str, ModelEmbeddings],
    labels: tuple[np.ndarray, np.ndarray],
    public_pool: dict[str, np.ndarray],
    public_texts: int,
    seeds: int,
    first: int = 1,
) -> list[dict]:
    """The compact rows of seeds ``first`` to ``seeds - 1``: new split, public subset and few-shot draw, heads
    refitted on it (seed 0 is the committed split, so its rows equal the full run's)."""
    out = []
    for seed in range(first, seeds):
        start = time.perf_counter()
        seed_embs, seed_labels = reseeded(embs, labels, public_pool, public_texts, seed)
        heads = fit_heads(seed_embs, seed_labels[0], load_task(name).classes)
        for source, target in permutations(encoders, 2):
            rows, _ = evaluate_pair(
                name,
                source,
                target,
                seed_embs[source],
                seed_embs[target],
                heads,
                seed_labels,
                map_kinds=("ridge",),
                seed=seed,
            )
            out += [{k: r[k] for k in SEED_FIELDS if k != "seed"} | {"seed": seed} for r in rows]
        print(f"  {name} seed {seed}: {time.perf_counter() - start:.1f} s", flush=True)
    return out


def _run_task(
    root: Path,
    name: str,
    encoders: list[str],
    public_pool: dict[str, np.ndarray],
    public_texts: int,
    ood_texts: int,
    similarity_texts: int,
    seeds: int,
) -> tuple[list[dict], list[dict], dict]:
    task = load_task(name)
    ood = load_ood_texts(name, ood_texts)
    print(
        f"task {name}: {len(task.train_texts)} train, {len(task.test_texts)} test, {len(ood)} OOD ({task.ood_name})",
        flush=True,
    )
    train = _embed_all(encoders, task.train_texts, f"{name} train")
    test = _embed_all(encoders, task.test_texts, f"{name} test")
    ood_embs = _embed_all(encoders, ood, f"{name} OOD ({task.ood_name})")
    _write_similarity(root, name, {k: v[:similarity_texts] for k, v in test.items()})
    embs = {k: ModelEmbeddings(train[k], test[k], ood_embs[k], public_pool[k][:public_texts]) for k in encoders}
    heads = fit_heads(embs, task.train_labels, task.classes)
    (root / "heads" / name).mkdir(parents=True, exist_ok=True)
    for key, head in heads.items():
        head.save(root / "heads" / name / f"{key}.npz")
    rows: list[dict] = []
    for source, target in permutations(encoders, 2):
        pair_rows, maps = evaluate_pair(
            name, source, target, embs[source], embs[target], heads, (task.train_labels, task.test_labels)
        )
        rows += pair_rows
        _write_pair(root, name, source, target, maps, heads[target], embs)
        by_regime = {r["regime"]: r for r in pair_rows if r["map"] == "ridge"}
        print(
            f"    {source:>16s} -> {target:16s} native {by_regime['task']['baseline_acc']:.3f}  "
            + "  ".join(f"{g} {r['mapped_acc']:.3f}" for g, r in by_regime.items()),
            flush=True,
        )
    sizes = {
        "train": len(task.train_texts),
        "test": len(task.test_texts),
        "ood": len(ood),
        "ood_name": task.ood_name,
        "similarity": min(similarity_texts, len(task.test_texts)),
    }
    seed_rows = [{k: r[k] for k in SEED_FIELDS if k != "seed"} | {"seed": 0} for r in rows if r["map"] == "ridge"]
    seed_rows += _seed_rows(
        name, encoders, embs, (task.train_labels, task.test_labels), public_pool, public_texts, seeds
    )
    return rows, seed_rows, sizes


def write_examples(root: Path, tasks: list[str]) -> None:
    """Each task's example queries with their labels, so the app's first page needs no dataset split."""
    examples = {task: example_queries(load_task(task)) for task in tasks}
    (root / "examples.json").write_text(json.dumps(examples, indent=1, ensure_ascii=False))


def run(
    encoders: list[str],
    tasks: list[str],
    similarity_models: list[str],
    public_texts: int = PUBLIC_TEXTS,
    ood_texts: int = OOD_TEXTS,
    similarity_texts: int = SIMILARITY_TEXTS,
    seeds: int = SEEDS,
) -> Path:
    """Embed, evaluate every task x ordered pair x regime, and replace assets/ with the result; returns assets/."""
    started = time.perf_counter()
    stage = cache_dir() / "assets-staging"
    shutil.rmtree(stage, ignore_errors=True)
    for sub in ("maps", "heads", "ood", "similarity"):
        (stage / sub).mkdir(parents=True)
    public = load_public_corpus()  # the whole corpus: the pool other seeds draw their public subsets from
    print(f"public corpus: {len(public)} texts, the first {public_texts} in seed 0", flush=True)
    public_pool = _embed_all(encoders, public, "public corpus")
    extra = [k for k in similarity_models if k not in encoders]
    zoo_embs = {k: v[:similarity_texts] for k, v in public_pool.items() if k in similarity_models}
    zoo_embs.update(_embed_all(extra, public[:similarity_texts], "public corpus (similarity)"))
    _write_similarity(stage, "public", {k: zoo_embs[k] for k in similarity_models})
    rows: list[dict] = []
    seed_rows: list[dict] = []
    task_sizes = {}
    for name in tasks:
        task_rows, task_seed_rows, task_sizes[name] = _run_task(
            stage, name, encoders, public_pool, public_texts, ood_texts, similarity_texts, seeds
        )
        rows += task_rows
        seed_rows += task_seed_rows
    (stage / "results.json").write_text(json.dumps(rows, indent=1))
    write_examples(stage, tasks)
    (stage / "seeds.json").write_text(json.dumps(seed_rows, separators=(",", ":")))
    manifest = {
        "encoders": encoders,
        "encoder_names": {k: get_spec(k).name for k in encoders},
        "tasks": tasks,
        "task_titles": {t: TASKS[t].title for t in tasks},
        "task_sizes": task_sizes,
        "regimes": list(REGIMES),
        "regime_descriptions": REGIMES,
        "baselines": BASELINES,
        "seeds": seeds,
        "seed_encoders": encoders,
        "demo_regime": DEMO_REGIME,
        "map_regimes": list(MAP_REGIMES),
        "map_dtype": "float16",
        "similarity_datasets": ["public", *tasks],
        "similarity_metrics": list(METRICS),
        "similarity_models": {"public": similarity_models, **{t: encoders for t in tasks}},
        "causal_pooling": CAUSAL_POOLING,
        "public_texts": public_texts,
        "public_pool": len(public),
        "ood_texts": ood_texts,
        "similarity_texts": similarity_texts,
        "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seconds": round(time.perf_counter() - started),
    }
    manifest["bytes"] = sum(p.stat().st_size for p in stage.rglob("*") if p.is_file())
    (stage / "manifest.json").write_text(json.dumps(manifest, indent=1))
    root = assets_dir()
    for item in stage.iterdir():
        target = root / item.name
        if target.is_dir():
            shutil.rmtree(target)
        shutil.move(str(item), str(target))
    print(f"wrote {root} ({manifest['bytes'] / 1e6:.1f} MB, {len(rows)} result rows) in {manifest['seconds']} s")
    return root


def run_seeds(
    encoders: list[str],
    tasks: list[str],
    public_texts: int = PUBLIC_TEXTS,
    ood_texts: int = OOD_TEXTS,
    seeds: int = SEEDS,
) -> Path:
    """Rewrite only ``seeds.json`` (every seed, seed 0 included) for some encoders and leave every other asset as
    it is: the partial refresh for when re-embedding every encoder does not fit the time at hand. The manifest
    records which encoders the seeds cover and how long they took."""
    started = time.perf_counter()
    pool = _embed_all(encoders, load_public_corpus(), "public corpus")
    rows: list[dict] = []
    for name in tasks:
        task = load_task(name)
        embs = {k: task_embeddings(k, name, public_texts, ood_texts) for k in encoders}
        rows += _seed_rows(
            name, encoders, embs, (task.train_labels, task.test_labels), pool, public_texts, seeds, first=0
        )
    root = assets_dir()
    (root / "seeds.json").write_text(json.dumps(rows, separators=(",", ":")))
    manifest = json.loads((root / "manifest.json").read_text())
    manifest.update(
        {
            "baselines": BASELINES,
            "seeds": seeds,
            "seed_encoders": encoders,
            "public_pool": len(pool[encoders[0]]),
            "seed_seconds": round(time.perf_counter() - started),
        }
    )
    manifest["bytes"] = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p.name != "manifest.json")
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"wrote {root / 'seeds.json'} ({len(rows)} rows, {len(encoders)} encoders) in {manifest['seed_seconds']} s")
    return root


def main(argv: list[str]) -> int:
    """Parse options and run the precompute."""
    parser = argparse.ArgumentParser(prog="python -m securealign precompute", description=__doc__.splitlines()[0])
    encoders = [s.key for s in list_models("encoder")]
    parser.add_argument("--encoders", nargs="+", default=encoders, help="sentence encoders to evaluate (>= 2)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument(
        "--similarity-models",
        nargs="+",
        default=[s.key for s in list_models() if is_installed(s.key)],
        help="zoo models in the public-corpus similarity matrices (default: every installed one)",
    )
    parser.add_argument("--public-texts", type=int, default=PUBLIC_TEXTS)
    parser.add_argument("--ood-texts", type=int, default=OOD_TEXTS)
    parser.add_argument("--similarity-texts", type=int, default=SIMILARITY_TEXTS)
    parser.add_argument("--seeds", type=int, default=SEEDS, help="draws of split, public subset and few-shot texts")
    parser.add_argument(
        "--only-seeds", action="store_true", help="rewrite only seeds.json for --encoders, keeping every other asset"
    )
    args = parser.parse_args(argv)
    try:
        kinds = {key: get_spec(key).kind for key in [*args.encoders, *args.similarity_models]}
    except ValueError as err:  # UnknownModelError names the valid keys
        parser.error(str(err))
    if any(kinds[key] != "encoder" for key in args.encoders) or len(set(args.encoders)) < 2:
        parser.error(f"need at least two distinct sentence encoders from: {', '.join(encoders)}")
    if not 0 < args.similarity_texts <= args.public_texts:
        parser.error("--similarity-texts must be positive and at most --public-texts (the texts are shared)")
    if args.seeds < 1 or not 0 < args.public_texts <= len(load_public_corpus()):
        parser.error(f"--seeds must be >= 1 and --public-texts between 1 and {len(load_public_corpus())}")
    # thousands of small solves: one BLAS thread each, since BLAS threads busy-wait on a shared 2-core machine
    # (measured 8x faster here)
    with threadpool_limits(limits=1, user_api="blas"):
        if args.only_seeds:
            run_seeds(args.encoders, args.tasks, args.public_texts, args.ood_texts, args.seeds)
            return 0
        run(
            args.encoders,
            args.tasks,
            args.similarity_models,
            args.public_texts,
            args.ood_texts,
            args.similarity_texts,
            args.seeds,
        )
    return 0
