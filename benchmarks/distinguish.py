"""Distinguishers, measured (issue 18): can a client tell which of two heads, equal on its query, answered?

    .venv/bin/python benchmarks/distinguish.py [--trials 2000] [--queries 8] [--modes paper sealed]
        [--answers logits label] [--task bbc_news]

The provider serves a committed head with a committed map (paper mode: the head on potion-base-2M, queried with
WordLlama embeddings mapped into its space; sealed mode: the map from potion-base-2M composed with MiniLM's head,
queried with raw potion embeddings; 64-d inputs in both, as in tests/test_crypto_attacks.py). The client's queries
are real embeddings of the task's test texts; per query the second candidate is the model reflected in a mirror
orthogonal to the query (``distinguish.candidate_pair``: same logits, same normalised margins). Per trial a
balanced coin picks the candidate; every distinguisher of ``securealign.crypto.distinguish`` guesses from the same
RESULT. Prints per mode and answer kind: accuracy with its Wilson 95% interval, how many results' second halves
equalled a recomputation, and c1's uniformity p-values.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from securealign.crypto import ClientSession, distinguish  # noqa: E402
from securealign.crypto.answers import pairs  # noqa: E402
from securealign.crypto.layout import Layout  # noqa: E402
from securealign.datasets import load_task  # noqa: E402
from securealign.experiments import artifacts  # noqa: E402
from securealign.models.embeddings import embed  # noqa: E402

# (client model, provider model) per mode: 64-d inputs in both (paper: the mapped query; sealed: the raw one)
PAIRS = {"paper": ("wordllama", "potion"), "sealed": ("potion", "minilm")}


def served_model(task: str, mode: str) -> dict:
    """The provider's committed map and head for ``mode``'s pair, as float64 arrays."""
    source, target = PAIRS[mode]
    head, amap = artifacts.load_head(task, target), artifacts.load_map(task, source, target)
    return {k: np.asarray(v, dtype=np.float64) for k, v in zip("WbVc", (amap.W, amap.b, head.V, head.c), strict=True)}


def client_queries(task: str, mode: str, served: dict, count: int) -> np.ndarray:
    """The client's inputs in ``mode``: real embeddings of the first ``count`` test texts (mapped in paper mode)."""
    Z = embed(PAIRS[mode][0], load_task(task).test_texts[:count]).astype(np.float64)
    return Z @ served["W"] + served["b"] if mode == "paper" else Z


def answer_layout(served: dict, mode: str, answer: str) -> Layout:
    d = served["W"].shape[1] if mode == "paper" else served["W"].shape[0]
    k = served["V"].shape[1]
    return Layout.plan(d, len(pairs(k)) if answer == "label" else k)


def measure(
    task: str, mode: str, answer: str, trials: int, queries: int, seed: int, names=tuple(distinguish.DISTINGUISHERS)
) -> distinguish.Report:
    served = served_model(task, mode)
    client = distinguish.Client(ClientSession([answer_layout(served, mode, answer)]))
    rng = np.random.default_rng(seed)
    X = client_queries(task, mode, served, queries)
    instances, providers = distinguish.games(client, mode, answer, X, served, rng)
    return distinguish.run(client, instances, providers, trials, rng, names)


def measure_factor_search(task: str, mode: str, trials: int, seed: int) -> distinguish.Report:
    """Label-only answers of a two-class head, queried at margin 25 with the test texts best aimed for it."""
    served = served_model(task, mode)
    client = distinguish.Client(ClientSession([answer_layout(served, mode, "label")]))
    rng = np.random.default_rng(seed)
    X = distinguish.aimed_queries(
        client_queries(task, mode, served, 200), *distinguish.computation(served, mode), margin=25.0, count=4
    )
    instances, providers = distinguish.games(client, mode, "label", X, served, rng)
    return distinguish.run(client, instances, providers, trials, rng, ("factor-search",))


def print_report(report: distinguish.Report, seconds: float) -> None:
    print(
        f"\n{report.mode} mode, {report.answer} answers: {report.trials} trials in {seconds:.1f} s "
        f"({seconds / report.trials * 1e3:.1f} ms each, load {os.getloadavg()[0]:.1f})"
    )
    print(f"{'distinguisher':<20} {'correct':>13} {'accuracy':>9}  Wilson 95%")
    for tally in report.tallies.values():
        low, high = tally.interval
        print(
            f"{tally.name:<20} {tally.correct:>6} / {tally.trials:<5} {tally.accuracy:>9.4f}  [{low:.4f}, {high:.4f}]"
        )
    if "c1-recompute" in report.tallies:
        pvalues = np.round(report.c1_pvalues, 3)
        print(f"c1 equal to a candidate's recomputation in {report.c1_matches} / {report.trials} results")
        print(f"c1 uniformity (chi-square p-values, first {len(pvalues)} results): {pvalues.tolist()}")
    if report.notes:
        print(f"factor search: {report.notes}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="bbc_news")
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=8, help="distinct client queries, each with its own pair")
    parser.add_argument("--modes", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--answers", nargs="+", default=["logits", "label"], choices=["logits", "label"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--factor-search",
        type=int,
        default=0,
        metavar="TRIALS",
        help="also run the factor search on label-only answers of a two-class head (seconds per searched trial)",
    )
    parser.add_argument("--search-task", default="rotten_tomatoes", help="the two-class task for --factor-search")
    args = parser.parse_args()
    print(f"task {args.task}; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for answer in args.answers:
        for mode in args.modes:
            start = time.perf_counter()
            report = measure(args.task, mode, answer, args.trials, args.queries, args.seed)
            print_report(report, time.perf_counter() - start)
    for mode in args.modes if args.factor_search else ():
        start = time.perf_counter()
        print(f"\nfactor search, {args.search_task}:")
        print_report(
            measure_factor_search(args.search_task, mode, args.factor_search, args.seed), time.perf_counter() - start
        )


if __name__ == "__main__":
    main()
