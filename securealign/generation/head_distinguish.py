"""The distinguishing game of the encrypted vocabulary head (issue 18): can the client tell which of two composed
heads, equal on its hidden state, produced its logits?

The client holds its secret key, its query ciphertext and the Galois keys it made, and the public algorithm
(``VocabularyProvider``). The second candidate is the first with its input reflected in a mirror orthogonal to the
hidden state (``crypto.distinguish.reflection``), so every logit of this query is the same. The client recomputes
both candidates on its own ciphertext and compares (``crypto.distinguish.BLOB_NAMES``); ``run_blobs`` plays it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from securealign.crypto import ckks
from securealign.crypto.distinguish import BlobGame, reflection
from securealign.generation.encrypted import VocabularyClient, VocabularyProvider


def vocabulary_game(
    matrix: np.ndarray,
    bias: np.ndarray,
    hidden: np.ndarray,
    rng: np.random.Generator,
    provider: Callable[[np.ndarray, np.ndarray], VocabularyProvider] = VocabularyProvider,
) -> BlobGame:
    """One encrypted query ``hidden`` against two providers (``provider``, the protocol's by default) serving
    ``matrix`` and ``matrix R``; the client's recomputations use the public algorithm on its own keys."""
    matrix, bias = np.asarray(matrix, dtype=np.float64), np.asarray(bias, dtype=np.float64)
    candidates = (matrix, matrix @ reflection(hidden, rng))
    servers = [provider(m, bias) for m in candidates]
    mirrors = [VocabularyProvider(m, bias) for m in candidates]  # the client's own runs of the public algorithm
    client = VocabularyClient(servers[0].layout)
    keys = client.galois_keys()
    for party in servers + mirrors:
        party.load_keys(keys)
    query = client.encrypt(hidden)
    return BlobGame.prepare(
        lambda b: servers[b].evaluate(query),
        lambda b: mirrors[b].evaluate(query),
        lambda blobs: client._keys.decrypt_products(tuple(blobs), ckks.rescaled_scale()),
        candidates,
    )
