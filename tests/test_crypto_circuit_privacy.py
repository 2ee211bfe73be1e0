"""Circuit-private (re-randomised, noise-flooded) classification answers on real CKKS and real embeddings.

The provider's heads are logistic regressions on real MiniLM embeddings, the client's queries real WordLlama
embeddings mapped by a ridge map (as in test_crypto_inference). What is checked: the answers stay correct at the
stated tolerance (every label of the real test queries, logits within PRIVATE_LOGITS_TOLERANCE), the evaluation
noise on real queries stays below the bound the flood is sized from, two answers to the same query differ in both
ciphertext halves, bad input is still refused, and a key decrypts at most tau flooded answers.
"""

import numpy as np
import pytest

from securealign.alignment import AffineMap
from securealign.crypto import (
    ClientSession,
    Layout,
    Provider,
    RemoteProvider,
    ckks,
    flooding,
    plaintext_logits,
    run_encrypted_query,
    wire,
)
from securealign.crypto.errors import AnswerRefusedError, KeyMismatchError, ParameterError, QueryBudgetError
from securealign.experiments.task_models import fit_task_models

# The stated precision of circuit-private logits under the default policy (s = 30, tau = 16): the flood's std per
# output is ~3e-5 to 1e-4 on these heads (docs/protocol.md), so 1e-3 is about ten of them.
PRIVATE_LOGITS_TOLERANCE = 1e-3
TASKS = ("rotten_tomatoes", "bbc_news")


@pytest.fixture(scope="module")
def models():
    return {task: fit_task_models(task, "wordllama", "minilm", n_test=200) for task in TASKS}


@pytest.fixture(scope="module")
def provider(models):
    provider = Provider()
    for m in models.values():
        provider.register_sealed(m.model_id, m.W, m.b, m.V, m.c, m.classes)
    return provider


def _inputs(m, mode):
    return m.test_source @ m.W + m.b if mode == "paper" else m.test_source


def _layout(provider, m, mode, answer):
    return Layout.from_dict(provider.describe(m.model_id)["modes" if answer == "logits" else "label_modes"][mode])


def _answers(provider, m, mode, answer, xs):
    """Flooded answers to every query, each key used for at most tau of them (a fresh session after that)."""
    layout, tau = _layout(provider, m, mode, answer), provider.flood_policy.tau
    scores = []
    for start in range(0, len(xs), tau):
        client = ClientSession([layout])
        session = provider.open_session(client.public_context())
        for x in xs[start : start + tau]:
            result = provider.evaluate(session, m.model_id, client.encrypt_query(x, layout, mode, answer, "flooded"))
            assert wire.decode(result, wire.MessageType.RESULT).meta["privacy"] == "flooded"
            scores.append(client.decrypt_result(result))
    return np.array(scores)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("mode", ("paper", "sealed"))
@pytest.mark.slow  # 200 flooded queries and 13 key pairs per case: over 20 s on 2 cores
def test_flooded_label_answers_keep_every_label_of_the_real_test_queries(models, provider, task, mode):
    m = models[task]
    reference = plaintext_logits(m.test_source, m.V, m.c, m.W, m.b)
    wins = _answers(provider, m, mode, "label", _inputs(m, mode))
    assert np.array_equal(wins.argmax(1), reference.argmax(1))
    assert np.all(wins.max(1) == len(m.classes) - 1)  # the winner beats every other class, every time


@pytest.mark.parametrize("mode", ("paper", "sealed"))
def test_flooded_logits_match_plaintext_within_the_stated_tolerance(models, provider, mode):
    m = models["bbc_news"]
    xs = _inputs(m, mode)[:40]
    reference = plaintext_logits(m.test_source[:40], m.V, m.c, m.W, m.b)
    logits = _answers(provider, m, mode, "logits", xs)
    error = np.max(np.abs(logits - reference))
    assert error < PRIVATE_LOGITS_TOLERANCE
    assert error > 1e-7  # the flood is there: a plain answer's error is ~1e-7 at these scales
    assert np.array_equal(logits.argmax(1), reference.argmax(1))


@pytest.mark.parametrize("answer", ("logits", "label"))
def test_evaluation_noise_on_real_queries_stays_below_the_flood_bound(models, provider, answer):
    """The bound is measured on random queries with the provider's own keys; here the noise of the same computation
    on real queries, under a client's keys and the Galois keys the client sent, must stay below it."""
    m = models["bbc_news"]
    head = provider._model(m.model_id).head("sealed", answer, "flooded", provider.flood_policy)
    client = ClientSession([head.layout])
    session = provider.sessions.get(provider.open_session(client.public_context()))
    n = head.layout.n_classes
    settings = [np.ones(n)] + ([np.full(n, 2.0**head.private.blind_bits)] if answer == "label" else [])
    for x in m.test_source[:10]:
        for factors in settings:
            coset, residual = head.noise_norms(client._keys, session.galois_keys, x, factors)
            assert 0 < coset < head.private.bound.coset
            assert 0 < residual < head.private.bound.residual


def _halves(blob: bytes) -> tuple[bytes, bytes]:
    """The two polynomials of a bottom-level ciphertext, as raw bytes (its serialization ends with them)."""
    members = ckks.inflated(blob, 1 << 24)
    words = 8 * ckks.POLY_DEGREE  # one 60-bit prime left
    return members[-2 * words : -words], members[-words:]


def test_flooded_answers_to_one_query_differ_in_both_halves_and_plain_ones_do_not(models, provider):
    m = models["rotten_tomatoes"]
    x = m.test_source[0]
    results = {}
    for privacy in ("none", "flooded"):
        layout = _layout(provider, m, "sealed", "logits")
        client = ClientSession([layout])
        session = provider.open_session(client.public_context())
        query = client.encrypt_query(x, layout, "sealed", "logits", privacy)
        results[privacy] = [
            wire.decode(provider.evaluate(session, m.model_id, query), wire.MessageType.RESULT).blobs[0]
            for _ in range(2)
        ]
    plain, flooded = ([_halves(blob) for blob in results[kind]] for kind in ("none", "flooded"))
    assert plain[0] == plain[1]  # today's answer: a deterministic function of query, keys and head
    assert flooded[0][0] != flooded[1][0] and flooded[0][1] != flooded[1][1]
    # the second half is re-randomised: no longer the query's seeded half times the weights
    assert flooded[0][1] != plain[0][1]


def test_a_provider_can_require_flooded_answers(models):
    m = models["rotten_tomatoes"]
    provider = Provider()
    provider.register_sealed("rt", m.W, m.b, m.V, m.c, m.classes)
    provider.require_private(["rt"])
    info = provider.describe("rt")
    assert info["privacy"] == ["flooded"] and info["flooding"] == {"s": 30, "tau": 16}
    layout = Layout.from_dict(info["label_modes"]["sealed"])
    client = ClientSession([layout])
    session = provider.open_session(client.public_context())
    with pytest.raises(AnswerRefusedError, match="circuit-private"):
        provider.evaluate(session, "rt", client.encrypt_query(m.test_source[0], layout, "sealed", "label"))
    wins = client.decrypt_result(
        provider.evaluate(session, "rt", client.encrypt_query(m.test_source[0], layout, "sealed", "label", "flooded"))
    )
    assert wins.argmax() == plaintext_logits(m.test_source[0], m.V, m.c, m.W, m.b).argmax()
    no_privacy = Provider(circuit_privacy=None)
    no_privacy.register_sealed("rt", m.W, m.b, m.V, m.c, m.classes)
    with pytest.raises(ParameterError):
        no_privacy.require_private()


def test_a_key_decrypts_at_most_tau_flooded_answers(models):
    m = models["rotten_tomatoes"]
    provider = Provider(circuit_privacy=flooding.FloodPolicy(s=30, tau=3))
    provider.register_sealed("rt", m.W, m.b, m.V, m.c, m.classes)
    layout = Layout.from_dict(provider.describe("rt")["modes"]["sealed"])
    client = ClientSession([layout])
    session = provider.open_session(client.public_context())
    for x in m.test_source[:3]:
        client.decrypt_result(
            provider.evaluate(session, "rt", client.encrypt_query(x, layout, "sealed", "logits", "flooded"))
        )
    assert client.private_answers == 3
    with pytest.raises(QueryBudgetError, match="fresh keys"):
        provider.evaluate(session, "rt", client.encrypt_query(m.test_source[3], layout, "sealed", "logits", "flooded"))
    # a new session under the same key does not reset it; plain answers are still given
    again = provider.open_session(client.public_context())
    with pytest.raises(QueryBudgetError):
        provider.evaluate(again, "rt", client.encrypt_query(m.test_source[3], layout, "sealed", "logits", "flooded"))
    client.decrypt_result(provider.evaluate(again, "rt", client.encrypt_query(m.test_source[3], layout, "sealed")))
    fresh = ClientSession([layout])
    fresh_session = provider.open_session(fresh.public_context())
    fresh.decrypt_result(
        provider.evaluate(
            fresh_session, "rt", fresh.encrypt_query(m.test_source[3], layout, "sealed", "logits", "flooded")
        )
    )


def test_a_flooded_result_under_a_foreign_key_or_altered_is_refused(models, provider):
    """The flood leaves a genuine result within ten flood stds of its shape; a foreign key's decryption is
    ~1e4 away, so the shape check still tells them apart."""
    m = models["rotten_tomatoes"]
    layout = _layout(provider, m, "sealed", "label")
    client, stranger = ClientSession([layout]), ClientSession([layout])
    ours, theirs = (provider.open_session(c.public_context()) for c in (client, stranger))
    x = m.test_source[0]
    their_result = wire.decode(
        provider.evaluate(theirs, m.model_id, stranger.encrypt_query(x, layout, "sealed", "label", "flooded")),
        wire.MessageType.RESULT,
    )
    our_query = client.encrypt_query(x, layout, "sealed", "label", "flooded")
    disguised = wire.encode(
        wire.MessageType.RESULT,
        dict(their_result.meta, key=client.key_id, query=wire.digest_hex(our_query)),
        list(their_result.blobs),
    )
    with pytest.raises(KeyMismatchError, match="shape of a genuine answer"):
        client.decrypt_result(disguised)
    genuine = wire.decode(provider.evaluate(ours, m.model_id, our_query), wire.MessageType.RESULT)
    for meta in (dict(genuine.meta, max_residual=1e6), dict(genuine.meta, privacy="none")):
        with pytest.raises(ParameterError):
            client.decrypt_result(wire.encode(wire.MessageType.RESULT, meta, list(genuine.blobs)))
    assert client.decrypt_result(wire.encode(wire.MessageType.RESULT, genuine.meta, list(genuine.blobs))).argmax() == (
        plaintext_logits(x, m.V, m.c, m.W, m.b).argmax()
    )


def test_a_flooded_query_must_be_encrypted_at_the_private_scale(models, provider):
    m = models["rotten_tomatoes"]
    layout = _layout(provider, m, "sealed", "logits")
    client = ClientSession([layout])
    session = provider.open_session(client.public_context())
    plain = wire.decode(client.encrypt_query(m.test_source[0], layout, "sealed"), wire.MessageType.QUERY)
    relabelled = wire.encode(wire.MessageType.QUERY, dict(plain.meta, privacy="flooded"), list(plain.blobs))
    with pytest.raises(ParameterError, match="scale"):
        provider.evaluate(session, m.model_id, relabelled)
    with pytest.raises(ParameterError, match="privacy"):
        provider.evaluate(
            session,
            m.model_id,
            wire.encode(wire.MessageType.QUERY, dict(plain.meta, privacy="maybe"), list(plain.blobs)),
        )


def test_the_public_context_carries_no_secret_key(models):
    client = ClientSession()
    message = wire.decode(client.public_context(), wire.MessageType.CONTEXT)
    assert message.meta["blobs"] == ["parameters", "galois_keys", "public_key"]
    secret = ckks.inflated(ckks.save_bytes(client._keys.secret_key), 1 << 24)[-4096:]
    assert all(secret not in ckks.inflated(blob, 1 << 26) for blob in message.blobs[1:])


def test_flooded_answers_over_http_and_the_serve_flag(models, tmp_path, launch_provider):
    """``serve --circuit-private ID`` makes a model answer only with flooded answers; the kind travels in the
    wire format and the description, and the trace says which kind arrived."""
    m = models["bbc_news"]
    np.savez(tmp_path / "bbc.npz", V=m.V, c=m.c, W=m.W, b=m.b, classes=np.array(m.classes))
    z = m.test_source[0]
    expected = plaintext_logits(z, m.V, m.c, m.W, m.b).argmax()
    args = ("--model", f"bbc={tmp_path / 'bbc.npz'}", "--circuit-private", "bbc", "--flood-answers-per-key", "8")
    with launch_provider(*args) as (url, _), RemoteProvider(url) as remote:
        info = remote.describe("bbc")
        assert info["privacy"] == ["flooded"] and info["flooding"] == {"s": 30, "tau": 8}
        client = ClientSession()
        with pytest.raises(AnswerRefusedError):
            run_encrypted_query(client, remote, "bbc", z, "sealed", answer="label", privacy="none")
        scores, trace = run_encrypted_query(client, remote, "bbc", z, "sealed", answer="label")
        assert trace.privacy == "flooded" and np.argmax(scores) == expected
        logits, trace = run_encrypted_query(client, remote, "bbc", z, "paper", affine_map=AffineMap(m.W, m.b))
        assert trace.privacy == "flooded"
        assert np.max(np.abs(logits - plaintext_logits(z, m.V, m.c, m.W, m.b))) < PRIVATE_LOGITS_TOLERANCE


def test_the_flood_size_depends_on_the_layout_and_a_power_of_two_only(models):
    """A client estimates the flood's std from thousands of slots, so it must not depend on the weights: two heads
    whose rows differ (by a tenth of their norm) but share the power of two above their largest row norm get the
    same flood, sized from a public stand-in."""
    m = models["bbc_news"]
    rng = np.random.default_rng(0)
    D = rng.normal(size=m.V.shape)
    D *= 0.1 * np.linalg.norm(m.V, axis=0) / np.linalg.norm(D, axis=0)
    provider = Provider()
    provider.register_head("one", m.V, m.c, m.classes)
    provider.register_head("two", m.V + D, m.c, m.classes)
    assert flooding.public_row_norm(m.V.T) == flooding.public_row_norm((m.V + D).T) == 8.0
    for answer in ("logits", "label"):
        one, two = (provider._model(k).head("paper", answer, "flooded", provider.flood_policy) for k in ("one", "two"))
        assert one.private.sigmas == two.private.sigmas
