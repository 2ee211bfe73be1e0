"""`python -m securealign precompute`: run the experiments once and write what the app and report need to assets/.

Resumable: embeddings are cached by ``embed()``, so an interrupted run picks up where it stopped. Sizes are kept
small enough to commit (maps as float16, only the demo regime's maps stored).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from itertools import permutations

import numpy as np

from securealign.datasets import TASKS, load_ood_texts, load_public_corpus, load_task
from securealign.embeddings import embed
from securealign.evaluation import REGIMES, ModelEmbeddings, evaluate_pair, fit_heads
from securealign.heads import energy_score
from securealign.paths import assets_dir
from securealign.similarity import METRICS, similarity_matrix
from securealign.zoo import get_spec, list_models

DEMO_REGIME = "public+128"
PUBLIC_TEXTS = 3000
OOD_TEXTS = 600
SIMILARITY_TEXTS = 1000


def _embed_all(keys: list[str], texts: list[str], what: str) -> dict[str, np.ndarray]:
    out = {}
    for key in keys:
        start = time.perf_counter()
        out[key] = embed(key, texts, progress=True)
        print(f"  {key:16s} {what:28s} {len(texts):5d} texts  {time.perf_counter() - start:6.1f} s", flush=True)
    return out


def _write_similarity(name: str, embs: dict[str, np.ndarray]) -> None:
    matrices = {metric: similarity_matrix(embs, metric)[1].round(4).tolist() for metric in METRICS}
    payload = {"keys": list(embs), "n_texts": len(next(iter(embs.values()))), "matrices": matrices}
    (assets_dir() / "similarity" / f"{name}.json").write_text(json.dumps(payload, indent=1))


def run(encoders: list[str], tasks: list[str], public_texts: int) -> None:
    """Embed, evaluate every task x ordered pair x regime, and write assets/."""
    root = assets_dir()
    for sub in ("maps", "heads", "ood", "similarity"):
        shutil.rmtree(root / sub, ignore_errors=True)
        (root / sub).mkdir(parents=True)
    public = load_public_corpus(public_texts)
    print(f"public corpus: {len(public)} texts", flush=True)
    public_embs = _embed_all(encoders, public, "public corpus")
    _write_similarity("public", {k: v[:SIMILARITY_TEXTS] for k, v in public_embs.items()})
    rows: list[dict] = []
    for name in tasks:
        task = load_task(name)
        print(f"task {name}: {len(task.train_texts)} train, {len(task.test_texts)} test", flush=True)
        train = _embed_all(encoders, task.train_texts, f"{name} train")
        test = _embed_all(encoders, task.test_texts, f"{name} test")
        ood = _embed_all(encoders, load_ood_texts(name, OOD_TEXTS), f"{name} OOD ({task.ood_name})")
        _write_similarity(name, {k: v[:SIMILARITY_TEXTS] for k, v in test.items()})
        embs = {k: ModelEmbeddings(train[k], test[k], ood[k], public_embs[k]) for k in encoders}
        heads = fit_heads(embs, task.train_labels, task.classes)
        for key, head in heads.items():
            (root / "heads" / name).mkdir(parents=True, exist_ok=True)
            head.save(root / "heads" / name / f"{key}.npz")
        for source, target in permutations(encoders, 2):
            pair_rows, maps = evaluate_pair(name, source, target, embs[source], embs[target], heads,
                                            (task.train_labels, task.test_labels))
            rows += pair_rows
            demo = maps[DEMO_REGIME]
            for sub in ("maps", "ood"):
                (root / sub / name).mkdir(parents=True, exist_ok=True)
            demo.save(root / "maps" / name / f"{source}__{target}.npz", dtype=np.float16)
            head = heads[target]
            np.savez_compressed(
                root / "ood" / name / f"{source}__{target}.npz",
                native_in=energy_score(head.logits(embs[target].test)).astype(np.float16),
                native_out=energy_score(head.logits(embs[target].ood)).astype(np.float16),
                mapped_in=energy_score(head.logits(demo.apply(embs[source].test))).astype(np.float16),
                mapped_out=energy_score(head.logits(demo.apply(embs[source].ood))).astype(np.float16),
            )
            best = next(r for r in pair_rows if r["regime"] == "task" and r["map"] == "ridge")
            print(f"    {source:>16s} -> {target:16s} baseline {best['baseline_acc']:.3f}  "
                  f"task-supervised {best['mapped_acc']:.3f}", flush=True)
    (root / "results.json").write_text(json.dumps(rows, indent=1))
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    manifest = {
        "encoders": encoders,
        "encoder_names": {k: get_spec(k).name for k in encoders},
        "tasks": tasks,
        "task_titles": {t: TASKS[t].title for t in tasks},
        "regimes": list(REGIMES),
        "regime_descriptions": REGIMES,
        "demo_regime": DEMO_REGIME,
        "similarity_datasets": ["public", *tasks],
        "similarity_metrics": list(METRICS),
        "public_texts": len(public),
        "ood_texts": OOD_TEXTS,
        "similarity_texts": SIMILARITY_TEXTS,
        "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "bytes": size,
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"wrote {root} ({size / 1e6:.1f} MB, {len(rows)} result rows)")


def main(argv: list[str]) -> int:
    """Parse options and run the precompute."""
    parser = argparse.ArgumentParser(prog="python -m securealign precompute", description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", nargs="+", default=[s.key for s in list_models("encoder")])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--public-texts", type=int, default=PUBLIC_TEXTS)
    args = parser.parse_args(argv)
    for key in args.encoders:
        if get_spec(key).kind != "encoder":
            parser.error(f"{key} is not a sentence encoder")
    run(args.encoders, args.tasks, args.public_texts)
    return 0
