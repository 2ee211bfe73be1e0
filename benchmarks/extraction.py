"""Extraction, measured (issue 10): how much of the provider's head a client steals, for how many queries.

    .venv/bin/python benchmarks/extraction.py [--tasks rotten_tomatoes bbc_news] [--seeds 3] [--skip-copies]

The provider serves the committed head on MiniLM with the committed map from WordLlama, the client's model
(``assets/``): paper mode evaluates the head V on mapped 384-d queries, sealed mode the pre-composed matrix
(W V)^T on raw 256-d queries. Real WordLlama embeddings: the task's test split (where agreement is measured),
the public corpus and the task's unlabelled non-test texts (the thief's query pools). Prints:

(a) the one-query slot attack (every slot solved against the public algorithm) on the first design's window-sum
    result (numpy twin) and on the protocol's real result, beside what the K outputs alone give;
(b) the d + 1 chosen-query attack on real logits and on real label-only answers, and the averaging attack that
    buys back magnitudes from blinded answers (plaintext twin of the blinding, checked against the real protocol);
(c) label-only thieves: copies trained on pool queries (random or active) and the boundary search, with the
    queries each needs for 95% agreement with the provider's labels, and what a query budget therefore buys.
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
from threadpoolctl import threadpool_limits  # noqa: E402

from securealign.crypto import (  # noqa: E402
    ClientSession,
    Layout,
    Provider,
    attacks,  # noqa: E402
)
from securealign.crypto.answers import BLIND_BITS, pairwise_head  # noqa: E402
from securealign.crypto.layout import simulate_slots  # noqa: E402
from securealign.datasets import load_public_corpus, load_task, non_test_rows  # noqa: E402
from securealign.experiments import artifacts  # noqa: E402
from securealign.models.embeddings import embed  # noqa: E402

SOURCE, TARGET = "wordllama", "minilm"
MODES = ("paper", "sealed")
TARGET_ERROR, TARGET_AGREEMENT = 0.10, 0.95
REPEATS = (16, 32, 64, 128, 256, 512, 1024)
COUNTS = (25, 50, 100, 200, 400, 800, 1600, 3200, 6400)
BOUNDARY_STEPS = (4, 6, 8, 10, 12, 16, 20)
BUDGETS = (100, 250, 500, 1000, 2000, 5000, 10000)  # serve defaults: 2,000 per session, 10,000 per key


class Served:
    """One task's served model, and per mode what the client queries with and the truth it is scored against."""

    def __init__(self, task: str) -> None:
        head, amap = artifacts.load_head(task, TARGET), artifacts.load_map(task, SOURCE, TARGET)
        W, b = amap.W.astype(np.float64), amap.b.astype(np.float64)
        self.task, self.model_id, self.classes = task, f"{task}:{SOURCE}->{TARGET}", head.classes
        self.provider = Provider()
        self.provider.register_sealed(self.model_id, W, b, head.V, head.c, head.classes)
        self.truth = {"paper": (head.V.T, head.c), "sealed": ((W @ head.V).T, b @ head.V + head.c)}
        # the client's inputs per mode: raw embeddings in sealed mode, mapped ones in paper mode
        self.to_input = {"paper": lambda Z: Z @ W + b, "sealed": lambda Z: Z}
        self.test = embed(SOURCE, load_task(task).test_texts).astype(np.float64)
        self.pools = {"public": embed(SOURCE, load_public_corpus()).astype(np.float64)}
        self.pools["public + in-domain"] = np.vstack(
            [self.pools["public"], embed(SOURCE, non_test_rows(task)[0]).astype(np.float64)]
        )

    def layout(self, mode: str) -> Layout:
        return Layout.from_dict(self.provider.describe(self.model_id)["modes"][mode])

    def logits(self, mode: str, X: np.ndarray) -> np.ndarray:
        matrix, bias = self.truth[mode]
        return X @ matrix.T + bias


def slot_attack(served: Served) -> None:
    print(
        f"\n(a) one-query slot attack, {served.task} ({len(served.classes)} classes): every slot solved against the "
        "public algorithm; the attacker's query is all ones, then all ones times 1e4"
    )
    print(
        f"  {'mode':<7} {'result':<30} {'entries recovered':>18} {'relative error':>15} "
        f"{'outputs only':>13} {'random guess':>13}"
    )
    for mode in MODES:
        matrix, bias = served.truth[mode]
        layout = served.layout(mode)
        for scale in (1.0, 1e4):
            x = scale * np.ones(layout.d_in)
            slots = attacks.decrypted_slots(ClientSession(), served.provider, served.model_id, x, mode)
            views = {
                "window sum, every slot (twin)": (
                    lambda m, b, x=x: attacks.window_sum_slots(m, b, x),
                    attacks.window_sum_slots(matrix, bias, x),
                ),
                "protocol (real CKKS)": (lambda m, b, x=x: simulate_slots(layout, m, b, x), slots),
            }
            bar = attacks.outputs_only(x, np.real(np.concatenate(slots))[layout.output_indices()])
            for name, (view, seen) in views.items():
                stolen = attacks.slot_attack(view, matrix.shape, seen)
                label = f"{name} x{scale:g}"
                print(
                    f"  {mode:<7} {label:<30} {attacks.recovered_fraction(stolen.matrix, matrix):>17.1%} "
                    f"{attacks.relative_error(stolen.matrix, matrix):>15.3g} "
                    f"{attacks.relative_error(bar.matrix, matrix):>13.3g} {attacks.random_guess_error(matrix):>13.3g}"
                )


def logit_attack(served: Served) -> None:
    print(f"\n(b) d + 1 chosen queries and one linear solve, {served.task}, real protocol")
    print(
        f"  {'mode':<7} {'answers':<8} {'queries':>8} {'seconds':>8} {'relative error':>15} {'up to scale':>12} "
        f"{'zero guess':>11} {'random guess':>13}"
    )
    for mode in MODES:
        matrix, _ = served.truth[mode]
        d = served.layout(mode).d_in
        for answer in ("logits", "label"):
            oracle = attacks.protocol_oracle(ClientSession(), served.provider, served.model_id, mode, answer)
            start = time.perf_counter()
            stolen = attacks.logit_attack(oracle, d)
            seconds = time.perf_counter() - start
            truth = matrix if answer == "logits" else pairwise_head(matrix, served.truth[mode][1])[0]
            print(
                f"  {mode:<7} {answer:<8} {stolen.queries:>8,} {seconds:>8.1f} "
                f"{attacks.relative_error(stolen.matrix, truth):>15.3g} "
                f"{attacks.direction_error(stolen.matrix, truth):>12.3g} {1.0:>11.3g} "
                f"{attacks.random_guess_error(truth):>13.3g}"
            )


def blinding_check(served: Served, n: int = 40) -> None:
    """The plaintext twin of the blinding against the real protocol: the same query asked n times."""
    mode = "sealed"
    x = served.test[0]
    oracle = attacks.protocol_oracle(ClientSession(), served.provider, served.model_id, mode, "label")
    values = np.array([oracle(x) for _ in range(n)])
    rows, offsets = pairwise_head(*served.truth[mode])
    log_r = np.log2(values / (rows @ x + offsets))
    print(
        f"\n  twin check ({served.task}, {n} real label answers to one query): every value has the margin's sign: "
        f"{bool(np.all(log_r > -1e-6))}; log2(value / normalised margin) spans [{log_r.min():.2f}, "
        f"{log_r.max():.2f}] (twin: [0, {BLIND_BITS}]), mean {log_r.mean():.2f} (twin: {BLIND_BITS / 2})"
    )


def imaginary_attack(served: Served, runs: int) -> None:
    """The d + 1 attack on label-only answers, reading the imaginary part of the first output slot."""
    print(
        f"\n  imaginary-part attack on real label-only answers, {served.task}: relative error of the pair in the "
        f"first slot (classes 0, 1; zero guess 1) and, for two classes, the stolen head's agreement with the "
        f"provider's labels; {runs} runs with fresh keys"
    )
    print(f"  {'mode':<7} {'queries':>8}  {'relative errors':<24} {'agreements':<24}")
    for mode in MODES:
        rows, _ = pairwise_head(*served.truth[mode])
        d = served.layout(mode).d_in
        test = served.to_input[mode](served.test)
        test_labels = np.argmax(served.logits(mode, test), axis=1)
        errors, agreements, queries = [], [], 0
        for _ in range(runs):
            stolen = attacks.imaginary_attack(
                lambda mode=mode: attacks.output_oracle(
                    ClientSession(), served.provider, served.model_id, mode, "label"
                ),
                d,
            )
            queries = max(queries, stolen.queries)
            errors.append(f"{attacks.relative_error(stolen.matrix[0], rows[0]):.3f}")
            if len(served.classes) == 2:  # the pair (0, 1) margin is l_0 - l_1: class 1 when negative
                predicted = (test @ stolen.matrix[0] + stolen.bias[0]) < 0
                agreements.append(f"{np.mean(predicted == test_labels):.3f}")
        print(f"  {mode:<7} {queries:>8,}  {', '.join(errors):<24} {', '.join(agreements) or '-':<24}")


def averaging_attack(served: Served, seeds: int) -> None:
    print(
        f"\n  averaging attack on label-only answers, {served.task} (plaintext twin of the blinding, r log-uniform "
        f"on [1, 2^{BLIND_BITS}]); relative error of the normalised pair margins, mean of {seeds} runs"
    )
    print(
        f"  {'mode':<7} {'estimator':<9} "
        + " ".join(f"{f'k={k}':>8}" for k in REPEATS)
        + f"   queries to {TARGET_ERROR:.0%}"
    )
    for mode in MODES:
        matrix, bias = served.truth[mode]
        truth, d = pairwise_head(matrix, bias)[0], served.layout(mode).d_in
        for estimator in attacks.ESTIMATORS:
            errors = [
                np.mean(
                    [
                        attacks.relative_error(
                            attacks.averaging_attack(
                                attacks.blinded_twin(matrix, bias, np.random.default_rng(seed)),
                                d,
                                k,
                                estimator=estimator,
                            ).matrix,
                            truth,
                        )
                        for seed in range(seeds)
                    ]
                )
                for k in REPEATS
            ]
            reached = next((k for k, e in zip(REPEATS, errors, strict=True) if e <= TARGET_ERROR), None)
            cost = f"{(d + 1) * reached:,} (k = {reached})" if reached else f"> {(d + 1) * REPEATS[-1]:,}"
            print(f"  {mode:<7} {estimator:<9} " + " ".join(f"{e:>8.3f}" for e in errors) + f"   {cost}")


def copies(served: Served, seeds: int) -> dict[str, list[dict]]:
    """Agreement curves of copies trained on the provider's answers, per mode, pool and what the thief sees."""
    print(
        f"\n(c) copies trained on queries from a pool, {served.task}: agreement with the provider's labels on the "
        f"{len(served.test)} test texts (mean of {seeds} query orders)"
    )
    print(
        f"  {'mode':<7} {'pool':<19} {'answers':<16} "
        + " ".join(f"{n:>6}" for n in COUNTS)
        + f"  to {TARGET_AGREEMENT:.0%}"
    )
    curves = {}
    for mode in MODES:
        test = served.to_input[mode](served.test)
        test_labels = np.argmax(served.logits(mode, test), axis=1)
        for pool_name, pool in served.pools.items():
            pool = served.to_input[mode](pool)
            d = pool.shape[1]
            for answers, use_logits, active in (
                ("labels, random", False, False),
                ("labels, active", False, True),
                ("logits, random", True, False),
            ):
                counts = sorted(set(COUNTS) | ({d // 2, 3 * d // 4, d, d + 1} if use_logits else set()))
                curve = attacks.agreement_curve(
                    pool,
                    served.logits(mode, pool),
                    test,
                    test_labels,
                    counts,
                    use_logits=use_logits,
                    active=active,
                    seeds=tuple(range(seeds)),
                )
                curves[f"{mode}/{pool_name}/{answers}"] = curve
                by_count = {row["queries"]: row["agreement"] for row in curve}
                reached = attacks.queries_to_reach(curve, TARGET_AGREEMENT) or f"> {curve[-1]['queries']}"
                print(
                    f"  {mode:<7} {pool_name:<19} {answers:<16} "
                    + " ".join(f"{by_count[n]:>6.3f}" if n in by_count else f"{'':>6}" for n in COUNTS)
                    + f"  {reached:>6}"
                )
    return curves


def boundary(served: Served, real_steps: int = 12) -> list[dict]:
    """The line search on a two-class head, in sealed mode (the client may query any vector of its space): on
    plaintext labels for every bisection depth, then once on real label-only answers."""
    mode = "sealed"
    matrix, bias = served.truth[mode]
    margin, margin_bias = matrix[1] - matrix[0], bias[1] - bias[0]
    test_labels = np.argmax(served.logits(mode, served.test), axis=1)
    x_neg, x_pos = served.test[test_labels == 0][0], served.test[test_labels == 1][0]
    real = attacks.protocol_oracle(ClientSession(), served.provider, served.model_id, mode, "label")
    oracles = {
        "plaintext": lambda x: float(margin @ x + margin_bias) > 0,
        "real CKKS": lambda x: real(x)[0] < 0,
    }  # the pair (0, 1) carries r (l_0 - l_1): class 1 wins if < 0
    print(f"\n  boundary search (labels only, chosen queries), {served.task}, {mode} mode, d = {len(margin)}")
    print(
        f"  {'labels':<10} {'bisections':>10} {'queries':>8} {'agreement':>10} {'direction error':>16} {'seconds':>8}"
    )
    rows = []
    for name, steps in [("plaintext", s) for s in BOUNDARY_STEPS] + [("real CKKS", real_steps)]:
        start = time.perf_counter()
        stolen = attacks.boundary_attack(oracles[name], x_neg, x_pos, steps, delta=0.1)
        seconds = time.perf_counter() - start
        agreement = float(np.mean(((served.test @ stolen.matrix[0] + stolen.bias[0]) > 0) == test_labels))
        rows.append({"queries": stolen.queries, "agreement": agreement})
        print(
            f"  {name:<10} {steps:>10} {stolen.queries:>8,} {agreement:>10.3f} "
            f"{attacks.direction_error(stolen.matrix, margin[None, :]):>16.2e} {seconds:>8.1f}"
        )
    return rows


def budgets(task: str, curves: dict[str, list[dict]], boundary_rows: list[dict]) -> None:
    """The best label-only thief's agreement within each budget (any mode, pool or strategy measured here)."""
    label_curves = {k: v for k, v in curves.items() if "/labels" in k}
    if boundary_rows:
        label_curves["sealed/chosen/boundary search"] = boundary_rows
    print(f"\n  what a per-key query budget buys, {task}: best agreement of a label-only thief within the budget")
    for budget in BUDGETS:
        best = max(
            (
                (row["agreement"], name)
                for name, curve in label_curves.items()
                for row in curve
                if row["queries"] <= budget
            ),
            default=None,
        )
        print(f"  {budget:>6,} queries: " + (f"{best[0]:.1%} ({best[1]})" if best else "no attack measured"))


def run(tasks: list[str], seeds: int, skip_copies: bool) -> int:
    for task in tasks:
        served = Served(task)
        slot_attack(served)
        logit_attack(served)
        blinding_check(served)
        imaginary_attack(served, seeds)
        averaging_attack(served, seeds)
        if not skip_copies:
            curves = copies(served, seeds)
            boundary_rows = boundary(served) if len(served.classes) == 2 else []
            budgets(task, curves, boundary_rows)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["rotten_tomatoes", "bbc_news"])
    parser.add_argument("--seeds", type=int, default=3, help="repetitions of every randomised measurement")
    parser.add_argument("--skip-copies", action="store_true", help="only (a) and (b)")
    args = parser.parse_args()
    with threadpool_limits(1):  # BLAS worker threads busy-wait on a shared 2-core machine
        return run(args.tasks, args.seeds, args.skip_copies)


if __name__ == "__main__":
    raise SystemExit(main())
