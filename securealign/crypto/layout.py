"""The packed slot layout that makes an encrypted linear head cost one multiplication, ~log2(d) rotations and a mask.

A K x d matrix ``A`` (rows = classes) applied to an encrypted d-vector ``x``: the client writes ``x`` into each of
``blocks_per_ct`` blocks of ``block`` slots; the provider multiplies slot-wise by the rows of ``A`` laid out in the
same blocks, then sums each block with rotations, so the first slot of block r holds ``A[r] . x``. The block length
is ``d`` rounded up to ``2^a`` or ``2^a + 2^b``: a window sum of that length needs only the rotations by
``1, 2, ..., 2^(a-1)`` (and ``2^a``), i.e. power-of-two steps, and the padding stays small (768 fits 5 blocks in
4096 slots, so 768 -> 5 classes is one ciphertext). More classes than blocks use more products of the same query.

Every other slot of the window sum holds a partial sum of ``x[i] A[r, i]`` terms: consecutive slots differ by
single products, so a client that decrypted them would read the matrix off one query. The provider therefore
multiplies the sum by an output mask (1, or a secret blinding factor, at each output slot; 0 elsewhere) before the
result leaves it: the client decrypts the K outputs and zeros.

No encryption here (numpy; tenseal loads only for ``ckks.SLOTS``): ``simulate_slots`` runs the same slot
algorithm in plaintext, every slot of it, the twin the tests compare the encrypted path with.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from securealign.crypto.ckks import SLOTS
from securealign.crypto.errors import DimensionError, ParameterError

# multiplications the packed algorithm needs: the head's product, then the output mask
DEPTH = 2


def _block_length(d: int) -> int:
    """The smallest length >= d of the form 2^a or 2^a + 2^b (cheap to window-sum with power-of-two rotations)."""
    top = 1 << (d - 1).bit_length()
    if top == d:
        return d
    high = top >> 1
    low = 1 << max(0, (d - high - 1).bit_length())
    return high + low if high + low < top else top


@dataclass(frozen=True)
class Layout:
    """Where an input vector and a K x d matrix sit in the slots; shared by client and provider as plain JSON."""

    d_in: int
    n_classes: int
    block: int
    blocks_per_ct: int
    n_ciphertexts: int

    @classmethod
    def plan(cls, d_in: int, n_classes: int) -> Layout:
        if not 1 <= d_in <= SLOTS:
            raise DimensionError(f"input dimension {d_in} is outside 1..{SLOTS} (one ciphertext's slots)")
        if n_classes < 1:
            raise DimensionError("a head needs at least one class")
        block = _block_length(d_in)
        per_ct = SLOTS // block
        return cls(d_in, n_classes, block, per_ct, math.ceil(n_classes / per_ct))

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
    def high_bits(self) -> tuple[int, int]:
        """(a, b) with block = 2^a + 2^b, or (a, -1) when block = 2^a."""
        a = self.block.bit_length() - 1
        rest = self.block - (1 << a)
        return a, (rest.bit_length() - 1 if rest else -1)

    @property
    def steps(self) -> list[int]:
        """The rotation steps (Galois keys) the window sum uses."""
        a, b = self.high_bits
        return [1 << k for k in range(a)] + ([1 << a] if b >= 0 else [])

    def pack_query(self, x: np.ndarray) -> np.ndarray:
        """The client's slot vector: ``x`` repeated in every block."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.d_in,):
            raise DimensionError(f"query has shape {x.shape}; this layout takes a vector of {self.d_in}")
        if not np.all(np.isfinite(x)):
            raise DimensionError("query contains NaN or infinite values")
        slots = np.zeros(SLOTS)
        for r in range(self.blocks_per_ct):
            slots[r * self.block : r * self.block + self.d_in] = x
        return slots

    def pack_matrix(self, matrix: np.ndarray) -> list[np.ndarray]:
        """The provider's weight slot vectors, one per result ciphertext (row k in block k of its ciphertext)."""
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.shape != (self.n_classes, self.d_in):
            raise DimensionError(f"head of shape {matrix.shape} does not fit layout {self}")
        packed = []
        for t in range(self.n_ciphertexts):
            weights = np.zeros(SLOTS)
            for r, k in enumerate(range(t * self.blocks_per_ct, min(self.n_classes, (t + 1) * self.blocks_per_ct))):
                weights[r * self.block : r * self.block + self.d_in] = matrix[k]
            packed.append(weights)
        return packed

    def output_slots(self, t: int) -> np.ndarray:
        """The slots of result ciphertext ``t`` that hold an output (first slot of each used block)."""
        return np.arange(min(self.blocks_per_ct, self.n_classes - t * self.blocks_per_ct)) * self.block

    def output_indices(self) -> np.ndarray:
        """Where the outputs sit in the result vectors laid end to end (ciphertext t's slots from t * SLOTS)."""
        return np.concatenate([self.output_slots(t) + t * SLOTS for t in range(self.n_ciphertexts)])

    def place_outputs(self, values: np.ndarray) -> list[np.ndarray]:
        """One value per output, written to that output's slot (first slot of its block), zero in every other slot:
        the bias, the 0/1 output mask and the blinding factors all take this shape."""
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (self.n_classes,):
            raise DimensionError(f"{values.shape} output values do not fit layout {self}")
        placed = []
        for t in range(self.n_ciphertexts):
            slots = np.zeros(SLOTS)
            slots[self.output_slots(t)] = values[t * self.blocks_per_ct : (t + 1) * self.blocks_per_ct]
            placed.append(slots)
        return placed

    def unpack_result(self, slot_vectors: list[np.ndarray]) -> np.ndarray:
        """The K logits from the result slot vectors (first slot of each block)."""
        if len(slot_vectors) != self.n_ciphertexts:
            raise DimensionError(f"{len(slot_vectors)} result vectors; the layout has {self.n_ciphertexts}")
        return np.real(np.concatenate(slot_vectors))[self.output_indices()]

    def window_sum(self, vector, rotate, add):
        """Sum each block into its first slot, given functional rotate/add for slot arrays or ciphertexts.

        S_1 = v, S_2k = S_k + rot(S_k, k); for block = 2^a + 2^b the result is S_2^a + rot(S_2^b, 2^a).
        """
        a, b = self.high_bits
        saved = vector
        for k in range(a):
            if k == b:
                saved = vector  # S_2^b, kept for the second term (b < a always); add() returns a new object
            vector = add(vector, rotate(vector, 1 << k))
        if b >= 0:
            vector = add(vector, rotate(saved, 1 << a))
        return vector


def simulate_slots(
    layout: Layout, matrix: np.ndarray, bias: np.ndarray, x: np.ndarray, factors: np.ndarray | None = None
) -> list[np.ndarray]:
    """Every slot of every result vector the provider returns, computed without encryption: window sum, bias,
    then the output mask scaled by ``factors`` (ones for logits, blinding factors for label-only answers)."""
    query = layout.pack_query(x)
    factors = np.ones(layout.n_classes) if factors is None else factors
    results = []
    for weights, offsets, mask in zip(
        layout.pack_matrix(matrix), layout.place_outputs(bias), layout.place_outputs(factors), strict=True
    ):
        summed = layout.window_sum(query * weights, lambda v, k: np.roll(v, -k), np.add)
        results.append((summed + offsets) * mask)
    return results


def simulate(layout: Layout, matrix: np.ndarray, bias: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The K outputs of the packed algorithm run in plaintext: what the client decrypts, without encryption."""
    return layout.unpack_result(simulate_slots(layout, matrix, bias, x))
