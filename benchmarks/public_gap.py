"""How the public-only gap moves with the public corpus's size and domain.

A public-only map is fitted on unlabeled text both parties embed; here that text varies while everything else stays
as in the committed run (seed 0: the task's fixed split, the provider's head on its own training split, ridge with
lambda chosen by validation). Conditions, each scored as the mean over ordered pairs of the provider's head on the
client's mapped test texts:
- size: the first N texts of the committed public corpus (Guardian headlines + film plots), N up to all of it;
- domain at equal size: each public source alone (``datasets.PUBLIC_SOURCES``), and unlabeled in-domain text (Rotten
  Tomatoes: reviews outside both splits; BBC and debates have none outside the split, so their own training texts
  without labels, which is the task-supervised regime's data);
- more and broader: every public source pooled.
No condition uses a test text (tests/test_datasets.py checks every public source against every test split).

    .venv/bin/python benchmarks/public_gap.py [--encoders potion wordllama] [--tasks bbc_news]
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

from securealign.alignment import fit_ridge  # noqa: E402
from securealign.datasets import PUBLIC_SOURCES, TASKS, load_public_corpus, load_public_source, load_task, non_test_rows  # noqa: E402
from securealign.heads import fit_head  # noqa: E402
from securealign.models.embeddings import embed  # noqa: E402

SIZES = (250, 500, 1000, 2000, 3000)
DOMAIN_SIZE = 1000


def in_domain_unlabeled(task_name: str, limit: int) -> tuple[str, list[str]]:
    """Unlabeled in-distribution text outside the test split, and what it is."""
    task = load_task(task_name)
    train = set(task.train_texts)
    extra = [t for t in non_test_rows(task_name)[0] if t not in train]
    if extra:
        return "in-domain, outside both splits", extra[:limit]
    return "in-domain = training texts, unlabeled", task.train_texts[:limit]


def conditions(task_name: str, pooled: bool = True) -> list[tuple[str, list[str]]]:
    """(label, texts) for every condition of one task; ``pooled=False`` leaves out the ~25k pooled texts."""
    corpus = load_public_corpus()
    out = [(f"corpus, first {n}", corpus[:n]) for n in SIZES] + [(f"corpus, all {len(corpus)}", corpus)]
    out += [(f"{name} only", load_public_source(name, DOMAIN_SIZE)) for name in PUBLIC_SOURCES]
    label, texts = in_domain_unlabeled(task_name, DOMAIN_SIZE)
    out.append((label, texts))
    if pooled:
        everything = list(dict.fromkeys(corpus + [t for name in PUBLIC_SOURCES for t in load_public_source(name)]))
        out.append((f"all public sources, {len(everything)}", everything))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument(
        "--encoders",
        nargs="+",
        default=["potion", "wordllama"],
        help="fast static encoders by default: the sources add ~25k texts to embed",
    )
    parser.add_argument(
        "--no-pooled",
        action="store_true",
        help="leave out the pooled condition (~25k texts: slow to embed with transformer encoders)",
    )
    args = parser.parse_args()
    pairs = list(permutations(args.encoders, 2))
    print(
        f"mean over {len(pairs)} ordered pairs of {', '.join(args.encoders)}; accuracy (%) of the provider's head "
        "on mapped client test texts; gap = mapped - provider native"
    )
    for name in args.tasks:
        task = load_task(name)
        train = {k: embed(k, task.train_texts) for k in args.encoders}
        test = {k: embed(k, task.test_texts) for k in args.encoders}
        heads = {k: fit_head(train[k], task.train_labels, task.classes) for k in args.encoders}
        native = np.mean([heads[t].accuracy(test[t], task.test_labels) for _, t in pairs])
        print(f"\n{TASKS[name].title}: provider native {100 * native:.1f}")
        print(f"  {'public text':42s} {'texts':>6s} {'mapped':>7s} {'gap':>6s}")
        for label, texts in conditions(name, pooled=not args.no_pooled):
            public = {k: embed(k, texts) for k in args.encoders}
            accs = [
                heads[t].accuracy(fit_ridge(public[s], public[t]).apply(test[s]), task.test_labels) for s, t in pairs
            ]
            print(
                f"  {label:42s} {len(texts):6d} {100 * np.mean(accs):7.1f} {100 * (np.mean(accs) - native):+6.1f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    with threadpool_limits(limits=1, user_api="blas"):
        sys.exit(main())
