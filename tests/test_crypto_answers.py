"""What a RESULT carries, slot by slot, on real task models: the K outputs and zeros (logits answers), or the
blinded signs of the pairwise margins (label-only answers) — checked by decrypting every slot as the client can.
"""

import numpy as np
import pytest

from securealign.alignment import AffineMap
from securealign.crypto import ClientSession, Layout, Provider, ckks, plaintext_logits, run_encrypted_query, wire
from securealign.crypto.answers import BLIND_BITS, classes_for_pairs, pairs, pairwise_head, wins
from securealign.crypto.errors import AnswerRefusedError, DimensionError, ParameterError
from securealign.crypto.layout import simulate_packed, simulate_slots
from securealign.crypto.remote import RemoteProvider
from securealign.crypto.server import running_server
from securealign.experiments.task_models import fit_task_models

N_QUERIES = 40


@pytest.fixture(scope="module")
def bbc():
    """Five classes: a label-only answer carries 10 margins in two result ciphertexts."""
    return fit_task_models("bbc_news", "wordllama", "minilm", n_test=N_QUERIES)


@pytest.fixture(scope="module")
def provider(bbc):
    provider = Provider()
    provider.register_sealed(bbc.model_id, bbc.W, bbc.b, bbc.V, bbc.c, bbc.classes)
    provider.register_sealed("labels-only", bbc.W, bbc.b, bbc.V, bbc.c, bbc.classes, label_only=True)
    return provider


@pytest.fixture(scope="module")
def client(provider, bbc):
    info = provider.describe(bbc.model_id)
    return ClientSession([Layout.from_dict(info["modes"]["paper"]), Layout.from_dict(info["modes"]["sealed"])])


def _all_slots(client, provider, model_id, z, mode, answer):
    """The attacker's view: every slot of every result ciphertext, decrypted with the client's secret key."""
    info = provider.describe(model_id)
    layout = Layout.from_dict(info["modes" if answer == "logits" else "label_modes"][mode])
    run_encrypted_query(client, provider, model_id, z, mode, answer=answer)  # opens the session
    query = client.encrypt_query(z, layout, mode, answer)
    result = provider.evaluate(client.sessions[provider.endpoint], model_id, query)
    return client._keys.decrypt_products(wire.decode(result, wire.MessageType.RESULT).blobs, ckks.SCALE), layout


@pytest.mark.parametrize("answer", ["logits", "label"])
@pytest.mark.parametrize("mode", ["paper", "sealed"])
def test_every_slot_holds_an_output_or_zero(client, provider, bbc, mode, answer):
    z = bbc.test_source[0] if mode == "sealed" else bbc.test_source[0] @ bbc.W + bbc.b
    slots, layout = _all_slots(client, provider, bbc.model_id, z, mode, answer)
    outputs = layout.unpack_result(slots)
    assert len(outputs) == (5 if answer == "logits" else 10)
    # CKKS noise only: every slot of a class's coset is a copy of its output, unused cosets and imaginary parts
    # zero (a window sum put partial sums of size ~1e-2..1 in such slots)
    for vector, placed in zip(slots, layout.place_outputs(outputs), strict=True):
        assert np.max(np.abs(vector - placed)) < 1e-5
    assert np.min(np.abs(outputs)) > 1e-4  # the outputs themselves are there


def test_twin_has_exact_copies_and_zeros():
    rng = np.random.default_rng(3)
    layout = Layout.plan(300, 7)
    matrix, bias, x = rng.normal(size=(7, 300)), rng.normal(size=7), rng.normal(size=300)
    slots = simulate_slots(layout, matrix, bias, x)
    flat = np.concatenate(slots)
    assert np.allclose(flat[layout.output_indices()], matrix @ x + bias)
    assert np.allclose(flat, np.concatenate(layout.place_outputs(matrix @ x + bias)), atol=1e-12)
    assert np.count_nonzero(slots[0].reshape(layout.span, layout.stride)[:, 7:]) == 0


@pytest.mark.parametrize("mode", ["paper", "sealed"])
def test_label_only_answers_give_the_plaintext_label_on_real_queries(client, provider, bbc, mode):
    reference = plaintext_logits(bbc.test_source, bbc.V, bbc.c, bbc.W, bbc.b)
    affine = AffineMap(bbc.W, bbc.b) if mode == "paper" else None
    labels = [
        np.argmax(run_encrypted_query(client, provider, bbc.model_id, z, mode, affine_map=affine, answer="label")[0])
        for z in bbc.test_source
    ]
    assert np.array_equal(labels, reference.argmax(1))
    assert (reference.argmax(1) == bbc.test_labels).mean() > 0.8  # a real classifier, so agreement means something


def test_blinded_margins_keep_only_their_signs(client, provider, bbc):
    """Two answers to the same query: same signs, unrelated sizes (fresh factors per pair and per query)."""
    z = bbc.test_source[1]
    first, layout = _all_slots(client, provider, bbc.model_id, z, "sealed", "label")
    second, _ = _all_slots(client, provider, bbc.model_id, z, "sealed", "label")
    a, b = layout.unpack_result(first), layout.unpack_result(second)
    logits = plaintext_logits(z, bbc.V, bbc.c, bbc.W, bbc.b)
    margins = np.array([logits[i] - logits[j] for i, j in pairs(len(logits))])
    assert np.array_equal(np.sign(a), np.sign(margins)) and np.array_equal(np.sign(b), np.sign(margins))
    ratios = a / b
    assert np.ptp(np.log2(ratios)) > 1.0  # a common scale would leave every ratio equal
    # each value is the normalised margin times a factor in [1, 2^BLIND_BITS)
    rows, offsets = pairwise_head((bbc.W @ bbc.V).T, bbc.b @ bbc.V + bbc.c)
    factors = a / (rows @ z + offsets)
    assert np.all((factors > 1 - 1e-3) & (factors < 2**BLIND_BITS * (1 + 1e-3)))


def test_a_label_only_model_refuses_logits_in_process_and_over_http(client, provider, bbc):
    z = bbc.test_source[2]
    with pytest.raises(AnswerRefusedError, match="only with label"):
        run_encrypted_query(client, provider, "labels-only", z, "sealed")
    info = provider.describe("labels-only")
    query = client.encrypt_query(z, Layout.from_dict(info["modes"]["sealed"]), "sealed", "logits")
    with pytest.raises(AnswerRefusedError):  # a client that skips describe is refused by the provider itself
        provider.evaluate(client.sessions[provider.endpoint], "labels-only", query)
    expected = plaintext_logits(z, bbc.V, bbc.c, bbc.W, bbc.b).argmax()
    with running_server(provider) as url:
        remote = RemoteProvider(url)
        assert remote.describe("labels-only")["answers"] == ["label"]
        with pytest.raises(AnswerRefusedError):
            run_encrypted_query(ClientSession(), remote, "labels-only", z, "sealed")
        scores, _ = run_encrypted_query(ClientSession(), remote, "labels-only", z, "sealed", answer="label")
        assert np.argmax(scores) == expected


def test_wins_and_pair_bookkeeping():
    assert pairs(3) == [(0, 1), (0, 2), (1, 2)] and classes_for_pairs(10) == 5
    assert list(wins(np.array([-2.0, 5.0, 7.0]))) == [1.0, 2.0, 0.0]  # 1 > 0, 0 > 2, 1 > 2
    with pytest.raises(DimensionError):
        classes_for_pairs(4)
    with pytest.raises(ParameterError):
        Provider().register_head("one", np.ones((4, 1)), np.ones(1), label_only=True)


@pytest.mark.parametrize("answer", ["logits", "label"])
def test_whatever_the_client_writes_in_its_slots_it_gets_one_number_per_output(client, provider, bbc, answer):
    """A client may write anything in its complex slots, e.g. a different query in each class coset, or values
    that a plain query never has. The provider returns twice the real part of its all-reduced products, so each
    output's coset comes back as copies of ONE number, the real dot product of that coset's slots with the row
    (what ``simulate_slots`` computes for the client's slots), and every imaginary part is noise: no second query,
    and (label-only) no blinding factor that Re / Im would cancel."""
    info = provider.describe(bbc.model_id)
    layout = Layout.from_dict(info["modes" if answer == "logits" else "label_modes"]["sealed"])
    run_encrypted_query(client, provider, bbc.model_id, bbc.test_source[3], "sealed", answer=answer)
    genuine = wire.decode(client.encrypt_query(bbc.test_source[3], layout, "sealed", answer), wire.MessageType.QUERY)
    rng = np.random.default_rng(7)
    chosen = (rng.normal(size=ckks.SLOTS) + 1j * rng.normal(size=ckks.SLOTS)) / 20
    blob = client._keys.encrypt(chosen, 1)
    result = provider.evaluate(
        client.sessions[provider.endpoint], bbc.model_id, wire.encode(wire.MessageType.QUERY, genuine.meta, [blob])
    )
    slots = client._keys.decrypt_products(wire.decode(result, wire.MessageType.RESULT).blobs, ckks.SCALE)
    assert layout.deviation(slots) < 1e-5  # copies of one real number per output, zeros elsewhere
    matrix, bias = (bbc.W @ bbc.V).T, bbc.b @ bbc.V + bbc.c
    if answer == "logits":
        expected = simulate_packed(layout, matrix, bias, chosen)
        assert np.max(np.abs(np.concatenate(slots) - np.concatenate(expected))) < 1e-4


def test_a_model_is_described_once_per_client_until_the_provider_refuses(bbc):
    """run_encrypted_query asks for the model's layouts once, not on every query (over HTTP that was one more
    round trip each time); a refusal drops the cached description, so a changed model is described again."""
    provider = Provider()
    provider.register_sealed("m", bbc.W, bbc.b, bbc.V, bbc.c, bbc.classes)
    calls = []
    describe = provider.describe
    provider.describe = lambda model_id: calls.append(model_id) or describe(model_id)
    client = ClientSession()
    for z in bbc.test_source[:3]:
        run_encrypted_query(client, provider, "m", z, "sealed")
    assert calls == ["m"]
    provider.require_labels(["m"])
    with pytest.raises(AnswerRefusedError):  # the cached description still allows logits: the provider refuses
        run_encrypted_query(client, provider, "m", bbc.test_source[0], "sealed")
    with pytest.raises(AnswerRefusedError, match="only with label"):  # described again: refused before sending
        run_encrypted_query(client, provider, "m", bbc.test_source[0], "sealed")
    assert calls == ["m", "m"]
    wins, _ = run_encrypted_query(client, provider, "m", bbc.test_source[0], "sealed", answer="label")
    assert np.argmax(wins) == plaintext_logits(bbc.test_source[0], bbc.V, bbc.c, bbc.W, bbc.b).argmax()
