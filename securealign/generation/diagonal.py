"""The slot layout of a vocabulary-sized matrix-vector product: the diagonal method with baby and giant steps.

An LM head has tens of thousands of rows (V) but few columns (d), so the row-per-block packing of the
classification protocol would need V / 7 ciphertexts. Here one ciphertext carries R = SLOTS - d + 1 outputs:

* the client fills all slots with its vector repeated, slot s = x[s mod d], so a left rotation by j < d gives
  x[(i + j) mod d] at slot i for every i < R with no wrap-around;
* diagonal j of a block of R rows is D_j[i] = M[i, (i + j) mod d], and y = sum_j D_j * rot(x, j);
* real matrices, real query: a *complex* diagonal D_j + i D'_j computes two blocks of rows at once (real and
  imaginary parts), halving plaintexts, multiplications and result ciphertexts;
* baby-step/giant-step: j = k g + b. The g-1 baby rotations rot(x, b) are computed once and shared by every
  block; per block, the partial sums P_k = sum_b roll(D_kg+b, kg) * rot(x, b) are combined by Horner's rule,
  y = P_0 + rot(P_1 + rot(P_2 + ..., g), g), so the provider needs Galois keys for two steps only (1 and g).

No encryption here (numpy; tenseal loads only for ``ckks.SLOTS``); :func:`simulate` runs the same algorithm on
plaintext slot vectors as the twin the encrypted path is tested against.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from securealign.crypto.ckks import SLOTS
from securealign.crypto.errors import DimensionError


def _best_baby_step(d: int, n_blocks: int) -> int:
    """The baby-step count g minimising rotations: (g - 1) shared + n_blocks * (ceil(d / g) - 1)."""
    return min(range(1, d + 1), key=lambda g: (g - 1 + n_blocks * (math.ceil(d / g) - 1), g))


@dataclass(frozen=True)
class DiagonalLayout:
    """Where an encrypted d-vector and a V x d matrix sit in the slots; both parties derive it from (d, V)."""

    d: int
    vocab: int
    rows: int  # outputs per real or imaginary half of one ciphertext
    n_ciphertexts: int
    baby: int
    giant: int

    @classmethod
    def plan(cls, d: int, vocab: int) -> DiagonalLayout:
        if not 1 <= d <= SLOTS // 2:
            raise DimensionError(f"input dimension {d} is outside 1..{SLOTS // 2}")
        if vocab < 1:
            raise DimensionError("the vocabulary must have at least one entry")
        rows = SLOTS - d + 1
        n_ct = math.ceil(vocab / (2 * rows))
        baby = _best_baby_step(d, n_ct)
        return cls(d, vocab, rows, n_ct, baby, math.ceil(d / baby))

    @property
    def steps(self) -> list[int]:
        """The rotation steps the provider needs Galois keys for."""
        return sorted({1, self.baby} if self.giant > 1 else {1})

    @property
    def rotations(self) -> int:
        """Ciphertext rotations per evaluation."""
        return self.baby - 1 + self.n_ciphertexts * (self.giant - 1)

    def pack_query(self, x: np.ndarray) -> np.ndarray:
        """The client's real slot vector: ``x`` repeated cyclically over all slots."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.d,):
            raise DimensionError(f"query has shape {x.shape}; this head takes a vector of {self.d}")
        if not np.all(np.isfinite(x)):
            raise DimensionError("query contains NaN or infinite values")
        return x[np.arange(SLOTS) % self.d]

    def _halves(self, matrix: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
        """The (rows, d) blocks of ciphertext t's real and imaginary halves, zero-padded past the vocabulary."""
        padded = np.zeros((2 * self.rows, self.d))
        part = matrix[2 * self.rows * t : 2 * self.rows * (t + 1)]
        padded[: len(part)] = part
        return padded[: self.rows], padded[self.rows :]

    def diagonals(self, matrix: np.ndarray, t: int) -> np.ndarray:
        """Ciphertext t's (d, SLOTS) complex diagonals, each pre-rotated for its giant step (roll by k g)."""
        real, imag = self._halves(matrix, t)
        i = np.arange(self.rows)[:, None]
        cols = (i + np.arange(self.d)[None, :]) % self.d
        diag = np.zeros((self.d, SLOTS), dtype=np.complex128)
        diag[:, : self.rows] = (real[i, cols] + 1j * imag[i, cols]).T
        for j in range(self.d):
            diag[j] = np.roll(diag[j], (j // self.baby) * self.baby)
        return diag

    def bias_slots(self, bias: np.ndarray, t: int) -> np.ndarray:
        """Ciphertext t's bias as complex slots (added after the rescale)."""
        real, imag = self._halves(np.asarray(bias, dtype=np.float64)[:, None], t)
        slots = np.zeros(SLOTS, dtype=np.complex128)
        slots[: self.rows] = real[:, 0] + 1j * imag[:, 0]
        return slots

    def check_matrix(self, matrix: np.ndarray, bias: np.ndarray) -> None:
        if matrix.shape != (self.vocab, self.d) or bias.shape != (self.vocab,):
            raise DimensionError(f"matrix {matrix.shape} and bias {bias.shape} do not fit layout {self}")
        if not (np.all(np.isfinite(matrix)) and np.all(np.isfinite(bias))):
            raise DimensionError("matrix or bias contains NaN or infinite values")

    def giant_groups(self) -> Iterator[tuple[int, range]]:
        """(k, diagonal indices k g .. k g + g - 1) from the last giant step down, the order Horner's rule needs."""
        for k in reversed(range(self.giant)):
            yield k, range(k * self.baby, min(self.d, (k + 1) * self.baby))

    def unpack(self, slot_vectors: list[np.ndarray]) -> np.ndarray:
        """The V logits from the result ciphertexts' complex slot vectors."""
        if len(slot_vectors) != self.n_ciphertexts:
            raise DimensionError(f"{len(slot_vectors)} result vectors; the layout has {self.n_ciphertexts}")
        parts = [np.concatenate([v.real[: self.rows], v.imag[: self.rows]]) for v in slot_vectors]
        return np.concatenate(parts)[: self.vocab]

    def unused(self, slot_vectors: list[np.ndarray]) -> np.ndarray:
        """The slots past the outputs, which hold zero (plus noise) when decrypted with the right key."""
        return np.concatenate([v[self.rows :] for v in slot_vectors])


def simulate(layout: DiagonalLayout, matrix: np.ndarray, bias: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The provider's algorithm on plaintext slot vectors (np.roll for rotations): the encrypted path's twin."""
    matrix, bias = np.asarray(matrix, dtype=np.float64), np.asarray(bias, dtype=np.float64)
    layout.check_matrix(matrix, bias)
    query = layout.pack_query(x)
    baby = [np.roll(query, -b) for b in range(layout.baby)]
    results = []
    for t in range(layout.n_ciphertexts):
        diag = layout.diagonals(matrix, t)
        acc = None
        for k, js in layout.giant_groups():
            partial = sum(diag[j] * baby[j - k * layout.baby] for j in js)
            acc = partial if acc is None else partial + np.roll(acc, -layout.baby)
        results.append(acc + layout.bias_slots(bias, t))
    return layout.unpack(results)
