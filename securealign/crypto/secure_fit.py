"""The primitive of secure fitting: the encrypted cross-product, with its key holder and its evaluator.

Secure fitting of the ridge map from public data (the paper's two-party protocol) and its sealed variant rest on
one primitive, the encrypted cross-product ``Enc(Y^T X)``: the key holder encrypts the rows of ``X``
(each row repeated ``g = 4096 // p`` times, one ciphertext per row), the other party multiplies them slot-wise by its
plaintext rows of ``Y`` and sums over rows, with no rotations at all; the result holds ``g`` rows of ``Y^T X`` per
ciphertext. Cost: n * ceil(q / g) plaintext multiplications; traffic: n ciphertexts up, ceil(q / g) down.

- Paper mode (``fit_client.fit_paper``): the client holds the key and encrypts ``[Z_B, 1]``; the provider returns
  ``Enc(Z_A^T [Z_B, 1])``; the client decrypts it and solves the ridge system locally, so the client learns W.
- Sealed mode (``fit_client.fit_sealed``): the provider must obtain W but should learn nothing else of the client's
  data. The ridge solution is ``W' = G^-1 X^T Z_A = (X G^-1)^T Z_A`` with ``X = [Z_B, 1]`` and
  ``G = X^T X + alpha D`` (the client's own data), so the provider encrypts ``Z_A`` under a key of its own, the
  client computes ``Enc((X G^-1)^T Z_A) = Enc(W')`` with its plaintext ``X G^-1``, and the provider decrypts exactly
  ``[W; b]``: it never sees ``Z_B``, ``G`` or ``X^T Z_A``, and the client sees only ciphertexts.

The provider's half of both runs in ``fit_jobs.py`` (in-process or behind ``python -m securealign serve``), the
client's half in ``fit_client.py``.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import tenseal.sealapi as seal

from securealign.crypto import ckks, flooding, wire
from securealign.crypto.client import MAX_NOISE, check_real
from securealign.crypto.errors import DimensionError, KeyMismatchError, ParameterError

BATCH_ROWS = wire.LIMITS[wire.MessageType.MATRIX].max_blobs
# one plaintext multiplication per row, summed over rows: every slot of the product is an entry of Y^T X (or an
# exact zero of the padding), so the receiver decrypts nothing but the product it is meant to learn
DEPTH = 1


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


class KeyHolder:
    """The party that encrypts ``X`` and decrypts ``Enc(Y^T X)``; its secret key never leaves this object."""

    def __init__(self, keys: ckks.KeyPair | None = None) -> None:
        self._keys = keys or ckks.KeyPair.generate()
        self.key_id = secrets.token_hex(16)

    def public_key(self) -> bytes:
        """The public key the evaluator re-randomises the product with (circuit privacy, ``flooding``)."""
        return self._keys.public_key_bytes()

    def encrypt_rows(self, X: np.ndarray, q: int) -> Iterator[bytes]:
        """MATRIX messages of up to ``BATCH_ROWS`` encrypted rows each, laid out for a q-row cross-product."""
        X = finite_matrix("X", X)
        for start in range(0, len(X), BATCH_ROWS):
            yield self.encrypt_batch(X, q, start)

    def encrypt_batch(self, X: np.ndarray, q: int, start: int) -> bytes:
        """One MATRIX message: rows ``start`` to ``start + BATCH_ROWS`` of ``X``, encrypted for a q-row product."""
        X = finite_matrix("X", X)
        if not 0 <= start < len(X):
            raise DimensionError(f"row {start} is outside the {len(X)} rows")
        layout = CrossLayout(X.shape[1], q)
        rows = X[start : start + BATCH_ROWS]
        blobs = [self._keys.encrypt(layout.pack_row(x), DEPTH) for x in rows]
        meta = {"key": self.key_id, "stage": "rows", "rows": len(rows), "cols": layout.p, "q": q, "start": start}
        return wire.encode(wire.MessageType.MATRIX, meta, blobs)

    def decrypt(self, data: bytes, max_noise: float = MAX_NOISE) -> np.ndarray:
        """``Y^T X`` from the evaluator's MATRIX message, after the key and noise check (``max_noise``: a flooded
        product's imaginary parts carry its flood, ``IidFlood.max_deviation``)."""
        message = wire.decode(data, wire.MessageType.MATRIX)
        meta = message.meta
        if meta["key"] != self.key_id or meta["stage"] != "product":
            raise KeyMismatchError("this cross-product was not computed on rows encrypted under this key")
        layout = CrossLayout(meta["cols"], meta["rows"])
        if len(message.blobs) != layout.n_ciphertexts:
            raise ParameterError("cross-product message has the wrong number of ciphertexts")
        slots = self._keys.decrypt_products(message.blobs, ckks.rescaled_scale())
        check_real(slots, max(MAX_NOISE, max_noise))
        return layout.unpack(slots)


class CrossProductEvaluator:
    """The party holding plaintext ``Y``: accumulates ``Enc(Y^T X)`` batch by batch (any number of rows streams)."""

    def __init__(self, Y: np.ndarray) -> None:
        self.Y = finite_matrix("Y", Y)
        self._acc: list[seal.Ciphertext | None] = []  # one running sum per result ciphertext, from the first batch
        self._layout: CrossLayout | None = None
        self._key: str | None = None
        self._done = 0

    def add(self, data: bytes) -> None:
        message = wire.decode(data, wire.MessageType.MATRIX)
        meta = message.meta
        if meta["stage"] != "rows" or meta["rows"] != len(message.blobs) or meta.get("q") != self.Y.shape[1]:
            raise ParameterError("expected a batch of encrypted rows laid out for this cross-product")
        if meta.get("start", self._done) != self._done:
            raise ParameterError(f"batch starts at row {meta['start']}, but row {self._done} is next: send in order")
        layout = CrossLayout(meta["cols"], self.Y.shape[1])
        if self._layout is not None and (layout != self._layout or meta["key"] != self._key):
            raise KeyMismatchError("batch differs in key or width from the first batch")
        if self._done + len(message.blobs) > len(self.Y):
            raise DimensionError(f"more encrypted rows than the {len(self.Y)} plaintext rows")
        # every ciphertext is validated before any state changes: a refused batch leaves the job as it was
        rows = [ckks.load_fresh(blob, DEPTH) for blob in message.blobs]
        if self._layout is None:
            self._layout, self._key = layout, meta["key"]
            self._acc = [None] * layout.n_ciphertexts
        ev = ckks.evaluator()
        for row in rows:
            y = self.Y[self._done]
            for t in range(layout.n_ciphertexts):
                product = seal.Ciphertext()
                ev.multiply_plain(
                    row, ckks.encode(layout.pack_weights(y, t), ckks.fresh_parms_id(DEPTH), ckks.SCALE), product
                )
                running = self._acc[t]
                if running is None:
                    self._acc[t] = product
                else:
                    ev.add_inplace(running, product)
            self._done += 1

    @property
    def rows_done(self) -> int:
        return self._done

    def result(self, flood: flooding.IidFlood | None = None, public_key: bytes | None = None) -> bytes:
        """The MATRIX message holding ``Enc(Y^T X)``, once every row has been added; re-randomised and flooded
        with ``flood`` under the key holder's ``public_key`` when given (circuit privacy, ``flooding``)."""
        sums = [ct for ct in self._acc if ct is not None]
        if self._layout is None or len(sums) != len(self._acc) or self._done != len(self.Y):
            raise DimensionError(f"{self._done} of {len(self.Y)} rows received; the cross-product is incomplete")
        encryptor = ckks.load_public_key(public_key) if flood is not None and public_key is not None else None
        if flood is not None and encryptor is None:
            raise ParameterError("a flooded cross-product needs the key holder's public key")
        for ct in sums:
            ckks.evaluator().rescale_to_next_inplace(ct)
            if flood is not None and encryptor is not None:
                flood.apply(ct, encryptor)
        meta = {"key": self._key, "stage": "product", "rows": self._layout.q, "cols": self._layout.p}
        return wire.encode(wire.MessageType.MATRIX, meta, [ckks.save_bytes(ct) for ct in sums])


def measure_flood(Y: np.ndarray, width: int, policy: flooding.FloodPolicy) -> flooding.IidFlood:
    """The flood for ``Enc(Y^T X)`` with X of ``width`` columns, measured with keys of the evaluator's own: the
    same products on random rows of norm 2 (embeddings are unit vectors, plus the intercept column), against
    their exact value in every slot."""
    Y = finite_matrix("Y", Y)
    layout = CrossLayout(width, Y.shape[1])

    def noise(keys: ckks.KeyPair) -> list[np.ndarray]:
        rows = np.random.default_rng().normal(size=(len(Y), width))
        rows *= 2.0 / np.linalg.norm(rows, axis=1, keepdims=True)
        holder, evaluator = KeyHolder(keys), CrossProductEvaluator(Y)
        for batch in holder.encrypt_rows(rows, Y.shape[1]):
            evaluator.add(batch)
        blobs = wire.decode(evaluator.result(), wire.MessageType.MATRIX).blobs
        got = keys.decrypt_products(blobs, ckks.rescaled_scale())
        exact = (Y.T @ rows)[: layout.n_ciphertexts * layout.per_ct]
        padded = np.zeros((layout.n_ciphertexts * layout.per_ct, width))
        padded[: len(exact)] = exact
        slots = padded.reshape(layout.n_ciphertexts, -1)
        return [g - np.pad(e, (0, ckks.SLOTS - e.size)) for g, e in zip(got, slots, strict=True)]

    return flooding.IidFlood.measure(policy, noise, trials=1)


def finite_matrix(name: str, array: np.ndarray) -> np.ndarray:
    """``array`` as float64 if it is a finite, non-empty matrix; both parties check their inputs with it."""
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 2 or 0 in array.shape or not np.all(np.isfinite(array)):
        raise DimensionError(f"{name} must be a finite, non-empty 2-d array, got shape {array.shape}")
    return array
