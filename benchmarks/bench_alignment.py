"""Benchmark: ridge fit time against the number of samples and the dimensions, and streamed == one-shot.

For each size it prints the seconds of one fit from sufficient statistics (accumulate + solve at a fixed
lambda), its ratio to the smallest configuration, scikit-learn's ``Ridge`` on the same data as the baseline
measured in the same run (ratio ours / sklearn, and the largest difference between the two weight matrices,
which must agree), and a fit with lambda chosen by validation. Then the largest difference between a fit
streamed in mini-batches and a one-shot fit on the same data (target < 1e-6).

Run: ``.venv/bin/python benchmarks/bench_alignment.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from sklearn.linear_model import Ridge

from securealign.alignment import RidgeStats, absolute_alpha, fit_ridge

LAMBDA = 0.1


def _time(fn: Callable[[], object], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    rng = np.random.default_rng(0)
    print(
        f"{'n':>6} {'d_b':>4} {'d_a':>4} | {'stats+solve s':>13} {'ratio':>6} | {'sklearn s':>9} "
        f"{'ours/skl':>8} {'max|dW|':>8} | {'validated s':>11} {'ratio':>6}"
    )
    base_fixed = base_val = None
    for n in (1_000, 4_000, 16_000):
        for d_b, d_a in ((256, 384), (384, 768), (768, 768)):
            Zb = rng.normal(size=(n, d_b)).astype(np.float32)
            Za = (Zb @ rng.normal(size=(d_b, d_a)) * 0.1 + rng.normal(size=(n, d_a))).astype(np.float32)
            ours = RidgeStats(d_b, d_a).update(Zb, Za).solve(LAMBDA)
            fixed = _time(lambda: RidgeStats(d_b, d_a).update(Zb, Za).solve(LAMBDA))
            Zb64, Za64 = Zb.astype(np.float64), Za.astype(np.float64)
            reference = Ridge(alpha=absolute_alpha(Zb64, LAMBDA), solver="cholesky").fit(Zb64, Za64)
            sklearn_s = _time(lambda: Ridge(alpha=absolute_alpha(Zb64, LAMBDA), solver="cholesky").fit(Zb64, Za64))
            diff = np.abs(ours.W - reference.coef_.T).max()
            validated = _time(lambda: fit_ridge(Zb, Za), repeats=1)
            base_fixed, base_val = base_fixed or fixed, base_val or validated
            print(
                f"{n:6d} {d_b:4d} {d_a:4d} | {fixed:13.3f} {fixed / base_fixed:6.1f} | {sklearn_s:9.3f} "
                f"{fixed / sklearn_s:8.2f} {diff:8.1e} | {validated:11.3f} {validated / base_val:6.1f}"
            )
    n, d_b, d_a = 20_000, 768, 384
    Zb, Za = rng.normal(size=(n, d_b)), rng.normal(size=(n, d_a))
    one_shot = RidgeStats(d_b, d_a).update(Zb, Za).solve(0.01)
    stats = RidgeStats(d_b, d_a)
    for start in range(0, n, 512):
        stats.update(Zb[start : start + 512], Za[start : start + 512])
    streamed = stats.solve(0.01)
    diff = max(np.abs(streamed.W - one_shot.W).max(), np.abs(streamed.b - one_shot.b).max())
    print(
        f"\nstreamed (512-row batches) vs one-shot on {n} x {d_b} -> {d_a}: max |difference| = {diff:.2e} "
        f"({'PASS' if diff < 1e-6 else 'FAIL'}, target < 1e-6)"
    )
    print(
        f"memory of the streamed statistics: {(stats.bb.nbytes + stats.ba.nbytes) / 1e6:.1f} MB whatever n is "
        f"(the data itself: {(Zb.nbytes + Za.nbytes) / 1e6:.1f} MB)"
    )


if __name__ == "__main__":
    main()
