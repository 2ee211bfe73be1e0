"""The interleaved slot layout that makes an encrypted linear head cost one multiplication and ~log2(d) - 1
rotations, with no slot of the result holding anything but an output or zero.

A K x d matrix ``A`` (rows = classes) applied to an encrypted d-vector ``x``:

- Two inputs per slot. CKKS slots are complex, so the client writes ``q_t = x[t] + i x[t + h]`` (h = ceil(d / 2))
  and the provider multiplies by ``A[k, t] - i A[k, t + h]``: the real part of each product is
  ``x[t] A[k, t] + x[t + h] A[k, t + h]``, two terms of the dot product in one slot.
- Interleaved classes. Slot ``k + P t`` holds class k's term t (``P = stride``, ``t < span``): class k owns the
  coset ``k + P Z`` of the 4096 slots, and the client repeats ``q_t`` in every class's coset.
- An all-reduce, not a window sum. Rotating by ``P, 2P, 4P, ..., 2048`` and adding sums each coset cyclically, so
  EVERY slot of coset k ends up holding class k's complete sum, and the cosets of unused classes hold zero.
  ``span`` (terms per class) is ``h`` rounded up to a power of two, so the rotations number log2(span): 9 for
  768 -> 5 classes, which fits one ciphertext (8 cosets of 512).
- Real parts only. The provider returns ``ct + conj(ct)``: the imaginary parts of the sums (cross terms
  ``x[t + h] A[k, t] - x[t] A[k, t + h]``, a second linear function of the head) never leave it.

A window sum over contiguous blocks (the previous design) leaves partial sums in the other slots, from which one
query reads the matrix; masking them costs a modulus level, and a CKKS mask is never exactly zero (a nonzero
integer polynomial vanishes at no slot), so a large query read the partial sums through the mask's rounding. Here
no partial sum is left in any slot to mask. More classes than cosets use more products of the same query.

No encryption here (numpy; tenseal loads only for ``ckks.SLOTS``): ``simulate_slots`` runs the same slot
algorithm in plaintext, every slot of it, the twin the tests compare the encrypted path with (and
``simulate_packed`` the same for any slot vector a client might encrypt).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from securealign.crypto.ckks import SLOTS
from securealign.crypto.errors import DimensionError, ParameterError

# multiplications the packed algorithm needs: the head's product (no mask: see the module docstring)
DEPTH = 1


@dataclass(frozen=True)
class Layout:
    """Where an input vector and a K x d matrix sit in the slots; shared by client and provider as plain JSON.

    ``stride`` is both the distance between a class's consecutive terms and the number of classes one result
    ciphertext holds; ``span`` is the number of complex terms per class (``stride * span == SLOTS``).
    """

    d_in: int
    n_classes: int
    stride: int
    span: int
    n_ciphertexts: int

    @classmethod
    def plan(cls, d_in: int, n_classes: int) -> Layout:
        if not 1 <= d_in <= 2 * SLOTS:
            raise DimensionError(f"input dimension {d_in} is outside 1..{2 * SLOTS} (two inputs per complex slot)")
        if n_classes < 1:
            raise DimensionError("a head needs at least one class")
        span = 1 << (math.ceil(d_in / 2) - 1).bit_length()
        stride = SLOTS // span
        return cls(d_in, n_classes, stride, span, math.ceil(n_classes / stride))

    @classmethod
    def from_dict(cls, data: dict) -> Layout:
        """A layout received from the other party, re-planned and compared so a forged one is refused."""
        try:
            layout = cls.plan(int(data["d_in"]), int(data["n_classes"]))
        except (KeyError, TypeError, ValueError, OverflowError) as exc:  # OverflowError: int(float("inf"))
            raise ParameterError(f"malformed layout {data!r}: {exc}") from None
        if layout.to_dict() != data:  # exactly its fields: nothing else rides along
            raise ParameterError(f"layout {data!r} is not the protocol's layout for these dimensions")
        return layout

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def half(self) -> int:
        """Inputs in the real parts (the first ``half``); the rest ride in the imaginary parts."""
        return math.ceil(self.d_in / 2)

    @property
    def steps(self) -> list[int]:
        """The rotation steps (Galois keys) of the all-reduce: stride, 2 stride, ..., SLOTS / 2."""
        return [self.stride << k for k in range(self.span.bit_length() - 1)]

    def classes_in(self, t: int) -> int:
        """How many classes result ciphertext ``t`` holds (cosets 0 .. classes_in(t) - 1 of it)."""
        return min(self.stride, self.n_classes - t * self.stride)

    def _terms(self, vector: np.ndarray) -> np.ndarray:
        """``vector`` (length d) folded into ``span`` complex terms: real parts first half, imaginary parts rest."""
        terms = np.zeros(self.span, dtype=np.complex128)
        terms[: self.half] = vector[: self.half]
        terms[: self.d_in - self.half] += 1j * vector[self.half :]
        return terms

    def pack_query(self, x: np.ndarray) -> np.ndarray:
        """The client's complex slot vector: term t of ``x`` at slot ``k + stride * t`` for every class coset k."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.d_in,):
            raise DimensionError(f"query has shape {x.shape}; this layout takes a vector of {self.d_in}")
        if not np.all(np.isfinite(x)):
            raise DimensionError("query contains NaN or infinite values")
        return np.repeat(self._terms(x), self.stride)

    def pack_matrix(self, matrix: np.ndarray) -> list[np.ndarray]:
        """The provider's weight slot vectors, one per result ciphertext: conj(terms of row k) in coset k, so the
        real part of query times weights holds two terms of row k's dot product per slot."""
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.shape != (self.n_classes, self.d_in):
            raise DimensionError(f"head of shape {matrix.shape} does not fit layout {self}")
        packed = []
        for t in range(self.n_ciphertexts):
            weights = np.zeros((self.span, self.stride), dtype=np.complex128)
            for k in range(self.classes_in(t)):
                weights[:, k] = np.conj(self._terms(matrix[t * self.stride + k]))
            packed.append(weights.reshape(-1))
        return packed

    def place_outputs(self, values: np.ndarray) -> list[np.ndarray]:
        """One real value per output, in every slot of that output's coset, zero in unused cosets: the bias, and
        the shape of every result."""
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (self.n_classes,):
            raise DimensionError(f"{values.shape} output values do not fit layout {self}")
        placed = []
        for t in range(self.n_ciphertexts):
            row = np.zeros(self.stride)
            row[: self.classes_in(t)] = values[t * self.stride : (t + 1) * self.stride]
            placed.append(np.tile(row, self.span))
        return placed

    def output_indices(self) -> np.ndarray:
        """One slot per output (its coset's first slot) in the result vectors laid end to end (ciphertext t's
        slots from t * SLOTS); every other slot of the coset holds a copy."""
        return np.concatenate([np.arange(self.classes_in(t)) + t * SLOTS for t in range(self.n_ciphertexts)])

    def unpack_result(self, slot_vectors: list[np.ndarray]) -> np.ndarray:
        """The K outputs from the result slot vectors: each the mean of its coset's ``span`` copies (the copies
        carry independent CKKS noise, so the mean is the most precise reading)."""
        if len(slot_vectors) != self.n_ciphertexts:
            raise DimensionError(f"{len(slot_vectors)} result vectors; the layout has {self.n_ciphertexts}")
        return np.concatenate(
            [
                np.real(v).reshape(self.span, self.stride)[:, : self.classes_in(t)].mean(axis=0)
                for t, v in enumerate(slot_vectors)
            ]
        )

    def deviation(self, slot_vectors: list[np.ndarray]) -> float:
        """How far the result slots are from the shape every genuine result has: real, each used coset constant,
        unused cosets zero. CKKS noise leaves ~1e-6; a foreign key or tampered bytes leave ~1e7."""
        outputs = self.place_outputs(self.unpack_result(slot_vectors))
        return max(float(np.max(np.abs(v - o))) for v, o in zip(slot_vectors, outputs, strict=True))

    def all_reduce(self, vector, rotate, add):
        """Sum every class coset into each of its slots, given functional rotate/add for slot arrays or
        ciphertexts: S <- S + rot(S, step) over the steps, each a doubling of the terms summed."""
        for step in self.steps:
            vector = add(vector, rotate(vector, step))
        return vector


def simulate_packed(layout: Layout, matrix: np.ndarray, bias: np.ndarray, query: np.ndarray) -> list[np.ndarray]:
    """Every slot of every result vector the provider returns for any query slot vector (a packed query, or
    whatever a client chose to encrypt), computed without encryption: product, all-reduce, real part, bias."""
    return [
        np.real(layout.all_reduce(query * weights, lambda v, k: np.roll(v, -k), np.add)) + offsets
        for weights, offsets in zip(layout.pack_matrix(matrix), layout.place_outputs(bias), strict=True)
    ]


def simulate_slots(layout: Layout, matrix: np.ndarray, bias: np.ndarray, x: np.ndarray) -> list[np.ndarray]:
    """Every slot of every result vector for the query ``x``, packed as the client packs it."""
    return simulate_packed(layout, matrix, bias, layout.pack_query(x))


def simulate(layout: Layout, matrix: np.ndarray, bias: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The K outputs of the packed algorithm run in plaintext: what the client decrypts, without encryption."""
    return layout.unpack_result(simulate_slots(layout, matrix, bias, x))
