"""Secure fitting of the ridge map from public data (the paper's two-party protocol), and its sealed variant.

Both rest on one primitive, the encrypted cross-product ``Enc(Y^T X)``: the key holder encrypts the rows of ``X``
(each row repeated ``g = 4096 // p`` times, one ciphertext per row), the other party multiplies them slot-wise by its
plaintext rows of ``Y`` and sums over rows, with no rotations at all; the result holds ``g`` rows of ``Y^T X`` per
ciphertext. Cost: n * ceil(q / g) plaintext multiplications; traffic: n ciphertexts up, ceil(q / g) down.

- Paper mode (``fit_map_paper``): the client holds the key and encrypts ``[Z_B, 1]``; the provider returns
  ``Enc(Z_A^T [Z_B, 1])``; the client decrypts it and solves the ridge system locally, so the client learns W.
- Sealed mode (``fit_map_sealed``): the provider must obtain W but should learn nothing else of the client's
  data. The ridge solution is ``W' = G^-1 X^T Z_A = (X G^-1)^T Z_A`` with ``X = [Z_B, 1]`` and
  ``G = X^T X + alpha D`` (the client's own data), so the provider encrypts ``Z_A`` under a key of its own, the
  client computes ``Enc((X G^-1)^T Z_A) = Enc(W')`` with its plaintext ``X G^-1``, and the provider decrypts exactly
  ``[W; b]``: it never sees ``Z_B``, ``G`` or ``X^T Z_A``, and the client sees only ciphertexts.
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import tenseal.sealapi as seal
from tqdm.auto import tqdm

from securealign.crypto import ckks, wire
from securealign.crypto.client import check_real
from securealign.crypto.errors import DimensionError, KeyMismatchError, ParameterError

BATCH_ROWS = wire.LIMITS[wire.MessageType.MATRIX].max_blobs


@dataclass(frozen=True)
class CrossLayout:
    """Shapes of ``Y^T X`` (q x p) in ciphertexts: ``per_ct`` rows of p slots each, ``n_ciphertexts`` in all."""

    p: int
    q: int

    def __post_init__(self) -> None:
        if not 1 <= self.p <= ckks.SLOTS or self.q < 1:
            raise DimensionError(f"cross-product of {self.q} x {self.p} does not fit {ckks.SLOTS} slots per row")

    @property
    def per_ct(self) -> int:
        return ckks.SLOTS // self.p

    @property
    def n_ciphertexts(self) -> int:
        return math.ceil(self.q / self.per_ct)

    def pack_row(self, x: np.ndarray) -> np.ndarray:
        slots = np.zeros(ckks.SLOTS)
        slots[: self.per_ct * self.p] = np.tile(x, self.per_ct)
        return slots

    def pack_weights(self, y: np.ndarray, t: int) -> np.ndarray:
        rows = y[t * self.per_ct : (t + 1) * self.per_ct]
        slots = np.zeros(ckks.SLOTS)
        slots[: len(rows) * self.p] = np.repeat(rows, self.p)
        return slots

    def unpack(self, slot_vectors: list[np.ndarray]) -> np.ndarray:
        rows = [np.real(v)[: self.per_ct * self.p].reshape(self.per_ct, self.p) for v in slot_vectors]
        return np.vstack(rows)[: self.q]


@dataclass
class FitCost:
    """What a secure fit cost: rows, bytes each way and milliseconds per party."""

    rows: int
    bytes_up: int = 0
    bytes_down: int = 0
    ms: dict[str, float] = field(default_factory=dict)

    def add_ms(self, party: str, start: float) -> None:
        self.ms[party] = self.ms.get(party, 0.0) + (time.perf_counter() - start) * 1e3


class KeyHolder:
    """The party that encrypts ``X`` and decrypts ``Enc(Y^T X)``; its secret key never leaves this object."""

    def __init__(self) -> None:
        self._keys = ckks.KeyPair.generate()
        self.key_id = secrets.token_hex(16)

    def encrypt_rows(self, X: np.ndarray, q: int) -> Iterator[bytes]:
        """MATRIX messages of up to ``BATCH_ROWS`` encrypted rows each, laid out for a q-row cross-product."""
        X = _finite("X", X)
        layout = CrossLayout(X.shape[1], q)
        for start in range(0, len(X), BATCH_ROWS):
            rows = X[start : start + BATCH_ROWS]
            blobs = [self._keys.encrypt(layout.pack_row(x)) for x in rows]
            meta = {"key": self.key_id, "stage": "rows", "rows": len(rows), "cols": layout.p, "q": q}
            yield wire.encode(wire.MessageType.MATRIX, meta, blobs)

    def decrypt(self, data: bytes) -> np.ndarray:
        """``Y^T X`` from the evaluator's MATRIX message, after the key and noise check."""
        message = wire.decode(data, wire.MessageType.MATRIX)
        meta = message.meta
        if meta["key"] != self.key_id or meta["stage"] != "product":
            raise KeyMismatchError("this cross-product was not computed on rows encrypted under this key")
        layout = CrossLayout(meta["cols"], meta["rows"])
        if len(message.blobs) != layout.n_ciphertexts:
            raise ParameterError("cross-product message has the wrong number of ciphertexts")
        slots = self._keys.decrypt_products(message.blobs)
        check_real(slots)
        return layout.unpack(slots)


class CrossProductEvaluator:
    """The party holding plaintext ``Y``: accumulates ``Enc(Y^T X)`` batch by batch (any number of rows streams)."""

    def __init__(self, Y: np.ndarray, *, progress: bool = True) -> None:
        self.Y = _finite("Y", Y)
        self._acc: list[seal.Ciphertext] | None = None
        self._layout: CrossLayout | None = None
        self._key: str | None = None
        self._done = 0
        self._bar = tqdm(total=len(self.Y), desc="secure fit: encrypted cross-product", unit="row",
                         disable=not progress)

    def add(self, data: bytes) -> None:
        message = wire.decode(data, wire.MessageType.MATRIX)
        meta = message.meta
        if meta["stage"] != "rows" or meta["rows"] != len(message.blobs) or meta.get("q") != self.Y.shape[1]:
            raise ParameterError("expected a batch of encrypted rows laid out for this cross-product")
        layout = CrossLayout(meta["cols"], self.Y.shape[1])
        if self._layout is None:
            self._layout, self._key = layout, meta["key"]
            self._acc = [None] * layout.n_ciphertexts
        elif layout != self._layout or meta["key"] != self._key:
            raise KeyMismatchError("batch differs in key or width from the first batch")
        if self._done + len(message.blobs) > len(self.Y):
            raise DimensionError(f"more encrypted rows than the {len(self.Y)} plaintext rows")
        ev = ckks.evaluator()
        for blob in message.blobs:
            row = ckks.load_ciphertext(blob, parms_id=ckks.top_parms_id(), scale=ckks.SCALE)
            y = self.Y[self._done]
            for t in range(layout.n_ciphertexts):
                product = seal.Ciphertext()
                ev.multiply_plain(row, ckks.encode(layout.pack_weights(y, t), ckks.top_parms_id(), ckks.SCALE), product)
                if self._acc[t] is None:
                    self._acc[t] = product
                else:
                    ev.add_inplace(self._acc[t], product)
            self._done += 1
            self._bar.update(1)

    def result(self) -> bytes:
        """The MATRIX message holding ``Enc(Y^T X)``, once every row has been added."""
        if self._acc is None or self._done != len(self.Y):
            raise DimensionError(f"{self._done} of {len(self.Y)} rows received; the cross-product is incomplete")
        self._bar.close()
        for ct in self._acc:
            ckks.evaluator().rescale_to_next_inplace(ct)
        meta = {"key": self._key, "stage": "product", "rows": self._layout.q, "cols": self._layout.p}
        return wire.encode(wire.MessageType.MATRIX, meta, [ckks.save_bytes(ct) for ct in self._acc])


def _finite(name: str, array: np.ndarray) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 2 or 0 in array.shape or not np.all(np.isfinite(array)):
        raise DimensionError(f"{name} must be a finite, non-empty 2-d array, got shape {array.shape}")
    return array


def _with_ones(Z: np.ndarray) -> np.ndarray:
    return np.hstack([Z, np.ones((len(Z), 1))])


def _regularised_gram(X: np.ndarray, alpha: float) -> np.ndarray:
    """``X^T X + alpha D`` where D leaves the intercept column unpenalised (ridge on centred data, as scikit-learn)."""
    penalty = np.full(X.shape[1], float(alpha))
    penalty[-1] = 0.0
    return X.T @ X + np.diag(penalty)


def _split(solution: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return solution[:-1], solution[-1]


def _cross_product(holder: KeyHolder, X: np.ndarray, Y: np.ndarray, cost: FitCost, holder_party: str,
                   other_party: str, progress: bool) -> np.ndarray:
    """Run the primitive between the two roles, counting bytes and time per party."""
    evaluator = CrossProductEvaluator(Y, progress=progress)
    start = time.perf_counter()
    for batch in holder.encrypt_rows(X, Y.shape[1]):
        cost.add_ms(holder_party, start)
        cost.bytes_up += len(batch)
        start = time.perf_counter()
        evaluator.add(batch)
        cost.add_ms(other_party, start)
        start = time.perf_counter()
    start = time.perf_counter()
    product = evaluator.result()
    cost.add_ms(other_party, start)
    cost.bytes_down += len(product)
    start = time.perf_counter()
    decrypted = holder.decrypt(product)
    cost.add_ms(holder_party, start)
    return decrypted


def _check_pairs(Z_B: np.ndarray, Z_A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    Z_B, Z_A = _finite("Z_B", Z_B), _finite("Z_A", Z_A)
    if len(Z_B) != len(Z_A):
        raise DimensionError(f"{len(Z_B)} client rows but {len(Z_A)} provider rows: the public texts must be paired")
    return Z_B, Z_A


def fit_map_paper(Z_B: np.ndarray, Z_A: np.ndarray, alpha: float, *, progress: bool = True
                  ) -> tuple[np.ndarray, np.ndarray, FitCost]:
    """Paper mode: the client ends up with (W, b); the provider saw only ciphertexts of ``[Z_B, 1]``."""
    Z_B, Z_A = _check_pairs(Z_B, Z_A)
    X, cost = _with_ones(Z_B), FitCost(len(Z_B))
    cross = _cross_product(KeyHolder(), X, Z_A, cost, "client", "provider", progress)  # Z_A^T X
    start = time.perf_counter()
    solution = np.linalg.solve(_regularised_gram(X, alpha), cross.T)
    cost.add_ms("client", start)
    return (*_split(solution), cost)


def fit_map_sealed(Z_B: np.ndarray, Z_A: np.ndarray, alpha: float, *, progress: bool = True
                   ) -> tuple[np.ndarray, np.ndarray, FitCost]:
    """Sealed mode: the provider ends up with (W, b) and nothing else; the client saw only ciphertexts of ``Z_A``.

    Here ``bytes_up`` counts the provider's encrypted rows and ``bytes_down`` the client's encrypted W.
    """
    Z_B, Z_A = _check_pairs(Z_B, Z_A)
    cost = FitCost(len(Z_B))
    start = time.perf_counter()
    X = _with_ones(Z_B)
    weights = np.linalg.solve(_regularised_gram(X, alpha), X.T).T  # X G^-1, the client's plaintext
    cost.add_ms("client", start)
    solution = _cross_product(KeyHolder(), Z_A, weights, cost, "provider", "client", progress)  # (X G^-1)^T Z_A
    return (*_split(solution), cost)
