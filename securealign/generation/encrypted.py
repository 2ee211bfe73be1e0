"""The encrypted vocabulary head: the provider evaluates map + LM head (one V x d matrix) on the client's
encrypted source hidden state and returns encrypted logits over the whole target vocabulary.

Built on SEAL's API (``tenseal.sealapi``) through the protocol's CKKS module (same parameters, key pair, symmetric
seeded encryption and byte checks), with the diagonal layout of :mod:`securealign.generation.diagonal`. The
provider pre-encodes the diagonals once, d per result ciphertext at 131 KB each (a 49k x 640 head: 4,480 and
0.59 GB; 152k x 896: 17,024 and 2.2 GB; 152k x 1536: 29,184 and 3.8 GB), and only ever receives Galois keys for
two rotation steps, never a secret key.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tenseal.sealapi as seal

from securealign.crypto import ckks
from securealign.crypto.errors import KeyMismatchError, LimitExceededError, ParameterError, WireFormatError
from securealign.generation.diagonal import DiagonalLayout

MAX_QUERY_BYTES = 1 << 20  # one seeded query ciphertext is ~0.12 MB
MAX_KEY_BYTES = 4 << 20  # seeded Galois keys for two steps are ~0.7 MB
# Check slots decrypt to zero plus CKKS noise (~1e-6); other keys give values near 1e7.
MAX_UNUSED_SLOT = 1e-2
# one plaintext multiplication: every output slot is a complete dot product, so no mask level is needed
DEPTH = 1


class VocabularyProvider:
    """Holds the pre-composed (V, d) matrix as encoded diagonals; evaluates it on encrypted queries."""

    def __init__(self, matrix: np.ndarray, bias: np.ndarray) -> None:
        matrix, bias = np.asarray(matrix, dtype=np.float64), np.asarray(bias, dtype=np.float64)
        if matrix.ndim != 2 or bias.ndim != 1:
            raise ParameterError(f"expected a (V, d) matrix and a (V,) bias, got {matrix.shape} and {bias.shape}")
        self.layout = DiagonalLayout.plan(matrix.shape[1], matrix.shape[0])
        self.layout.check_matrix(matrix, bias)
        top, bottom = ckks.fresh_parms_id(DEPTH), ckks.bottom_parms_id()
        # per result ciphertext, per part, its diagonals; one block at a time keeps the numpy side to ~130 MB
        self._blocks: list[list[list[seal.Plaintext]]] = []
        self._biases: list[seal.Plaintext] = []
        for t in range(self.layout.n_ciphertexts):
            diags = self.layout.diagonals(matrix, t)
            self._blocks.append([[ckks.encode(row, top, ckks.SCALE) for row in part] for part in diags])
            self._biases.append(ckks.encode(self.layout.bias_slots(bias, t), bottom, ckks.rescaled_scale()))
        self._galois_keys: seal.GaloisKeys | None = None

    @property
    def plaintext_bytes(self) -> int:
        """Memory held by the encoded diagonals and biases."""
        per_plain = 8 * ckks.POLY_DEGREE
        top_primes = len(ckks.context().get_context_data(ckks.fresh_parms_id(DEPTH)).parms().coeff_modulus())
        return per_plain * (top_primes * self.layout.products + self.layout.n_ciphertexts)

    def load_keys(self, galois_keys: bytes) -> None:
        """Accept the client's public rotation keys (the only key material the provider ever sees)."""
        if len(galois_keys) > MAX_KEY_BYTES:
            raise LimitExceededError(f"Galois keys of {len(galois_keys):,} bytes exceed {MAX_KEY_BYTES:,}")
        # exactly the layout's steps (no conjugation: its imaginary parts are outputs), each key's element checked
        self._galois_keys, _ = ckks.load_galois_keys(galois_keys, self.layout.steps, conjugate=False)

    def _load_query(self, query: Sequence[bytes]) -> list[seal.Ciphertext]:
        """The client's ciphertexts, one per part of the layout, each a fresh seeded one within the size limit."""
        if isinstance(query, (bytes, bytearray)) or not all(isinstance(q, (bytes, bytearray)) for q in query):
            raise WireFormatError("a query is a sequence of ciphertexts (bytes), one per part of the input")
        if len(query) != len(self.layout.parts):
            raise ParameterError(
                f"{len(query)} query ciphertexts; this head takes {len(self.layout.parts)} "
                f"(one per part {list(self.layout.parts)} of its {self.layout.d} inputs)"
            )
        for blob in query:
            if len(blob) > MAX_QUERY_BYTES:
                raise LimitExceededError(f"a query ciphertext of {len(blob):,} bytes exceeds {MAX_QUERY_BYTES:,}")
        return [ckks.load_fresh(bytes(blob), DEPTH) for blob in query]

    def evaluate(self, query: Sequence[bytes]) -> tuple[bytes, ...]:
        """Encrypted logits for one encrypted query: one ciphertext per 2 * rows vocabulary entries."""
        if self._galois_keys is None:
            raise ParameterError("no Galois keys loaded; call load_keys first")
        parts = self._load_query(query)
        ev, keys, g = ckks.evaluator(), self._galois_keys, self.layout.baby
        babies = []  # per part, rot(x_part, b) for b < min(g, p): shared by every block
        for x, p in zip(parts, self.layout.parts, strict=True):
            babies.append([x])
            for _ in range(1, min(g, p)):
                babies[-1].append(ckks.rotate(babies[-1][-1], 1, keys))
        results = []
        for plains, bias in zip(self._blocks, self._biases, strict=True):
            acc = None
            for k, groups in self.layout.giant_groups():
                terms = [(babies[m][j - k * g], plains[m][j]) for m, js in enumerate(groups) for j in js]
                partial = _dot(ev, terms)
                if acc is not None:
                    ev.add_inplace(partial, ckks.rotate(acc, g, keys))
                acc = partial
            ev.rescale_to_next_inplace(acc)
            ev.add_plain_inplace(acc, bias)
            results.append(acc)
        return tuple(self._release(ct) for ct in results)

    def _release(self, result: seal.Ciphertext) -> bytes:
        """The one place a result ciphertext leaves the provider: any post-processing of results goes here."""
        return ckks.save_bytes(result)


def _dot(ev: seal.Evaluator, terms: list[tuple[seal.Ciphertext, seal.Plaintext]]) -> seal.Ciphertext:
    """sum of ct * plain over the terms, accumulated in place."""
    acc, product = seal.Ciphertext(), seal.Ciphertext()
    ev.multiply_plain(*terms[0], acc)
    for ct, plain in terms[1:]:
        ev.multiply_plain(ct, plain, product)
        ev.add_inplace(acc, product)
    return acc


class VocabularyClient:
    """The client: holds the secret key, encrypts its source hidden state and decrypts the logits."""

    def __init__(self, layout: DiagonalLayout) -> None:
        self.layout = layout
        self._keys = ckks.KeyPair.generate()

    def galois_keys(self) -> bytes:
        """The public rotation keys the provider needs (two steps, seeded)."""
        return self._keys.galois_keys_bytes(self.layout.steps, conjugate=False)  # its imaginary parts are outputs

    def encrypt(self, hidden: np.ndarray) -> tuple[bytes, ...]:
        """One seeded ciphertext per part of the layout."""
        return tuple(self._keys.encrypt(slots, DEPTH) for slots in self.layout.pack_query(hidden))

    def decrypt(self, results: tuple[bytes, ...]) -> np.ndarray:
        """The V logits; refuses results whose check slots are not ~0 (made under other keys, or tampered)."""
        if len(results) != self.layout.n_ciphertexts:
            raise ParameterError(f"{len(results)} result ciphertexts; expected {self.layout.n_ciphertexts}")
        vectors = self._keys.decrypt_products(tuple(results), ckks.rescaled_scale())
        noise = float(np.max(np.abs(self.layout.unused(vectors))))
        if not noise < MAX_UNUSED_SLOT:
            raise KeyMismatchError(f"result padding decrypts to {noise:.3g}, not ~0: wrong keys or a corrupt result")
        return self.layout.unpack(vectors)


@dataclass
class StepCost:
    """What one encrypted decoding step cost each party, and what crossed the wire."""

    encrypt_ms: float
    provider_ms: float
    decrypt_ms: float
    bytes_up: int
    bytes_down: int


class EncryptedHead:
    """Source hidden state -> target logits through a client/provider round trip (in-process), timing each part."""

    def __init__(self, matrix: np.ndarray, bias: np.ndarray) -> None:
        self.provider = VocabularyProvider(matrix, bias)
        self.client = VocabularyClient(self.provider.layout)
        self.key_bytes = self.client.galois_keys()
        self.provider.load_keys(self.key_bytes)
        self.last: StepCost | None = None

    def __call__(self, hidden: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        query = self.client.encrypt(hidden)
        t1 = time.perf_counter()
        results = self.provider.evaluate(query)
        t2 = time.perf_counter()
        logits = self.client.decrypt(results)
        t3 = time.perf_counter()
        self.last = StepCost(
            (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, sum(map(len, query)), sum(map(len, results))
        )
        return logits
