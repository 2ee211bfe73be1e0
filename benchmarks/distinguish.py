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

from securealign.crypto import distinguish, fit_distinguish, flooding  # noqa: E402
from securealign.datasets import load_public_corpus, load_task  # noqa: E402
from securealign.experiments import artifacts  # noqa: E402
from securealign.generation import head_distinguish  # noqa: E402
from securealign.models.embeddings import embed  # noqa: E402
from securealign.paths import assets_dir  # noqa: E402

# (client model, provider model) per mode: 64-d inputs in both (paper: the mapped query; sealed: the raw one)
PAIRS = {"paper": ("wordllama", "potion"), "sealed": ("potion", "minilm")}
# secure fits: (client, provider) on the fewest public texts the row rule accepts for both modes here
FIT_MODELS = {"paper": ("potion", "wordllama"), "sealed": ("wordllama", "potion")}
FIT_ROWS = 131
# the vocabulary head: the committed SmolLM2 -> Gemma 3 generation map (640 x 576) as the composed matrix
VOCABULARY_MAP = "map-smollm2-gemma3-4000-0.0001-d392371eae2f.npz"


def served_model(task: str, mode: str) -> dict:
    """The provider's committed map and head for ``mode``'s pair, as float64 arrays."""
    source, target = PAIRS[mode]
    head, amap = artifacts.load_head(task, target), artifacts.load_map(task, source, target)
    return {k: np.asarray(v, dtype=np.float64) for k, v in zip("WbVc", (amap.W, amap.b, head.V, head.c), strict=True)}


def client_queries(task: str, mode: str, served: dict, count: int) -> np.ndarray:
    """The client's inputs in ``mode``: real embeddings of the first ``count`` test texts (mapped in paper mode)."""
    Z = embed(PAIRS[mode][0], load_task(task).test_texts[:count]).astype(np.float64)
    return Z @ served["W"] + served["b"] if mode == "paper" else Z


def measure(
    task: str, mode: str, answer: str, privacy: str, trials: int, queries: int, seed: int, names: list[str]
) -> distinguish.Report:
    """Deterministic answers: every query encrypted afresh per round (independent rounds); flooded ones carry fresh
    randomness per answer, so each query is encrypted once per key (a key decrypts tau flooded answers)."""
    served = served_model(task, mode)
    rng = np.random.default_rng(seed)
    X = client_queries(task, mode, served, queries)
    game = distinguish.Classification.build(mode, answer, X, served, rng, privacy=privacy)
    return distinguish.run(game, trials, rng, names, requery=privacy == "none")


def measure_factor_search(task: str, mode: str, trials: int, seed: int) -> distinguish.Report:
    """Label-only answers of a two-class head, queried at margin 25 with the test texts best aimed for it."""
    served = served_model(task, mode)
    rng = np.random.default_rng(seed)
    X = distinguish.aimed_queries(
        client_queries(task, mode, served, 200), *distinguish.computation(served, mode), margin=25.0, count=4
    )
    game = distinguish.Classification.build(mode, "label", X, served, rng)
    return distinguish.run(game, trials, rng, ("factor-search",))


def measure_fit(mode: str, trials: int, seed: int) -> distinguish.Report:
    """Secure fit on real public-corpus embeddings: the decrypting party guesses which of two matrices (same
    product, same map) the other used."""
    texts = load_public_corpus()[:FIT_ROWS]
    client, provider = FIT_MODELS[mode]
    Z_A, Z_B = (embed(model, texts).astype(np.float64) for model in (provider, client))
    rng = np.random.default_rng(seed)
    return distinguish.run_blobs([fit_distinguish.fit_game(mode, Z_A, Z_B, rng)], trials, rng, mode, "cross-product")


def measure_vocabulary(trials: int, seed: int, privacy: str) -> distinguish.Report:
    """The vocabulary head: a random hidden state of the source's width (the client's choice of query)."""
    mapping = np.load(assets_dir() / "generation" / VOCABULARY_MAP)
    matrix, bias = mapping["W"].T.astype(np.float64), mapping["b"].astype(np.float64)
    rng = np.random.default_rng(seed)
    flood = flooding.DEFAULT_POLICY if privacy == "flooded" else None
    game = head_distinguish.VocabularyGame(matrix, bias, rng.standard_normal(matrix.shape[1]), rng, flood)
    report = distinguish.run_blobs([game], trials, rng, "generation", "logits")
    report.privacy = privacy
    return report


def print_report(report: distinguish.Report, seconds: float) -> None:
    print(
        f"\n{report.mode} mode, {report.answer} answers{', ' + report.privacy if report.privacy else ''}: "
        f"{report.trials} trials in {seconds:.1f} s "
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
        "--privacy",
        nargs="+",
        default=["none", "flooded"],
        choices=["none", "flooded"],
        help="deterministic answers (today's) and/or circuit-private (re-randomised, flooded) ones",
    )
    parser.add_argument(
        "--factor-search",
        type=int,
        default=0,
        metavar="TRIALS",
        help="also run the factor search on label-only answers of a two-class head (seconds per searched trial)",
    )
    parser.add_argument("--search-task", default="rotten_tomatoes", help="the two-class task for --factor-search")
    parser.add_argument(
        "--fits", type=int, default=0, metavar="TRIALS", help="also the secure fits' game (~1.3 s each)"
    )
    parser.add_argument("--vocabulary", type=int, default=0, metavar="TRIALS", help="also the vocabulary head's game")
    args = parser.parse_args()
    print(f"task {args.task}; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for privacy in args.privacy:
        for answer in args.answers:
            for mode in args.modes:
                start = time.perf_counter()
                names = [n for n in distinguish.DISTINGUISHERS if answer == "label" or n != "factor-search"]
                report = measure(args.task, mode, answer, privacy, args.trials, args.queries, args.seed, names)
                print_report(report, time.perf_counter() - start)
    for mode in args.modes if args.factor_search else ():
        start = time.perf_counter()
        print(f"\nfactor search, {args.search_task}:")
        print_report(
            measure_factor_search(args.search_task, mode, args.factor_search, args.seed), time.perf_counter() - start
        )
    for mode in args.modes if args.fits else ():
        start = time.perf_counter()
        print(f"\nsecure fit, {FIT_ROWS} public texts (client {FIT_MODELS[mode][0]}, provider {FIT_MODELS[mode][1]}):")
        print_report(measure_fit(mode, args.fits, args.seed), time.perf_counter() - start)
    for privacy in args.privacy if args.vocabulary else ():
        start = time.perf_counter()
        print(f"\nvocabulary head ({VOCABULARY_MAP}):")
        print_report(measure_vocabulary(args.vocabulary, args.seed, privacy), time.perf_counter() - start)


if __name__ == "__main__":
    main()
