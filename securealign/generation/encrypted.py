"""The encrypted vocabulary head: the provider evaluates map + LM head (one V x d matrix) on the client's
encrypted source hidden state and returns encrypted logits over the whole target vocabulary.

Built on SEAL's API (``tenseal.sealapi``) through the protocol's CKKS module (same parameters, key pair, symmetric
seeded encryption and byte checks), with the diagonal layout of :mod:`securealign.generation.diagonal`. The
provider pre-encodes the diagonals once (about 130 KB each; ~5k of them for a 49k vocabulary, ~0.7 GB) and only
ever receives Galois keys for two rotation steps, never a secret key.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import tenseal.sealapi as seal

from securealign.crypto import ckks
from securealign.crypto.errors import KeyMismatchError, LimitExceededError, ParameterError
from securealign.generation.diagonal import DiagonalLayout

MAX_QUERY_BYTES = 1 << 20  # a seeded query ciphertext is ~0.4 MB
MAX_KEY_BYTES = 4 << 20  # seeded Galois keys for two steps are ~1.3 MB
# Slots past the outputs decrypt to zero plus CKKS noise (~1e-6); other keys give values near 1e30.
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
        self._blocks: list[list[seal.Plaintext]] = []
        self._biases: list[seal.Plaintext] = []
        for t in range(self.layout.n_ciphertexts):
            diag = self.layout.diagonals(matrix, t)  # one block at a time keeps the numpy side to ~40 MB
            self._blocks.append([_encode_complex(diag[j], top, ckks.SCALE) for j in range(self.layout.d)])
            self._biases.append(_encode_complex(self.layout.bias_slots(bias, t), bottom, ckks.rescaled_scale()))
        self._galois_keys: seal.GaloisKeys | None = None

    @property
    def plaintext_bytes(self) -> int:
        """Memory held by the encoded diagonals and biases."""
        per_plain = 8 * ckks.POLY_DEGREE
        top_primes = len(ckks.context().get_context_data(ckks.fresh_parms_id(DEPTH)).parms().coeff_modulus())
        return per_plain * (top_primes * self.layout.d * self.layout.n_ciphertexts + self.layout.n_ciphertexts)

    def load_keys(self, galois_keys: bytes) -> None:
        """Accept the client's public rotation keys (the only key material the provider ever sees)."""
        if len(galois_keys) > MAX_KEY_BYTES:
            raise LimitExceededError(f"Galois keys of {len(galois_keys):,} bytes exceed {MAX_KEY_BYTES:,}")
        # exactly the layout's steps (no conjugation: its imaginary parts are outputs), each key's element checked
        self._galois_keys, _ = ckks.load_galois_keys(galois_keys, self.layout.steps, conjugate=False)

    def evaluate(self, query: bytes) -> tuple[bytes, ...]:
        """Encrypted logits for one encrypted query: one ciphertext per 2 * rows vocabulary entries."""
        if self._galois_keys is None:
            raise ParameterError("no Galois keys loaded; call load_keys first")
        if len(query) > MAX_QUERY_BYTES:
            raise LimitExceededError(f"a query of {len(query):,} bytes exceeds {MAX_QUERY_BYTES:,}")
        x = ckks.load_fresh(query, DEPTH)
        ev, keys, g = ckks.evaluator(), self._galois_keys, self.layout.baby
        baby = [x]  # rot(x, b), shared by every block
        for _ in range(1, g):
            baby.append(ckks.rotate(baby[-1], 1, keys))
        results = []
        for plains, bias in zip(self._blocks, self._biases, strict=False):
            acc = None
            for k, js in self.layout.giant_groups():
                partial = _dot(ev, [baby[j - k * g] for j in js], [plains[j] for j in js])
                if acc is not None:
                    ev.add_inplace(partial, ckks.rotate(acc, g, keys))
                acc = partial
            ev.rescale_to_next_inplace(acc)
            ev.add_plain_inplace(acc, bias)
            results.append(ckks.save_bytes(acc))
        return tuple(results)


def _encode_complex(values: np.ndarray, parms_id, scale: float) -> seal.Plaintext:
    plain = seal.Plaintext()
    ckks.encoder().encode(np.asarray(values, dtype=np.complex128).tolist(), parms_id, scale, plain)
    return plain


def _dot(ev: seal.Evaluator, cts: list[seal.Ciphertext], plains: list[seal.Plaintext]) -> seal.Ciphertext:
    """sum_i cts[i] * plains[i], accumulated in place."""
    acc, product = seal.Ciphertext(), seal.Ciphertext()
    ev.multiply_plain(cts[0], plains[0], acc)
    for ct, plain in zip(cts[1:], plains[1:], strict=False):
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

    def encrypt(self, hidden: np.ndarray) -> bytes:
        return self._keys.encrypt(self.layout.pack_query(hidden), DEPTH)

    def decrypt(self, results: tuple[bytes, ...]) -> np.ndarray:
        """The V logits; refuses results whose padding slots are not ~0 (made under other keys, or tampered)."""
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
        self.last = StepCost((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, len(query), sum(map(len, results)))
        return logits
