"""The encrypted vocabulary head on real CKKS (SEAL): agreement with plaintext (random heads, and the Qwen pair's
real composed heads over the full 151,936-token vocabulary), and every bad input refused."""

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
from securealign.datasets import load_public_corpus
from securealign.generation.decoding import mapped_greedy
from securealign.generation.diagonal import DiagonalLayout
from securealign.generation.encrypted import EncryptedHead, VocabularyClient, VocabularyProvider
from securealign.generation.mapping import DEFAULT_CORPUS_SIZE, fitted_map_path
from securealign.generation.pair import load_pair

RNG = np.random.default_rng(7)
D = 96  # two parts, 64 + 32: two query ciphertexts
MATRIX = RNG.normal(scale=0.1, size=(9000, D))
BIAS = RNG.normal(size=9000)


@pytest.fixture(scope="module")
def head() -> EncryptedHead:
    return EncryptedHead(MATRIX, BIAS)


def test_encrypted_logits_equal_plaintext(head: EncryptedHead) -> None:
    assert head.provider.layout.parts == (64, 32)
    for _ in range(3):
        x = RNG.normal(scale=3.0, size=D)
        logits = head(x)
        assert logits.shape == (9000,)
        assert np.abs(logits - (MATRIX @ x + BIAS)).max() < 1e-3
        assert logits.argmax() == (MATRIX @ x + BIAS).argmax()
    cost = head.last
    assert cost.bytes_up > 0 and cost.bytes_down > 0 and cost.provider_ms > 0


@pytest.mark.parametrize("d", [896, 1536])  # the Qwen pair's input widths: three and two parts, large baby steps
def test_encrypted_logits_equal_plaintext_for_wide_inputs(d: int) -> None:
    rng = np.random.default_rng(d)
    matrix, bias = rng.normal(scale=0.2, size=(9000, d)), rng.normal(scale=10, size=9000)
    wide = EncryptedHead(matrix, bias)
    assert sum(wide.provider.layout.parts) == d and len(wide.provider.layout.parts) > 1
    x = rng.normal(scale=4.0, size=d)
    x[:8] = 60.0  # outliers like a real final hidden state's
    logits = wide(x)
    assert np.abs(logits - (matrix @ x + bias)).max() < 1e-3
    assert logits.argmax() == (matrix @ x + bias).argmax()


def test_provider_sees_only_public_keys(head: EncryptedHead) -> None:
    assert len(head.key_bytes) < 2 << 20  # two seeded Galois keys, no secret key
    assert not hasattr(head.provider, "_keys")


def test_results_under_other_keys_are_refused(head: EncryptedHead) -> None:
    stranger = VocabularyClient(head.provider.layout)
    results = head.provider.evaluate(head.client.encrypt(np.ones(D)))
    with pytest.raises(KeyMismatchError):
        stranger.decrypt(results)
    # a query from another key pair evaluates under this session's Galois keys to noise: refused at decryption
    alien = head.provider.evaluate(stranger.encrypt(np.ones(D)))
    with pytest.raises(KeyMismatchError):
        head.client.decrypt(alien)
    # every result ciphertext carries its own check slots: one foreign ciphertext among genuine ones is caught
    for t in range(len(results)):
        mixed = results[:t] + alien[t : t + 1] + results[t + 1 :]
        with pytest.raises(KeyMismatchError):
            head.client.decrypt(mixed)
    # one query part from another key pair (the other genuine) is caught too
    own, theirs = head.client.encrypt(np.ones(D)), stranger.encrypt(np.ones(D))
    with pytest.raises(KeyMismatchError):
        head.client.decrypt(head.provider.evaluate((own[0], theirs[1])))


def test_malformed_input_is_refused(head: EncryptedHead) -> None:
    query = head.client.encrypt(np.ones(D))
    assert len(query) == 2
    for bad in (b"", b"garbage" * 10, query[0][: len(query[0]) // 2], bytes(8) + query[0][8:]):
        for position in range(2):
            parts = list(query)
            parts[position] = bad
            with pytest.raises((WireFormatError, ParameterError)):
                head.provider.evaluate(tuple(parts))
    with pytest.raises(LimitExceededError):
        head.provider.evaluate((query[0], bytes(5 << 20)))
    with pytest.raises(WireFormatError, match="sequence"):  # one blob where a sequence of ciphertexts belongs
        head.provider.evaluate(query[0])
    with pytest.raises(WireFormatError, match="sequence"):
        head.provider.evaluate((query[0], None))
    with pytest.raises(ParameterError, match="takes 2"):  # too few or too many query ciphertexts
        head.provider.evaluate(query[:1])
    with pytest.raises(ParameterError, match="takes 2"):
        head.provider.evaluate(query + query[:1])
    with pytest.raises(DimensionError):
        head.client.encrypt(np.ones(D - 1))
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
    with pytest.raises(LimitExceededError):
        fresh.load_keys(bytes(5 << 20))
    with pytest.raises(DimensionError):
        VocabularyProvider(np.full((10, 4), np.inf), np.zeros(10))
    with pytest.raises(ParameterError, match="expected a"):
        VocabularyProvider(np.ones(10), np.zeros(10))


def test_every_slot_past_the_vocabulary_decrypts_to_zero(head: EncryptedHead) -> None:
    """The attacker's view of one answer: all slots of all result ciphertexts. Past the V logits (real and
    imaginary halves of the first ``rows`` slots) there is nothing but CKKS noise, so the client learns the logits
    it is meant to and no partial products of the provider's matrix."""
    x = RNG.normal(size=D)
    vectors = head.client._keys.decrypt_products(head.provider.evaluate(head.client.encrypt(x)), ckks.rescaled_scale())
    layout = head.provider.layout
    assert np.abs(layout.unpack(vectors) - (MATRIX @ x + BIAS)).max() < 1e-3
    flat = np.concatenate([np.concatenate([v.real[: layout.rows], v.imag[: layout.rows]]) for v in vectors])
    assert np.abs(flat[layout.vocab :]).max() < 1e-6  # padding rows of the last block
    assert np.abs(layout.unused(vectors)).max() < 1e-6  # the check slots past the rows, real and imaginary


@pytest.mark.slow  # both Qwen models, a 152k-row head encoded once per direction (~20 s), seconds per token
@pytest.mark.parametrize("source, target", [("qwen05", "qwen15"), ("qwen15", "qwen05")])
def test_encrypted_decoding_equals_plaintext_decoding_on_held_out_prompts(source: str, target: str) -> None:
    """The compatible pair both ways, with its committed map: token for token, the encrypted head over the whole
    vocabulary decodes what the plaintext composed head decodes, on prompts the map never saw."""
    assert fitted_map_path(source, target) is not None, f"the committed {source} -> {target} map is missing"
    pair = load_pair(source, target)
    head = EncryptedHead(pair.plain_head.matrix, pair.plain_head.bias)  # not the pair's cached one: freed after
    layout = head.provider.layout
    assert layout.vocab == pair.plain_head.matrix.shape[0] == 151936 and layout.d == pair.source.lm_head().shape[1]
    held_out = load_public_corpus(DEFAULT_CORPUS_SIZE + 2)[DEFAULT_CORPUS_SIZE:]  # after the map's 4,000 texts
    for text in held_out:
        prompt = " ".join(text.split()[:8])
        plain = [t.id for t in mapped_greedy(pair.source, pair.target, pair.plain_head, prompt, 4)]
        encrypted = list(mapped_greedy(pair.source, pair.target, head, prompt, 4))
        assert [t.id for t in encrypted] == plain
        assert all(t.cost.bytes_up > 0 and t.cost.bytes_down > 0 for t in encrypted)
    hidden = pair.source.final_hidden(prompt).hidden[-1]
    assert np.abs(head(hidden) - pair.plain_head(hidden)).max() < 1e-3
    load_pair.cache_clear()  # the composed 152k-row heads and both models: not kept for the rest of the session


def test_flooded_vocabulary_head_keeps_the_argmax_and_re_keys_every_tau_steps() -> None:
    """Circuit privacy for the vocabulary head (crypto/flooding.py): the logits are re-randomised and flooded by
    the provider, sized from noise it measured with its own keys; a key decrypts at most tau steps."""
    policy = flooding.FloodPolicy(s=30, tau=2)
    head = EncryptedHead(MATRIX[:3000], BIAS[:3000], policy)
    assert head.provider.flood is not None
    sigma = head.provider.flood.sigma
    x = RNG.normal(scale=3.0, size=D)
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
