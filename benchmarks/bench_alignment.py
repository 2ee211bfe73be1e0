"""Benchmark: ridge fit time against the number of samples and the dimensions, and streamed == one-shot.

Prints seconds per fit (sufficient statistics + solve, with and without lambda validation) and the ratio to the
smallest configuration measured in the same run, then the largest difference between a fit streamed in
mini-batches and a one-shot fit on the same data (must be below 1e-6).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

import numpy as np  # noqa: E402

from securealign.alignment import RidgeStats, fit_ridge  # noqa: E402


def _time(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"{'n':>7} {'d_b':>5} {'d_a':>5} | {'fixed lambda s':>14} {'ratio':>7} | {'validated s':>11} {'ratio':>7}")
    base_fixed = base_val = None
    for n in (1_000, 4_000, 16_000):
        for d_b, d_a in ((256, 384), (384, 768), (768, 768)):
            Zb = rng.normal(size=(n, d_b)).astype(np.float32)
            Za = (Zb @ rng.normal(size=(d_b, d_a)) * 0.1 + rng.normal(size=(n, d_a))).astype(np.float32)
            fixed = _time(lambda: RidgeStats(d_b, d_a).update(Zb, Za).solve(0.1))
            validated = _time(lambda: fit_ridge(Zb, Za), repeats=1)
            base_fixed, base_val = base_fixed or fixed, base_val or validated
            print(f"{n:7d} {d_b:5d} {d_a:5d} | {fixed:14.3f} {fixed / base_fixed:7.1f} | {validated:11.3f} "
                  f"{validated / base_val:7.1f}")
    n, d_b, d_a = 20_000, 768, 384
    Zb, Za = rng.normal(size=(n, d_b)), rng.normal(size=(n, d_a))
    one_shot = RidgeStats(d_b, d_a).update(Zb, Za).solve(0.01)
    stats = RidgeStats(d_b, d_a)
    for start in range(0, n, 512):
        stats.update(Zb[start : start + 512], Za[start : start + 512])
    streamed = stats.solve(0.01)
    diff = max(np.abs(streamed.W - one_shot.W).max(), np.abs(streamed.b - one_shot.b).max())
    print(f"\nstreamed (512-row batches) vs one-shot on {n} x {d_b} -> {d_a}: max |difference| = {diff:.2e} "
          f"({'PASS' if diff < 1e-6 else 'FAIL'}, target < 1e-6)")


if __name__ == "__main__":
    main()
