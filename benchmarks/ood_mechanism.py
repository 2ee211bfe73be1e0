"""Why Energy-score OOD detection fails through public maps, measured across all pairs, and two repairs tried.

For every task, regime and ordered pair (seed 0, the committed run) this fits the regime's ridge map and measures:
- shrinkage: the norm of mapped vectors over the norm of the true target vectors, for in-distribution test texts
  and for OOD texts. Energy grows with the logits' scale, so whichever set shrinks more looks more OOD.
- direction: mean cosine between mapped and true target vectors, in-distribution vs OOD.
- confidence: how far the map moves the mean negative Energy (the detector's score) of in-distribution and of OOD
  texts from their native values, in units of the native scores' spread. Detection fails when OOD texts gain more.
- why: how close the client's in-distribution and OOD texts are to the public corpus (mean cosine to the nearest
  public text, in the client's own space). A ridge map is fitted where the public texts are and regresses the rest
  towards their mean.
- AUROC native, mapped, and after each repair, plus the accuracy each repair gives:
  * ``norm``: every mapped vector rescaled to the mean norm of the provider's public embeddings (the client can do
    it in plaintext in paper mode; not linear, so not in sealed mode);
  * ``variance``: per-dimension variance matching on the public texts, z' = mu_A + (z - mu_mapped) * sd_A /
    sd_mapped, which undoes ridge's shrinkage where it was fitted. Affine, so it folds into (W, b) and works in both
    modes; it needs only the provider's public-embedding mean and spread, which it already has.

    .venv/bin/python benchmarks/ood_mechanism.py [--tasks bbc_news] [--regimes public+128 task]
"""

from __future__ import annotations

import argparse
import os
import sys
from itertools import permutations
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from securealign.alignment import AffineMap, fit_map  # noqa: E402
from securealign.datasets import TASKS, load_task  # noqa: E402
from securealign.experiments.evaluation import REGIMES, ModelEmbeddings, fit_heads, regime_pairs  # noqa: E402
from securealign.experiments.precompute import task_embeddings  # noqa: E402
from securealign.heads import LinearHead, energy_score, ood_metrics  # noqa: E402
from securealign.models.zoo import list_models  # noqa: E402


def _unit(Z: np.ndarray) -> np.ndarray:
    return Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)


def _norm(Z: np.ndarray) -> float:
    return float(np.linalg.norm(Z, axis=1).mean())


def _cosine(A: np.ndarray, B: np.ndarray) -> float:
    return float(np.mean(np.sum(_unit(A) * _unit(B), axis=1)))


def _nearest_public(Z: np.ndarray, public: np.ndarray) -> float:
    """Mean cosine of each text to its nearest public text (in one model's space)."""
    return float(np.mean(np.max(_unit(Z) @ _unit(public).T, axis=1)))


def variance_matched(affine: AffineMap, source_public: np.ndarray, target_public: np.ndarray) -> AffineMap:
    """The map followed by per-dimension variance matching on the public texts, folded into one affine map."""
    mapped = affine.apply(source_public).astype(np.float64)
    scale = target_public.std(0) / np.maximum(mapped.std(0), 1e-12)
    return AffineMap(
        affine.W * scale, (affine.b - mapped.mean(0)) * scale + target_public.mean(0), "ridge+var", affine.lam
    )


def _auroc(head: LinearHead, inside: np.ndarray, outside: np.ndarray) -> float:
    return ood_metrics(energy_score(head.logits(inside)), energy_score(head.logits(outside)))["auroc"]


def measure(
    regime: str, head: LinearHead, source: ModelEmbeddings, target: ModelEmbeddings, test_labels: np.ndarray
) -> dict[str, float]:
    """Every figure of one pair in one regime (see the module docstring)."""
    affine = fit_map("ridge", *regime_pairs(regime, source, target))
    m_in, m_out = affine.apply(source.test), affine.apply(source.ood)
    public_norm = _norm(target.public)
    n_in, n_out = (public_norm * _unit(m) for m in (m_in, m_out))
    var = variance_matched(affine, source.public, target.public)
    v_in, v_out = var.apply(source.test), var.apply(source.ood)
    native_in, native_out = -energy_score(head.logits(target.test)), -energy_score(head.logits(target.ood))
    spread = np.concatenate([native_in, native_out]).std()
    return {
        "gain_in": float((-energy_score(head.logits(m_in))).mean() - native_in.mean()) / spread,
        "gain_out": float((-energy_score(head.logits(m_out))).mean() - native_out.mean()) / spread,
        "shrink_in": _norm(m_in) / _norm(target.test),
        "shrink_out": _norm(m_out) / _norm(target.ood),
        "cos_in": _cosine(m_in, target.test),
        "cos_out": _cosine(m_out, target.ood),
        "public_near_in": _nearest_public(source.test, source.public),
        "public_near_out": _nearest_public(source.ood, source.public),
        "auroc_native": _auroc(head, target.test, target.ood),
        "auroc_mapped": _auroc(head, m_in, m_out),
        "auroc_norm": _auroc(head, n_in, n_out),
        "auroc_variance": _auroc(head, v_in, v_out),
        "acc_mapped": head.accuracy(m_in, test_labels),
        "acc_norm": head.accuracy(n_in, test_labels),
        "acc_variance": head.accuracy(v_in, test_labels),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--encoders", nargs="+", default=[s.key for s in list_models("encoder")])
    parser.add_argument("--regimes", nargs="+", default=["public", "public+128", "task"], choices=list(REGIMES))
    args = parser.parse_args()
    print(
        "means over ordered pairs; shrink = |mapped| / |true target|; cos = cosine(mapped, true target); "
        "near public = cosine to the nearest public text in the client's space; 'count' columns say in how many "
        "pairs the in-distribution texts shrink more / point worse / sit farther from the public texts / gain less "
        "confidence (-Energy, in native standard deviations) than OOD"
    )
    header = (
        f"{'task':16s} {'regime':10s} {'shrink in/out':>13s} {'count':>6s} {'cos in/out':>11s} {'count':>6s} "
        f"{'near public in/out':>18s} {'count':>6s} {'-E gain in/out':>14s} {'count':>6s} | "
        f"{'AUROC native':>12s} {'mapped':>7s} {'norm':>6s} {'var':>6s} {'<0.5':>5s} | "
        f"{'acc mapped':>10s} {'norm':>6s} {'var':>6s}"
    )
    print(header)
    for name in args.tasks:
        task = load_task(name)
        embs = {key: task_embeddings(key, name) for key in args.encoders}
        heads = fit_heads(embs, task.train_labels, task.classes)
        for regime in args.regimes:
            rows = [
                measure(regime, heads[t], embs[s], embs[t], task.test_labels) for s, t in permutations(args.encoders, 2)
            ]
            mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}

            def count(a: str, b: str, rows: list[dict] = rows) -> str:
                return f"{sum(r[a] < r[b] for r in rows)}/{len(rows)}"

            print(
                f"{name:16s} {regime:10s} {mean['shrink_in']:6.2f}/{mean['shrink_out']:<6.2f} "
                f"{count('shrink_in', 'shrink_out'):>6s} {mean['cos_in']:5.2f}/{mean['cos_out']:<5.2f} "
                f"{count('cos_in', 'cos_out'):>6s} {mean['public_near_in']:9.2f}/{mean['public_near_out']:<8.2f} "
                f"{count('public_near_in', 'public_near_out'):>6s} {mean['gain_in']:6.2f}/{mean['gain_out']:<7.2f} "
                f"{count('gain_in', 'gain_out'):>6s} | {mean['auroc_native']:12.3f} "
                f"{mean['auroc_mapped']:7.3f} {mean['auroc_norm']:6.3f} {mean['auroc_variance']:6.3f} "
                f"{sum(r['auroc_mapped'] < 0.5 for r in rows):>2d}/{len(rows)} | {100 * mean['acc_mapped']:10.1f} "
                f"{100 * mean['acc_norm']:6.1f} {100 * mean['acc_variance']:6.1f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    with threadpool_limits(limits=1, user_api="blas"):
        sys.exit(main())
