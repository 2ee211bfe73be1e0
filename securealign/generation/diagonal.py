"""The slot layout of a vocabulary-sized matrix-vector product: the diagonal method with baby and giant steps.

An LM head has tens of thousands of rows (V) but few columns (d), so the row-per-block packing of the
classification protocol would need V / 7 ciphertexts. Here one ciphertext carries the logits of 2 x ROWS rows,
ROWS = SLOTS - CHECK_ROWS, so the slots are (nearly) all outputs whatever d is:

* the input's d dimensions split into power-of-two *parts* (d's binary digits: 1536 = 1024 + 512,
  896 = 512 + 256 + 128, 640 = 512 + 128). The client encrypts one ciphertext per part, that part repeated
  cyclically over all slots (slot s = x[o + s mod p] for the part of size p at offset o). As p divides the slot
  count, a left rotation by j < p gives x[o + (i + j) mod p] at *every* slot i: no output slot is lost to
  wrap-around (a single part of d = 1536 would leave only SLOTS - d + 1 = 2,561 usable slots of 4,096);
* diagonal j of part p for a block of rows is D_j[i] = M[i, o + (i + j) mod p], and y = sum over parts and j of
  D_j * rot(x_part, j): d plaintext products per ciphertext of 2 x ROWS logits, the fewest any diagonal method has;
* real matrices, real query: a *complex* diagonal D_j + i D'_j computes two blocks of rows at once (real and
  imaginary parts), halving plaintexts, multiplications and result ciphertexts;
* baby-step/giant-step: j = k g + b. Each part's baby rotations rot(x_part, b), b < min(g, p), are computed once
  and shared by every block; per block, the partial sums P_k = sum_parts sum_b roll(D_kg+b, kg) * rot(x_part, b)
  are combined by Horner's rule, y = P_0 + rot(P_1 + rot(P_2 + ..., g), g), so the provider needs Galois keys for
  two steps only (1 and g). g is chosen per shape to minimise the rotations, (baby steps of all parts) +
  (blocks) x (giant steps of the largest part);
* the last CHECK_ROWS slots of every ciphertext hold zero rows: decrypted with the right key they read ~0, which is
  how the client refuses results made under another key or corrupted.

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

# Zero rows at the end of every ciphertext (each slot gives a real and an imaginary check value): enough that a
# foreign-key decryption (values ~1e7) never passes, few enough to cost 0.2% of the slots.
CHECK_ROWS = 8
ROWS = SLOTS - CHECK_ROWS


def power_of_two_parts(d: int) -> tuple[int, ...]:
    """d as a sum of distinct powers of two, largest first (its binary digits): each divides the slot count."""
    return tuple(1 << k for k in reversed(range(d.bit_length())) if d >> k & 1)


def _rotations(parts: tuple[int, ...], n_blocks: int, g: int) -> int:
    """Rotations per evaluation for baby step g: each part's shared baby steps, then each block's giant steps."""
    return sum(min(g, p) - 1 for p in parts) + n_blocks * (math.ceil(parts[0] / g) - 1)


@dataclass(frozen=True)
class DiagonalLayout:
    """Where an encrypted d-vector and a V x d matrix sit in the slots; both parties derive it from (d, V)."""

    d: int
    vocab: int
    rows: int  # outputs per real or imaginary half of one ciphertext
    n_ciphertexts: int
    baby: int
    giant: int
    parts: tuple[int, ...]  # the input's power-of-two parts, largest first: one query ciphertext each

    @classmethod
    def plan(cls, d: int, vocab: int) -> DiagonalLayout:
        if not 1 <= d <= SLOTS:
            raise DimensionError(f"input dimension {d} is outside 1..{SLOTS}")
        if vocab < 1:
            raise DimensionError("the vocabulary must have at least one entry")
        parts = power_of_two_parts(d)
        n_ct = math.ceil(vocab / (2 * ROWS))
        baby = min(range(1, parts[0] + 1), key=lambda g: (_rotations(parts, n_ct, g), g))
        return cls(d, vocab, ROWS, n_ct, baby, math.ceil(parts[0] / baby), parts)

    @property
    def offsets(self) -> tuple[int, ...]:
        """Each part's first input dimension."""
        return tuple(sum(self.parts[:m]) for m in range(len(self.parts)))

    @property
    def steps(self) -> list[int]:
        """The rotation steps the provider needs Galois keys for."""
        return sorted({1, self.baby} if self.giant > 1 else {1})

    @property
    def rotations(self) -> int:
        """Ciphertext rotations per evaluation."""
        return _rotations(self.parts, self.n_ciphertexts, self.baby)

    @property
    def products(self) -> int:
        """Plaintext-ciphertext products per evaluation (and pre-encoded diagonals): d per result ciphertext."""
        return self.d * self.n_ciphertexts

    def pack_query(self, x: np.ndarray) -> list[np.ndarray]:
        """The client's real slot vectors, one per part: that part of ``x`` repeated cyclically over all slots."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.d,):
            raise DimensionError(f"query has shape {x.shape}; this head takes a vector of {self.d}")
        if not np.all(np.isfinite(x)):
            raise DimensionError("query contains NaN or infinite values")
        return [x[o + np.arange(SLOTS) % p] for p, o in zip(self.parts, self.offsets, strict=True)]

    def _halves(self, matrix: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
        """The (rows, d) blocks of ciphertext t's real and imaginary halves, zero-padded past the vocabulary."""
        padded = np.zeros((2 * self.rows, matrix.shape[1]))
        part = matrix[2 * self.rows * t : 2 * self.rows * (t + 1)]
        padded[: len(part)] = part
        return padded[: self.rows], padded[self.rows :]

    def diagonals(self, matrix: np.ndarray, t: int) -> list[np.ndarray]:
        """Ciphertext t's complex diagonals, one (p, SLOTS) array per part, each diagonal pre-rotated for its giant
        step (roll by k g); the check rows stay zero."""
        real, imag = self._halves(matrix, t)
        block = real + 1j * imag
        i = np.arange(self.rows)[:, None]
        slots = np.arange(SLOTS)[None, :]
        out = []
        for p, o in zip(self.parts, self.offsets, strict=True):
            diag = np.zeros((p, SLOTS), dtype=np.complex128)
            diag[:, : self.rows] = block[i, o + (i + np.arange(p)[None, :]) % p].T
            shift = (np.arange(p)[:, None] // self.baby) * self.baby
            out.append(np.take_along_axis(diag, (slots - shift) % SLOTS, axis=1))  # np.roll of each row by k g
        return out

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

    def giant_groups(self) -> Iterator[tuple[int, list[range]]]:
        """(k, per part the diagonal indices k g .. k g + g - 1 it has) from the last giant step down, the order
        Horner's rule needs; a part smaller than k g has none."""
        for k in reversed(range(self.giant)):
            yield k, [range(min(p, k * self.baby), min(p, (k + 1) * self.baby)) for p in self.parts]

    def unpack(self, slot_vectors: list[np.ndarray]) -> np.ndarray:
        """The V logits from the result ciphertexts' complex slot vectors."""
        if len(slot_vectors) != self.n_ciphertexts:
            raise DimensionError(f"{len(slot_vectors)} result vectors; the layout has {self.n_ciphertexts}")
        parts = [np.concatenate([v.real[: self.rows], v.imag[: self.rows]]) for v in slot_vectors]
        return np.concatenate(parts)[: self.vocab]

    def unused(self, slot_vectors: list[np.ndarray]) -> np.ndarray:
        """The check slots past the outputs, which hold zero (plus noise) when decrypted with the right key."""
        return np.concatenate([v[self.rows :] for v in slot_vectors])


def simulate(layout: DiagonalLayout, matrix: np.ndarray, bias: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The provider's algorithm on plaintext slot vectors (np.roll for rotations): the encrypted path's twin."""
    matrix, bias = np.asarray(matrix, dtype=np.float64), np.asarray(bias, dtype=np.float64)
    layout.check_matrix(matrix, bias)
    g = layout.baby
    baby = [[np.roll(q, -b) for b in range(min(g, p))] for q, p in zip(layout.pack_query(x), layout.parts, strict=True)]
    results = []
    for t in range(layout.n_ciphertexts):
        diags = layout.diagonals(matrix, t)
        acc = None
        for k, groups in layout.giant_groups():
            partial = sum(diags[m][j] * baby[m][j - k * g] for m, js in enumerate(groups) for j in js)
            acc = partial if acc is None else partial + np.roll(acc, -g)
        results.append(acc + layout.bias_slots(bias, t))
    return layout.unpack(results)
