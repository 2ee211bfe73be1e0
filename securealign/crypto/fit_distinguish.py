"""The distinguishing game of secure fitting (issue 18): the party that decrypts a cross-product guesses which of
two matrices with the same product (hence the same fitted map) the other party multiplied its ciphertexts by.

In a paper fit the client decrypts ``Z_A^T [Z_B, 1]``: the candidates are two provider embedding matrices; in a
sealed fit the provider decrypts ``[W; b]``: the candidates are two client datasets' ``X G^-1``. Played by
``distinguish.run_blobs`` with ``distinguish.BLOB_NAMES``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from securealign.crypto import ckks, wire
from securealign.crypto.distinguish import BlobGame
from securealign.crypto.fit_client import _regularised_gram, _with_ones
from securealign.crypto.secure_fit import CrossProductEvaluator, KeyHolder


def cross_product_pair(X: np.ndarray, Y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two matrices with the same cross-product ``Y^T X``: ``Y`` and ``Y + E``, where ``E`` (Gaussian, of ``Y``'s
    column scales) is projected off the columns of ``X`` (``X^T E = 0``; needs more rows than ``X`` has rank)."""
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    noise = rng.standard_normal(Y.shape) * Y.std(axis=0)
    E = noise - X @ np.linalg.lstsq(X, noise, rcond=None)[0]
    return Y, Y + E


def cross_product_game(
    X: np.ndarray,
    candidates: tuple[np.ndarray, np.ndarray],
    evaluator: Callable[[np.ndarray], CrossProductEvaluator] = CrossProductEvaluator,
) -> BlobGame:
    """A key holder encrypts ``X``'s rows once; the other party (``evaluator``, the protocol's
    ``CrossProductEvaluator`` by default) multiplies them by one candidate; the holder recomputes both candidates
    with the public algorithm on its own rows."""
    holder = KeyHolder()
    batches = list(holder.encrypt_rows(X, candidates[0].shape[1]))

    def product(b: int, party: Callable[[np.ndarray], CrossProductEvaluator]) -> tuple[bytes, ...]:
        running = party(candidates[b])
        for batch in batches:
            running.add(batch)
        return wire.decode(running.result(), wire.MessageType.MATRIX).blobs

    def decrypt(blobs: Sequence[bytes]) -> list[np.ndarray]:
        return holder._keys.decrypt_products(tuple(blobs), ckks.rescaled_scale())

    return BlobGame.prepare(
        lambda b: product(b, evaluator), lambda b: product(b, CrossProductEvaluator), decrypt, candidates
    )


def fit_game(
    mode: str,
    Z_A: np.ndarray,
    Z_B: np.ndarray,
    rng: np.random.Generator,
    absolute_alpha: float = 1.0,
    evaluator: Callable[[np.ndarray], CrossProductEvaluator] = CrossProductEvaluator,
) -> BlobGame:
    """The cross-product game of a secure fit on the public texts both parties embedded (``Z_A`` the provider's,
    ``Z_B`` the client's). Paper mode: the client holds the key and encrypts ``[Z_B, 1]``; the provider's candidates
    are ``Z_A`` and another matrix with the same ``Z_A^T [Z_B, 1]``. Sealed mode: the provider holds the key and
    encrypts ``Z_A``; the client's candidates are its ``X G^-1`` (``fit_client``'s, so the provider decrypts
    ``[W; b]``) and another with the same ``[W; b]``."""
    X = _with_ones(np.asarray(Z_B, dtype=np.float64))
    if mode == "paper":
        return cross_product_game(X, cross_product_pair(X, Z_A, rng), evaluator)
    weights = np.linalg.solve(_regularised_gram(X, absolute_alpha), X.T).T
    return cross_product_game(Z_A, cross_product_pair(Z_A, weights, rng), evaluator)
