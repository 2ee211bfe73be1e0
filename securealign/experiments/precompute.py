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
import tempfile
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
Pair = tuple[str, str]  # (client model, provider model): an ordered pair


# Causal LMs enter the similarity matrices with mean-pooled final states: like the encoders' pooling, a summary of
# the whole text, whereas a base LM's last-token state is about predicting the next token. One in the classification
# zoo pools so by default (tests/test_zoo.py), so the app's query embeds it as these rows did.
CAUSAL_POOLING = "mean"


def _pooling(key: str) -> str:
    return CAUSAL_POOLING if get_spec(key).kind == "causal" else get_spec(key).pooling


def _embed_all(keys: list[str], texts: list[str], what: str) -> dict[str, np.ndarray]:
    out = {}
    for key in keys:
        start = time.perf_counter()
        out[key] = embed(key, texts, pooling=_pooling(key), progress=True)
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
    (root / "similarity").mkdir(parents=True, exist_ok=True)
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
    pairs: list[Pair],
    embs: dict[str, ModelEmbeddings],
    labels: tuple[np.ndarray, np.ndarray],
    public_pool: dict[str, np.ndarray],
    public_texts: int,
    seeds: int,
    first: int = 1,
) -> list[dict]:
    """The compact rows of ``pairs`` for seeds ``first`` to ``seeds - 1``: new split, public subset and few-shot
    draw, heads refitted on it (seed 0 is the committed split, so its rows equal the full run's)."""
    out = []
    for seed in range(first, seeds):
        start = time.perf_counter()
        seed_embs, seed_labels = reseeded(embs, labels, public_pool, public_texts, seed)
        heads = fit_heads(seed_embs, seed_labels[0], load_task(name).classes)
        for source, target in pairs:
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


def _task_embeddings(
    name: str, models: list[str], public_pool: dict[str, np.ndarray], public_texts: int, ood_texts: int
) -> tuple[dict[str, ModelEmbeddings], dict]:
    """Every model's embeddings of one task (train, test, OOD, the seed-0 public subset) and the task's sizes."""
    task = load_task(name)
    ood = load_ood_texts(name, ood_texts)
    print(
        f"task {name}: {len(task.train_texts)} train, {len(task.test_texts)} test, {len(ood)} OOD ({task.ood_name})",
        flush=True,
    )
    train = _embed_all(models, task.train_texts, f"{name} train")
    test = _embed_all(models, task.test_texts, f"{name} test")
    ood_embs = _embed_all(models, ood, f"{name} OOD ({task.ood_name})")
    embs = {k: ModelEmbeddings(train[k], test[k], ood_embs[k], public_pool[k][:public_texts]) for k in models}
    sizes = {"train": len(task.train_texts), "test": len(task.test_texts), "ood": len(ood), "ood_name": task.ood_name}
    return embs, sizes


def _task_rows(
    root: Path,
    name: str,
    pairs: list[Pair],
    embs: dict[str, ModelEmbeddings],
    heads: dict[str, LinearHead],
    public_pool: dict[str, np.ndarray],
    public_texts: int,
    seeds: int,
) -> tuple[list[dict], list[dict]]:
    """The full rows (seed 0) and the compact seed rows of ``pairs`` on one task; writes their maps and OOD scores."""
    task = load_task(name)
    labels = (task.train_labels, task.test_labels)
    rows: list[dict] = []
    for source, target in pairs:
        pair_rows, maps = evaluate_pair(name, source, target, embs[source], embs[target], heads, labels)
        rows += pair_rows
        _write_pair(root, name, source, target, maps, heads[target], embs)
        by_regime = {r["regime"]: r for r in pair_rows if r["map"] == "ridge"}
        print(
            f"    {source:>16s} -> {target:16s} native {by_regime['task']['baseline_acc']:.3f}  "
            + "  ".join(f"{g} {r['mapped_acc']:.3f}" for g, r in by_regime.items()),
            flush=True,
        )
    seed_rows = [{k: r[k] for k in SEED_FIELDS if k != "seed"} | {"seed": 0} for r in rows if r["map"] == "ridge"]
    seed_rows += _seed_rows(name, pairs, embs, labels, public_pool, public_texts, seeds)
    return rows, seed_rows


def _write_heads(root: Path, name: str, heads: dict[str, LinearHead]) -> None:
    (root / "heads" / name).mkdir(parents=True, exist_ok=True)
    for key, head in heads.items():
        head.save(root / "heads" / name / f"{key}.npz")


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
    embs, sizes = _task_embeddings(name, encoders, public_pool, public_texts, ood_texts)
    _write_similarity(root, name, {k: v.test[:similarity_texts] for k, v in embs.items()})
    heads = fit_heads(embs, load_task(name).train_labels, load_task(name).classes)
    _write_heads(root, name, heads)
    rows, seed_rows = _task_rows(
        root, name, list(permutations(encoders, 2)), embs, heads, public_pool, public_texts, seeds
    )
    return rows, seed_rows, sizes | {"similarity": min(similarity_texts, sizes["test"])}


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
        "pairs": [list(pair) for pair in permutations(encoders, 2)],
        "seed_pairs": [list(pair) for pair in permutations(encoders, 2)],
        "demo_regime": DEMO_REGIME,
        "map_regimes": list(MAP_REGIMES),
        "map_dtype": "float16",
        "similarity_datasets": ["public", *tasks],
        "similarity_metrics": list(METRICS),
        "similarity_models": {"public": similarity_models, **{t: encoders for t in tasks}},
        "pooling": {k: _pooling(k) for k in dict.fromkeys([*encoders, *similarity_models])},
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
            name,
            list(permutations(encoders, 2)),
            embs,
            (task.train_labels, task.test_labels),
            pool,
            public_texts,
            seeds,
            first=0,
        )
    root = assets_dir()
    (root / "seeds.json").write_text(json.dumps(rows, separators=(",", ":")))
    manifest = json.loads((root / "manifest.json").read_text())
    manifest.update(
        {
            "baselines": BASELINES,
            "seeds": seeds,
            "seed_pairs": [list(pair) for pair in permutations(encoders, 2)],
            "public_pool": len(pool[encoders[0]]),
            "seed_seconds": round(time.perf_counter() - started),
        }
    )
    manifest["bytes"] = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p.name != "manifest.json")
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"wrote {root / 'seeds.json'} ({len(rows)} rows, {len(encoders)} encoders) in {manifest['seed_seconds']} s")
    return root


def _added_similarity(name: str, models: list[str], texts: list[str], have: dict[str, np.ndarray]) -> dict:
    """The similarity inputs for ``models`` on ``texts``: the embeddings at hand, the rest embedded (cached)."""
    embs = {k: have[k][: len(texts)] for k in models if k in have}
    embs.update(_embed_all([k for k in models if k not in have], texts, f"{name} (similarity)"))
    return {k: embs[k] for k in models}


def check_added(manifest: dict, new: list[str], partners: list[str]) -> None:
    """What ``--add`` needs: models not in the assets yet, partners that are, no model twice."""
    committed = manifest["encoders"]
    if overlap := [k for k in new if k in committed]:
        raise ValueError(f"already in the assets: {', '.join(overlap)}")
    if missing := [k for k in partners if k not in committed]:
        raise ValueError(f"--partners must be in the assets already ({', '.join(committed)}): {', '.join(missing)}")
    if len(set(new)) < len(new) or len(set(partners)) < len(partners):
        raise ValueError("a model is named twice")


def run_added(
    new: list[str],
    partners: list[str],
    tasks: list[str],
    public_texts: int = PUBLIC_TEXTS,
    ood_texts: int = OOD_TEXTS,
    seeds: int = SEEDS,
    root: Path | None = None,
) -> Path:
    """Add models to the committed assets (or to a copy of them in ``root``) without recomputing them: the rows,
    seeds, maps and OOD scores of every ordered pair of a new model with a partner or another new model, the new
    models' heads, and the similarity matrices with the new models added (every model they held before is embedded
    again on their texts, cached).

    Every committed row, seed row, head and map stays as it is: a pair's rows depend only on its two models'
    embeddings (heads, maps, the seeds' splits and public draws are per model or per seed), so adding a model
    cannot change them. The subsets, seeds and sizes are the committed run's (read from its manifest)."""
    started = time.perf_counter()
    root = root or assets_dir()
    manifest = json.loads((root / "manifest.json").read_text())
    sizes = (manifest["public_texts"], manifest["ood_texts"], manifest["seeds"])
    if sizes != (public_texts, ood_texts, seeds) or tasks != manifest["tasks"]:
        raise ValueError(f"--add keeps the committed run's tasks and sizes: {manifest['tasks']}, {sizes}")
    check_added(manifest, new, partners)
    committed = manifest["encoders"]
    pairs = [(s, t) for s, t in permutations([*partners, *new], 2) if s in new or t in new]
    models = [*partners, *new]
    stage = Path(tempfile.mkdtemp(prefix="assets-added-", dir=cache_dir()))  # its own: a test may add meanwhile
    public = load_public_corpus()
    public_pool = _embed_all(models, public, "public corpus")
    n_sim = manifest["similarity_texts"]
    similarity_models = dict(manifest["similarity_models"])
    similarity_models["public"] = list(dict.fromkeys([*similarity_models["public"], *new]))
    _write_similarity(
        stage,
        "public",
        _added_similarity(
            "public", similarity_models["public"], public[:n_sim], {k: v[:n_sim] for k, v in public_pool.items()}
        ),
    )
    rows, seed_rows = [], []
    for name in tasks:
        embs, _ = _task_embeddings(name, models, public_pool, public_texts, ood_texts)
        similarity_models[name] = list(dict.fromkeys([*similarity_models[name], *new]))
        test = load_task(name).test_texts[:n_sim]
        have = {k: e.test for k, e in embs.items()}
        _write_similarity(stage, name, _added_similarity(name, similarity_models[name], test, have))
        heads = fit_heads(embs, load_task(name).train_labels, load_task(name).classes)
        _write_heads(stage, name, {k: heads[k] for k in new})
        task_rows, task_seed_rows = _task_rows(stage, name, pairs, embs, heads, public_pool, public_texts, seeds)
        rows += task_rows
        seed_rows += task_seed_rows
    (stage / "results.json").write_text(json.dumps(json.loads((root / "results.json").read_text()) + rows, indent=1))
    (stage / "seeds.json").write_text(
        json.dumps(json.loads((root / "seeds.json").read_text()) + seed_rows, separators=(",", ":"))
    )
    encoders = [*committed, *new]
    manifest.update(
        {
            "encoders": encoders,
            "encoder_names": {k: get_spec(k).name for k in encoders},
            "pairs": manifest["pairs"] + [list(pair) for pair in pairs],
            "seed_pairs": manifest["seed_pairs"] + [list(pair) for pair in pairs],
            "similarity_models": similarity_models,
            "pooling": {**manifest["pooling"], **{k: _pooling(k) for k in new}},
            "added": [
                *manifest.get("added", []),
                {
                    "models": new,
                    "partners": partners,
                    "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "seconds": round(time.perf_counter() - started),
                },
            ],
        }
    )
    for item in stage.rglob("*"):  # new files only (and the merged results, seeds and similarity): move them in
        if item.is_file():
            target = root / item.relative_to(stage)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(item), str(target))
    shutil.rmtree(stage)
    manifest["bytes"] = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p.name != "manifest.json")
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    seconds = manifest["added"][-1]["seconds"]
    print(f"added {', '.join(new)} ({len(pairs)} ordered pairs, {len(rows)} result rows) in {seconds} s")
    return root


def main(argv: list[str]) -> int:
    """Parse options and run the precompute."""
    parser = argparse.ArgumentParser(prog="python -m securealign precompute", description=__doc__.splitlines()[0])
    zoo = [s.key for s in list_models() if s.classification]
    parser.add_argument(
        "--encoders",
        nargs="+",
        default=[k for k in zoo if is_installed(k)],
        help="models of the classification zoo to evaluate as encoders (>= 2; default: every installed one)",
    )
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
    parser.add_argument(
        "--add",
        nargs="+",
        metavar="MODEL",
        help="add these classification-zoo models to the committed assets (their pairs with --partners and each "
        "other), keeping every committed row",
    )
    parser.add_argument(
        "--partners", nargs="+", metavar="MODEL", help="with --add: committed models to pair them with (default: all)"
    )
    args = parser.parse_args(argv)
    try:
        for key in [*args.encoders, *args.similarity_models, *(args.add or []), *(args.partners or [])]:
            get_spec(key)
    except ValueError as err:  # UnknownModelError names the valid keys
        parser.error(str(err))
    if any(key not in zoo for key in args.encoders) or len(set(args.encoders)) < 2:
        parser.error(f"need at least two distinct models of the classification zoo: {', '.join(zoo)}")
    if outside := [key for key in args.add or [] if key not in zoo]:
        parser.error(
            f"--add takes models of the classification zoo ({', '.join(zoo)}); mark {', '.join(outside)} with "
            "classification=True in securealign/models/zoo.py first"
        )
    if args.add:
        args.partners = args.partners or json.loads((assets_dir() / "manifest.json").read_text())["encoders"]
        try:
            check_added(json.loads((assets_dir() / "manifest.json").read_text()), args.add, args.partners)
        except ValueError as err:
            parser.error(str(err))
    if not 0 < args.similarity_texts <= args.public_texts:
        parser.error("--similarity-texts must be positive and at most --public-texts (the texts are shared)")
    if args.seeds < 1 or not 0 < args.public_texts <= len(load_public_corpus()):
        parser.error(f"--seeds must be >= 1 and --public-texts between 1 and {len(load_public_corpus())}")
    # thousands of small solves: one BLAS thread each, since BLAS threads busy-wait on a shared 2-core machine
    # (measured 8x faster here)
    with threadpool_limits(limits=1, user_api="blas"):
        if args.add:
            run_added(args.add, args.partners, args.tasks, args.public_texts, args.ood_texts, args.seeds)
            return 0
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
