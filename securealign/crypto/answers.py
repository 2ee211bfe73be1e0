"""What an answer reveals: the K logits, or (label-only) only the signs of the pairwise margins.

A label-only answer carries, for each class pair (i, j), i < j, the margin l_i - l_j multiplied by a fresh secret
factor r > 0 drawn per pair and per query. Its sign is the comparison; its size says nothing on its own, because r
spans BLIND_BITS octaves. Independent factors per pair matter: with one common scale (and shift) for all logits,
ratios of differences would survive for K > 2, and those ratios are linear equations in the head again.

What a client can still do is query one point many times: log|r m| = log r + log|m| with log r uniform on a known
interval, so the extremes of many answers locate log|m| (measured in benchmarks/extraction.py). A per-key query
budget on the provider bounds that.
"""

from __future__ import annotations

import math
import secrets

import numpy as np

from securealign.crypto.errors import DimensionError

ANSWERS = ("logits", "label")
# what a result carries besides its answer: "none" (a deterministic function of the query, the keys and the head:
# the client can recompute it for a guessed head), or "flooded" (circuit-private: re-randomised and noise-flooded,
# see flooding.py)
PRIVACY = ("none", "flooded")
# factors r = 2^(BLIND_BITS u), u uniform in [0, 1). Margin rows are normalised (a positive scale never changes a
# sign), so |margin| <= |x| + 1 and r |margin| stays far inside the 2^19 the last 60-bit prime holds at scale 2^40
BLIND_BITS = 14
# Circuit-private label answers blind over fewer octaves: the result scale must leave room for r |margin| on the
# last prime (|margin| <= 8 assumed: |x| <= ~8), and every octave of r costs one bit of the flood's precision
# budget (docs/protocol.md, "Circuit privacy"). 2^4 (16x) is what keeps every label of the real test queries at
# s = 30, tau = 16 (measured: 2^6 lost 1 of 200, where the smallest winner's margin was 4.3 flood stds at 2^4).
PRIVATE_BLIND_BITS = 4
PRIVATE_MARGIN_BITS = 3  # |margin| <= 2^3: normalised rows, |x| <= ~8 (the real queries: |x| <= 5.1)
PRIVATE_LOGITS_BITS = 6  # circuit-private logits below 64 in magnitude (the real heads' stay below 5)


def private_output_bits(answer: str) -> int:
    """log2 of the largest output a circuit-private answer of this kind leaves room for on the last prime."""
    return PRIVATE_BLIND_BITS + PRIVATE_MARGIN_BITS if answer == "label" else PRIVATE_LOGITS_BITS


def pairs(n_classes: int) -> list[tuple[int, int]]:
    """The class pairs (i, j), i < j, in the order a label-only answer carries their margins."""
    return [(i, j) for i in range(n_classes) for j in range(i + 1, n_classes)]


def classes_for_pairs(n_pairs: int) -> int:
    """K from K (K - 1) / 2 (the client reads K off the label layout's output count)."""
    k = (1 + math.isqrt(1 + 8 * n_pairs)) // 2
    if n_pairs < 1 or k * (k - 1) // 2 != n_pairs:
        raise DimensionError(f"{n_pairs} outputs are not the pairs of any number of classes")
    return k


def pairwise_head(matrix: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The margins' head: one row a_i - a_j (bias c_i - c_j) per pair, each scaled to unit norm of [row, bias]."""
    index = pairs(matrix.shape[0])
    rows = np.array([matrix[i] - matrix[j] for i, j in index])
    offsets = np.array([bias[i] - bias[j] for i, j in index])
    norms = np.linalg.norm(np.column_stack([rows, offsets]), axis=1)
    norms[norms == 0] = 1.0  # two identical classes: the margin is 0 whatever the scale
    return rows / norms[:, None], offsets / norms


def blinding_factors(n: int, bits: int = BLIND_BITS) -> np.ndarray:
    """n fresh secret factors, log-uniform in [1, 2^bits), from the operating system's CSPRNG."""
    return np.array([2.0 ** (bits * secrets.randbits(52) / 2.0**52) for _ in range(n)])


def wins(margins: np.ndarray) -> np.ndarray:
    """Pairwise wins per class from the (blinded) margins; its argmax is the predicted label.

    A tie (margin exactly 0) counts for neither class. Wins are integers stored as floats so that callers can
    treat them like scores.
    """
    margins = np.asarray(margins, dtype=np.float64)
    n_classes = classes_for_pairs(len(margins))
    counts = np.zeros(n_classes)
    for (i, j), m in zip(pairs(n_classes), margins, strict=True):
        counts[i] += m > 0
        counts[j] += m < 0
    return counts
