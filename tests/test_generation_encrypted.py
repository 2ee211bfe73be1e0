"""The encrypted vocabulary head on real CKKS (SEAL): agreement with plaintext, and every bad input refused."""

from __future__ import annotations

import numpy as np
import pytest

from securealign.crypto import ckks, flooding
from securealign.crypto.errors import (
    DimensionError,
    KeyMismatchError,
    LimitExceededError,
    ParameterError,
    QueryBudgetError,
    WireFormatError,
)
from securealign.generation.diagonal import DiagonalLayout
from securealign.generation.encrypted import EncryptedHead, VocabularyClient, VocabularyProvider

RNG = np.random.default_rng(7)
MATRIX = RNG.normal(scale=0.1, size=(9000, 96))
BIAS = RNG.normal(size=9000)


@pytest.fixture(scope="module")
def head() -> EncryptedHead:
    return EncryptedHead(MATRIX, BIAS)


def test_encrypted_logits_equal_plaintext(head: EncryptedHead) -> None:
    for _ in range(3):
        x = RNG.normal(scale=3.0, size=96)
        logits = head(x)
        assert logits.shape == (9000,)
        assert np.abs(logits - (MATRIX @ x + BIAS)).max() < 1e-3
        assert logits.argmax() == (MATRIX @ x + BIAS).argmax()
    cost = head.last
    assert cost.bytes_up > 0 and cost.bytes_down > 0 and cost.provider_ms > 0


def test_provider_sees_only_public_keys(head: EncryptedHead) -> None:
    assert len(head.key_bytes) < 2 << 20  # two seeded Galois keys, no secret key
    assert not hasattr(head.provider, "_keys")


def test_results_under_other_keys_are_refused(head: EncryptedHead) -> None:
    stranger = VocabularyClient(head.provider.layout)
    results = head.provider.evaluate(head.client.encrypt(np.ones(96)))
    with pytest.raises(KeyMismatchError):
        stranger.decrypt(results)
    # a query from another key pair evaluates under this session's Galois keys to noise: refused at decryption
    alien = head.provider.evaluate(stranger.encrypt(np.ones(96)))
    with pytest.raises(KeyMismatchError):
        head.client.decrypt(alien)


def test_malformed_input_is_refused(head: EncryptedHead) -> None:
    query = head.client.encrypt(np.ones(96))
    for bad in (b"", b"garbage" * 10, query[: len(query) // 2], bytes(8) + query[8:]):
        with pytest.raises((WireFormatError, ParameterError)):
            head.provider.evaluate(bad)
    with pytest.raises(LimitExceededError):
        head.provider.evaluate(bytes(5 << 20))
    with pytest.raises(DimensionError):
        head.client.encrypt(np.ones(95))
    assert head.provider.layout.n_ciphertexts == 2
    with pytest.raises(ParameterError, match="expected 2"):
        head.client.decrypt(head.provider.evaluate(query)[:1])
    fresh = VocabularyProvider(MATRIX[:100], BIAS[:100])
    with pytest.raises(ParameterError, match="no Galois keys"):
        fresh.evaluate(query)
    with pytest.raises(ParameterError, match="declares|exactly"):  # keys for another layout's steps
        fresh.load_keys(VocabularyClient(DiagonalLayout.plan(5, 3)).galois_keys())
    genuine = head.client.galois_keys()
    with pytest.raises(WireFormatError, match="trailing"):  # exact blobs only: nothing rides along
        fresh.load_keys(genuine + b"\0" * 64)
    with pytest.raises(DimensionError):
        VocabularyProvider(np.full((10, 4), np.inf), np.zeros(10))


def test_every_slot_past_the_vocabulary_decrypts_to_zero(head: EncryptedHead) -> None:
    """The attacker's view of one answer: all slots of all result ciphertexts. Past the V logits (real and
    imaginary halves of the first ``rows`` slots) there is nothing but CKKS noise, so the client learns the logits
    it is meant to and no partial products of the provider's matrix."""
    x = RNG.normal(size=96)
    vectors = head.client._keys.decrypt_products(head.provider.evaluate(head.client.encrypt(x)), ckks.rescaled_scale())
    layout = head.provider.layout
    assert np.abs(layout.unpack(vectors) - (MATRIX @ x + BIAS)).max() < 1e-3
    flat = np.concatenate([np.concatenate([v.real[: layout.rows], v.imag[: layout.rows]]) for v in vectors])
    assert np.abs(flat[layout.vocab :]).max() < 1e-6  # padding rows of the last block
    assert np.abs(layout.unused(vectors)).max() < 1e-6  # slots past the rows, real and imaginary


def test_flooded_vocabulary_head_keeps_the_argmax_and_re_keys_every_tau_steps() -> None:
    """Circuit privacy for the vocabulary head (crypto/flooding.py): the logits are re-randomised and flooded by
    the provider, sized from noise it measured with its own keys; a key decrypts at most tau steps."""
    policy = flooding.FloodPolicy(s=30, tau=2)
    head = EncryptedHead(MATRIX[:3000], BIAS[:3000], policy)
    assert head.provider.flood is not None
    sigma = head.provider.flood.sigma
    x = RNG.normal(scale=3.0, size=96)
    reference = MATRIX[:3000] @ x + BIAS[:3000]
    first, second = head(x), head(x)
    assert np.abs(first - reference).max() < 10 * sigma  # the stated tolerance: ten flood stds per logit
    assert first.argmax() == reference.argmax() and not np.array_equal(first, second)
    keys = head.key_bytes
    head(x)  # the third step needs fresh keys: the head makes them
    assert head.key_bytes != keys
    with pytest.raises(QueryBudgetError):  # the provider itself refuses a third flooded answer under one key
        for _ in range(3):
            head.provider.evaluate(head.client.encrypt(x))
    with pytest.raises(ParameterError, match="public key"):  # no flood without the client's public key
        VocabularyProvider(MATRIX[:100], BIAS[:100], policy).load_keys(head.client.galois_keys())
