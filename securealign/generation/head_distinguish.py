"""The distinguishing game of the encrypted vocabulary head (issue 18): can the client tell which of two composed
heads, equal on its hidden state, produced its logits?

The client holds its secret key, its query ciphertext and the Galois keys it made, and the public algorithm
(``VocabularyProvider``). The second candidate is the first with its input reflected in a mirror orthogonal to the
hidden state (``crypto.distinguish.reflection``), so every logit of this query is the same. The client recomputes
both candidates on its own ciphertext (for a flooding provider: the deterministic part, at the flooded scales) and
compares (``crypto.distinguish.BLOB_NAMES``); ``crypto.distinguish.run_blobs`` plays it. A flooding provider lets a
key decrypt tau answers, so the game then makes fresh keys (and a fresh query) every tau answers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from securealign.crypto import flooding
from securealign.crypto.distinguish import Observation, Recomputation, polynomials, reflection
from securealign.crypto.errors import ParameterError
from securealign.generation.encrypted import VocabularyClient, VocabularyProvider


def _deterministic(matrix: np.ndarray, bias: np.ndarray, flood: flooding.FloodPolicy | None) -> VocabularyProvider:
    """The public algorithm as the client runs it: a flooding head's scales, without its random last step."""
    party = VocabularyProvider(matrix, bias, flood, bound=0.0)
    party.flood = None
    return party


class VocabularyGame:
    """Two providers serving ``matrix`` and ``matrix R`` (``flood``: circuit-private ones), one client query."""

    def __init__(
        self,
        matrix: np.ndarray,
        bias: np.ndarray,
        hidden: np.ndarray,
        rng: np.random.Generator,
        flood: flooding.FloodPolicy | None = None,
    ) -> None:
        matrix, bias = np.asarray(matrix, dtype=np.float64), np.asarray(bias, dtype=np.float64)
        self.hidden, self.flood = np.asarray(hidden, dtype=np.float64), flood
        self.candidates = (matrix, matrix @ reflection(self.hidden, rng))
        self.servers = [VocabularyProvider(m, bias, flood) for m in self.candidates]
        self.mirrors = [_deterministic(m, bias, flood) for m in self.candidates]
        self.answers = 0
        self._rekey()

    def _rekey(self) -> None:
        """Fresh client keys, loaded by every party, a fresh query, and both candidates recomputed on it."""
        self.client = VocabularyClient(self.servers[0].layout, flooded=self.flood is not None)
        galois = self.client.galois_keys()
        public = self.client.public_key() if self.flood is not None else None
        for party in self.servers:
            party.load_keys(galois, public)
        for party in self.mirrors:
            party.load_keys(galois)
        self.query = self.client.encrypt(self.hidden)
        self.predictions = []
        for mirror in self.mirrors:
            blobs = mirror.evaluate(self.query)
            self.predictions.append(
                Recomputation(blobs, self.decrypt(blobs), np.stack([polynomials(x)[1] for x in blobs]))
            )

    def decrypt(self, blobs: Sequence[bytes]) -> list[np.ndarray]:
        return self.client._keys.decrypt_products(tuple(blobs), self.client._scales[2])

    def recomputed(self, obs: Observation, b: int) -> Recomputation:
        return self.predictions[b]

    def template(self, obs: Observation, b: int) -> list[np.ndarray]:
        raise ParameterError("the vocabulary game has no plaintext template")

    def observe(self, coin: int) -> Observation:
        if self.flood is not None and self.answers and self.answers % self.flood.tau == 0:
            self._rekey()
        self.answers += 1
        blobs = self.servers[coin].evaluate(self.query)
        return Observation(self, blobs, self.decrypt(blobs))
