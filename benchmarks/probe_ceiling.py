"""How well can *any* linear classifier do on each model's embeddings, as the number of labels grows?

A map from the client's model followed by the provider's linear head is itself a linear classifier on the client's
embeddings, so the client model's best linear probe bounds the mapped accuracy. This prints that bound beside the
provider model's probe, trained on growing stratified subsets of every labeled row outside the fixed test split and
always scored on the same test split (C is picked on that split too, so the figures are an optimistic bound), and
the precomputed task-supervised mapped accuracy for context.

    .venv/bin/python benchmarks/probe_ceiling.py [--task rotten_tomatoes] [--client minilm] [--provider mpnet]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from securealign.datasets import load_task, non_test_rows
from securealign.experiments import artifacts
from securealign.models.embeddings import embed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="rotten_tomatoes")
    parser.add_argument("--client", default="minilm")
    parser.add_argument("--provider", default="mpnet")
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[1000, 2000, 4000, 8000],
        help="label budgets; every available non-test row is always added as the last one",
    )
    args = parser.parse_args()
    task = load_task(args.task)
    texts, labels = non_test_rows(args.task)
    models = (args.client, args.provider)
    train = {key: embed(key, texts) for key in models}
    test = {key: embed(key, task.test_texts) for key in models}
    sizes = [n for n in args.sizes if n < len(texts)] + [len(texts)]
    print(
        f"{args.task}: {len(texts):,} labeled rows outside the {len(task.test_texts):,}-text test split; "
        "logistic-regression probe accuracy (%) on the test split, best of C in {0.1, 1, 10}"
    )
    print(f"{'labels':>8} | {args.client:>10} {args.provider:>10} | gap")
    for n in sizes:
        rows = (
            np.arange(n)
            if n == len(texts)
            else train_test_split(np.arange(len(texts)), train_size=n, stratify=labels, random_state=0)[0]
        )
        acc = {
            key: max(
                LogisticRegression(C=C, max_iter=3000)
                .fit(train[key][rows], labels[rows])
                .score(test[key], task.test_labels)
                for C in (0.1, 1.0, 10.0)
            )
            for key in models
        }
        print(
            f"{n:8,d} | {100 * acc[args.client]:10.1f} {100 * acc[args.provider]:10.1f} | "
            f"{100 * (acc[args.provider] - acc[args.client]):4.1f}"
        )
    for row in artifacts.load_results():
        if (row["task"], row["source"], row["target"], row["regime"]) == (args.task, *models, "task"):
            print(
                f"precomputed, task-supervised {row['map']} map {args.client} -> {args.provider}: "
                f"{100 * row['mapped_acc']:.1f} (provider native {100 * row['baseline_acc']:.1f}, "
                f"client native {100 * row['source_acc']:.1f}, {row['pairs']:,} pairs)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
