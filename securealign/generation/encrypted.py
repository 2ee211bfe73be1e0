"""The encrypted vocabulary head: the provider evaluates map + LM head (one V x d matrix) on the client's
encrypted source hidden state and returns encrypted logits over the whole target vocabulary.

Built on SEAL's API (``tenseal.sealapi``) through the protocol's CKKS module (same parameters, key pair, symmetric
seeded encryption and byte checks), with the diagonal layout of :mod:`securealign.generation.diagonal`. The
provider pre-encodes the diagonals once, d per result ciphertext at 131 KB each (a 49k x 640 head: 4,480 and
0.59 GB; 152k x 896: 17,024 and 2.2 GB; 152k x 1536: 29,184 and 3.8 GB), and only ever receives Galois keys for
two rotation steps, never a secret key.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tenseal.sealapi as seal

from securealign.crypto import ckks, flooding
from securealign.crypto.answers import private_output_bits
from securealign.crypto.errors import KeyMismatchError, LimitExceededError, ParameterError, WireFormatError
from securealign.generation.diagonal import DiagonalLayout, simulate

MAX_QUERY_BYTES = 1 << 20  # one seeded query ciphertext is ~0.12 MB
MAX_KEY_BYTES = 4 << 20  # seeded Galois keys for two steps are ~0.7 MB
# Check slots decrypt to zero plus CKKS noise (~1e-6); other keys give values near 1e7.
MAX_UNUSED_SLOT = 1e-2
# one plaintext multiplication: every output slot is a complete dot product, so no mask level is needed
DEPTH = 1


class VocabularyProvider:
    """Holds the pre-composed (V, d) matrix as encoded diagonals; evaluates it on encrypted queries."""

    def __init__(
        self,
        matrix: np.ndarray,
        bias: np.ndarray,
        flood: flooding.FloodPolicy | None = None,
        *,
        bound: float | None = None,
    ) -> None:
        """``flood``: re-randomise and flood every step's logits, sized from ``bound`` or, by default, from the
        noise of a public stand-in measured here."""
        matrix, bias = np.asarray(matrix, dtype=np.float64), np.asarray(bias, dtype=np.float64)
        if matrix.ndim != 2 or bias.ndim != 1:
            raise ParameterError(f"expected a (V, d) matrix and a (V,) bias, got {matrix.shape} and {bias.shape}")
        self.layout = DiagonalLayout.plan(matrix.shape[1], matrix.shape[0])
        self.layout.check_matrix(matrix, bias)
        top, bottom = ckks.fresh_parms_id(DEPTH), ckks.bottom_parms_id()
        self.scales = head_scales(flood is not None)
        _, weight_scale, result_scale = self.scales
        # per result ciphertext, per part, its diagonals; one block at a time keeps the numpy side to ~130 MB
        self._blocks: list[list[list[seal.Plaintext]]] = []
        self._biases: list[seal.Plaintext] = []
        for t in range(self.layout.n_ciphertexts):
            diags = self.layout.diagonals(matrix, t)
            self._blocks.append([[ckks.encode(row, top, weight_scale) for row in part] for part in diags])
            self._biases.append(ckks.encode(self.layout.bias_slots(bias, t), bottom, result_scale))
        self._galois_keys: seal.GaloisKeys | None = None
        # circuit privacy (crypto/flooding.py): the logits are re-randomised and flooded before they leave
        self._encryptor: seal.Encryptor | None = None
        self._seen_keys: set[bytes] = set()
        self.flood: flooding.IidFlood | None = None
        if flood is not None and bound is not None:
            self.flood = flooding.IidFlood(flood, bound)
        elif flood is not None:  # sized from a public stand-in: the flood's std is visible (crypto/flooding.py)
            twin, twin_bias = flooding.stand_in(matrix.shape, flooding.public_row_norm(matrix))
            stand_in = VocabularyProvider(twin, twin_bias, flood, bound=0.0)
            self.flood = flooding.IidFlood.measure(flood, lambda keys: stand_in._noise(keys, twin, twin_bias))

    def _noise(self, keys: ckks.KeyPair, matrix: np.ndarray, bias: np.ndarray) -> list[np.ndarray]:
        """The slot errors of one evaluation under keys of the provider's own (the flood's noise measurement, run on
        a stand-in head: it encodes a second matrix of this head's shape once)."""
        x = np.random.default_rng().normal(size=self.layout.d)
        self._galois_keys, _ = ckks.load_galois_keys(
            keys.galois_keys_bytes(self.layout.steps, conjugate=False), self.layout.steps, conjugate=False
        )
        query = tuple(keys.encrypt(slots, DEPTH, self.scales[0]) for slots in self.layout.pack_query(x))
        got = keys.decrypt_products(self.evaluate(query), self.scales[2])
        self._galois_keys = None
        exact = np.zeros(self.layout.n_ciphertexts * 2 * self.layout.rows)
        exact[: self.layout.vocab] = simulate(self.layout, matrix, bias, x)
        halves = exact.reshape(self.layout.n_ciphertexts, 2, self.layout.rows)
        return [
            g - np.pad(h[0] + 1j * h[1], (0, ckks.SLOTS - self.layout.rows)) for g, h in zip(got, halves, strict=True)
        ]

    @property
    def plaintext_bytes(self) -> int:
        """Memory held by the encoded diagonals and biases."""
        per_plain = 8 * ckks.POLY_DEGREE
        top_primes = len(ckks.context().get_context_data(ckks.fresh_parms_id(DEPTH)).parms().coeff_modulus())
        return per_plain * (top_primes * self.layout.products + self.layout.n_ciphertexts)

    def load_keys(self, galois_keys: bytes, public_key: bytes | None = None) -> None:
        """Accept the client's public rotation keys (the only key material the provider ever sees) and, for a
        flooded head, its public key."""
        if self.flood is not None and self._encryptor is None and public_key is None:
            raise ParameterError("this head floods its logits: it needs the client's public key too")
        if public_key is not None and self.flood is not None:
            digest = hashlib.sha256(public_key).digest()
            if digest in self._seen_keys:  # a key's count of flooded answers does not restart
                raise ParameterError("this public key was loaded before: send fresh keys")
            self._encryptor = ckks.load_public_key(public_key)
            self._seen_keys.add(digest)
            self.flood = flooding.IidFlood(self.flood.policy, self.flood.bound)
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
        return [ckks.load_fresh(bytes(blob), DEPTH, self.scales[0]) for blob in query]

    def evaluate(self, query: Sequence[bytes]) -> tuple[bytes, ...]:
        """Encrypted logits for one encrypted query: one ciphertext per 2 * rows vocabulary entries."""
        if self._galois_keys is None:
            raise ParameterError("no Galois keys loaded; call load_keys first")
        parts = self._load_query(query)
        if self.flood is not None and self._encryptor is not None:
            self.flood.charge()  # tau answers per key
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
        """The one place a result ciphertext leaves the provider: any post-processing of results goes here (a
        flooded head re-randomises and floods it)."""
        if self.flood is not None and self._encryptor is not None:
            self.flood.apply(result, self._encryptor)
        return ckks.save_bytes(result)


def head_scales(flooded: bool) -> tuple[float, float, float]:
    """(query, weight, result) scales: the protocol's own, or for a flooded head the larger ones of circuit-private
    classification (logits below 2^6), which keep the flood ~2^12 times smaller relative to the logits."""
    if not flooded:
        return ckks.SCALE, ckks.SCALE, ckks.rescaled_scale()
    bits = private_output_bits("logits")
    return flooding.PRIVATE_QUERY_SCALE, flooding.private_weight_scale(bits), flooding.private_result_scale(bits)


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

    def __init__(self, layout: DiagonalLayout, flooded: bool = False) -> None:
        self.layout = layout
        self._keys = ckks.KeyPair.generate()
        self._scales = head_scales(flooded)

    def galois_keys(self) -> bytes:
        """The public rotation keys the provider needs (two steps, seeded)."""
        return self._keys.galois_keys_bytes(self.layout.steps, conjugate=False)  # its imaginary parts are outputs

    def public_key(self) -> bytes:
        """The public key a flooding provider re-randomises the logits with."""
        return self._keys.public_key_bytes()

    def encrypt(self, hidden: np.ndarray) -> tuple[bytes, ...]:
        """One seeded ciphertext per part of the layout."""
        return tuple(self._keys.encrypt(slots, DEPTH, self._scales[0]) for slots in self.layout.pack_query(hidden))

    def decrypt(self, results: tuple[bytes, ...], max_unused: float = MAX_UNUSED_SLOT) -> np.ndarray:
        """The V logits; refuses results whose check slots are not ~0 (made under other keys, or tampered).
        ``max_unused``: a flooded head's check slots carry its flood (``IidFlood.max_deviation``)."""
        if len(results) != self.layout.n_ciphertexts:
            raise ParameterError(f"{len(results)} result ciphertexts; expected {self.layout.n_ciphertexts}")
        vectors = self._keys.decrypt_products(tuple(results), self._scales[2])
        noise = float(np.max(np.abs(self.layout.unused(vectors))))
        if not noise < max(MAX_UNUSED_SLOT, max_unused):
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

    def __init__(self, matrix: np.ndarray, bias: np.ndarray, flood: flooding.FloodPolicy | None = None) -> None:
        """``flood``: the provider floods every step's logits; this head then makes fresh keys every tau steps."""
        self.provider = VocabularyProvider(matrix, bias, flood)
        self._new_keys()
        self.last: StepCost | None = None

    def _new_keys(self) -> None:
        self.client = VocabularyClient(self.provider.layout, self.provider.flood is not None)
        self.key_bytes = self.client.galois_keys()
        self.provider.load_keys(self.key_bytes, self.client.public_key() if self.provider.flood else None)

    def __call__(self, hidden: np.ndarray) -> np.ndarray:
        flood = self.provider.flood
        if flood is not None and flood.answers >= flood.policy.tau:  # a flooded key decrypts at most tau steps
            self._new_keys()
        t0 = time.perf_counter()
        query = self.client.encrypt(hidden)
        t1 = time.perf_counter()
        results = self.provider.evaluate(query)
        t2 = time.perf_counter()
        logits = self.client.decrypt(results, flood.max_deviation() if flood is not None else MAX_UNUSED_SLOT)
        t3 = time.perf_counter()
        self.last = StepCost(
            (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, sum(map(len, query)), sum(map(len, results))
        )
        return logits
