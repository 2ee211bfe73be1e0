"""Every bad input gets a clear ``ProtocolError`` (a ``ValueError``) and the provider keeps serving afterwards.

Runs on a real head (logistic regression on MiniLM embeddings of Rotten Tomatoes) and real WordLlama queries.
"""

import gc
import hashlib
import json
import struct

import numpy as np
import pytest
import tenseal.sealapi as seal

from securealign.crypto import ClientSession, Layout, Provider, ckks, plaintext_logits, wire
from securealign.crypto.errors import (
    DimensionError,
    IntegrityError,
    KeyMismatchError,
    LimitExceededError,
    ParameterError,
    ProtocolError,
    SecretKeyRefusedError,
    UnknownModelError,
    UnknownSessionError,
    WireFormatError,
)
from securealign.crypto.layout import DEPTH
from securealign.experiments.task_models import fit_task_models


@pytest.fixture(scope="module")
def setup():
    m = fit_task_models("rotten_tomatoes", "wordllama", "minilm", n_test=20)
    provider = Provider()
    provider.register_sealed("rt", m.W, m.b, m.V, m.c, m.classes)
    layout = Layout.from_dict(provider.describe("rt")["modes"]["sealed"])
    client = ClientSession([layout])
    session = provider.open_session(client.public_context())
    return m, provider, layout, client, session


def _good_round_trip(setup, i=0):
    """The next good request after a refusal: it must still give the right logits."""
    m, provider, layout, client, session = setup
    z = m.test_source[i]
    logits = client.decrypt_result(provider.evaluate(session, "rt", client.encrypt_query(z, layout, "sealed")))
    assert np.max(np.abs(logits - plaintext_logits(z, m.V, m.c, m.W, m.b))) < 1e-3


def _query(setup, i=0):
    m, _, layout, client, _ = setup
    return client.encrypt_query(m.test_source[i], layout, "sealed")


def _refused(setup, error, data, model="rt"):
    _, provider, _, _, session = setup
    with pytest.raises(error) as info:
        provider.evaluate(session, model, data)
    assert isinstance(info.value, ValueError) and str(info.value)
    _good_round_trip(setup, 1)


def test_truncated_query(setup):
    query = _query(setup)
    for cut in (0, 10, 44, len(query) // 2, len(query) - 1):
        _refused(setup, WireFormatError, query[:cut])


def test_padded_and_random_bytes(setup):
    _refused(setup, WireFormatError, _query(setup) + b"\0" * 100)
    _refused(setup, WireFormatError, np.random.default_rng(0).bytes(120_000))
    _refused(setup, WireFormatError, "not bytes")


def test_oversized_declared_size_is_refused_before_reading(setup):
    query = bytearray(_query(setup))
    struct.pack_into(">Q", query, 44, 1 << 40)  # the blob-size table starts right after the 44-byte header
    _refused(setup, LimitExceededError, bytes(query))
    header = bytearray(query[:44])
    struct.pack_into(">B", header, 7, 200)  # 200 blobs in a QUERY
    _refused(setup, LimitExceededError, bytes(header) + b"\0" * 2000)


def test_tampered_ciphertext_fails_the_digest(setup):
    query = bytearray(_query(setup))
    query[len(query) // 2] ^= 0x01
    _refused(setup, IntegrityError, bytes(query))


def test_tampered_and_reframed_ciphertext_never_yields_a_prediction(setup):
    """An attacker who also recomputes the digest: SEAL refuses the blob, or the client's key check fails."""
    _, provider, _, client, session = setup
    message = wire.decode(_query(setup), wire.MessageType.QUERY)
    blob = bytearray(message.blobs[0])
    blob[len(blob) // 2] ^= 0xFF
    forged = wire.encode(wire.MessageType.QUERY, message.meta, [bytes(blob)])
    with pytest.raises(ProtocolError):
        client.decrypt_result(provider.evaluate(session, "rt", forged))
    _good_round_trip(setup)


def _mutate(blob: bytes, trial: int, rng: np.random.Generator) -> bytes:
    """Bit flips anywhere, a changed byte in SEAL's header, or random bytes of the same length."""
    out = bytearray(blob)
    if trial % 3 == 0:
        for i in rng.integers(0, len(out), size=int(rng.integers(1, 9))):
            out[i] ^= 1 << int(rng.integers(0, 8))
    elif trial % 3 == 1:
        out[int(rng.integers(0, 64))] = int(rng.integers(0, 256))
    else:
        out = bytearray(rng.integers(0, 256, size=len(out), dtype=np.uint8).tobytes())
    return bytes(out)


def test_random_reframed_tampering_is_refused_or_harmless(setup):
    """A man in the middle who alters ciphertexts and recomputes the digest, 60 times each way (seeded). A tampered
    query is refused by the provider, or its answer, re-pointed at the client's real query, is refused by the client
    or shows the true logits; a tampered result likewise. Only ProtocolErrors are raised, never wrong predictions."""
    m, provider, layout, client, session = setup
    rng, outcomes = np.random.default_rng(7), []

    def client_outcome(z: np.ndarray, result: wire.Message, blob: bytes, query_digest: str) -> str:
        forged = wire.encode(wire.MessageType.RESULT, dict(result.meta, query=query_digest), [blob])
        try:
            logits = client.decrypt_result(forged)
        except ProtocolError:
            return "refused"
        assert np.max(np.abs(logits - plaintext_logits(z, m.V, m.c, m.W, m.b))) < 1e-3
        return "harmless"

    for trial in range(60):  # tampered queries
        z = m.test_source[trial % len(m.test_source)]
        query = wire.decode(client.encrypt_query(z, layout, "sealed"), wire.MessageType.QUERY)
        try:
            answer = provider.evaluate(
                session, "rt", wire.encode(wire.MessageType.QUERY, query.meta, [_mutate(query.blobs[0], trial, rng)])
            )
        except ProtocolError:
            outcomes.append("refused")
            continue
        result = wire.decode(answer, wire.MessageType.RESULT)
        outcomes.append(client_outcome(z, result, result.blobs[0], query.digest_hex))
    for trial in range(60):  # tampered results
        z = m.test_source[trial % len(m.test_source)]
        result = wire.decode(
            provider.evaluate(session, "rt", client.encrypt_query(z, layout, "sealed")), wire.MessageType.RESULT
        )
        outcomes.append(client_outcome(z, result, _mutate(result.blobs[0], trial, rng), result.meta["query"]))
    assert len(outcomes) == 120 and outcomes[:60].count("refused") >= 55 and outcomes[60:].count("refused") >= 55
    _good_round_trip(setup)


def test_query_from_another_session_is_refused_by_the_provider(setup):
    m, _, layout, _, _ = setup
    stranger = ClientSession([layout])
    _refused(setup, KeyMismatchError, stranger.encrypt_query(m.test_source[0], layout, "sealed"))


def test_result_under_a_foreign_key_is_detected_by_the_client(setup):
    """A foreign ciphertext dressed up as the answer to our pending query decrypts to noise: refused, not shown."""
    m, provider, layout, client, _ = setup
    stranger = ClientSession([layout])
    their_session = provider.open_session(stranger.public_context())
    their_result = wire.decode(
        provider.evaluate(their_session, "rt", stranger.encrypt_query(m.test_source[0], layout, "sealed")),
        wire.MessageType.RESULT,
    )
    our_query = wire.decode(_query(setup), wire.MessageType.QUERY)
    disguised = wire.encode(
        wire.MessageType.RESULT,
        dict(their_result.meta, key=client.key_id, query=our_query.digest_hex),
        list(their_result.blobs),
    )
    with pytest.raises(KeyMismatchError, match="shape of a genuine answer"):
        client.decrypt_result(disguised)
    _good_round_trip(setup)


def test_result_replay_and_tampering_are_refused(setup):
    m, provider, layout, client, session = setup
    result = provider.evaluate(session, "rt", _query(setup))
    client.decrypt_result(result)
    with pytest.raises(ProtocolError, match="no pending query"):
        client.decrypt_result(result)
    tampered = bytearray(provider.evaluate(session, "rt", _query(setup)))
    tampered[-100] ^= 0x10
    with pytest.raises(IntegrityError):
        client.decrypt_result(bytes(tampered))


def test_wrong_dimensions_and_modes(setup):
    m, provider, layout, client, session = setup
    with pytest.raises(DimensionError):
        client.encrypt_query(np.ones(layout.d_in + 1), layout, "sealed")
    paper = Layout.from_dict(provider.describe("rt")["modes"]["paper"])
    probe = ClientSession()
    mismatched = probe.encrypt_query(np.ones(paper.d_in), paper, "sealed")  # paper layout claiming sealed mode
    with pytest.raises(DimensionError):
        provider.evaluate(provider.open_session(probe.public_context()), "rt", mismatched)
    with pytest.raises(ParameterError):
        client.encrypt_query(m.test_source[0], layout, "telepathy")
    provider.register_head("head-only", m.V, m.c)
    _refused(setup, ParameterError, _query(setup), model="head-only")
    with pytest.raises(DimensionError):
        provider.register_sealed("bad", m.W[:, :10], m.b, m.V, m.c)
    with pytest.raises(DimensionError):
        provider.register_head("nan", np.full_like(m.V, np.nan), m.c)


def test_layout_mismatch_is_a_dimension_error(setup):
    m, provider, layout, client, session = setup
    wrong = Layout.plan(layout.d_in - 1, layout.n_classes)
    probe = ClientSession([wrong])
    probe_session = provider.open_session(probe.public_context())
    with pytest.raises(DimensionError):
        provider.evaluate(probe_session, "rt", probe.encrypt_query(m.test_source[0][:-1], wrong, "sealed"))
    _good_round_trip(setup)


def test_unknown_model_and_session(setup):
    _, provider, _, _, session = setup
    _refused(setup, UnknownModelError, _query(setup), model="no-such-model")
    with pytest.raises(UnknownModelError, match="rt"):
        provider.describe("no-such-model")
    with pytest.raises(UnknownSessionError):
        provider.evaluate("no-such-session", "rt", _query(setup))
    _good_round_trip(setup)


def test_context_with_a_secret_key_is_refused(setup):
    _, provider, _, client, _ = setup
    secret = ckks.save_bytes(client._keys.secret_key)
    meta = {"key": client.key_id, "steps": client.steps, "blobs": ["parameters", "secret_key"]}
    with pytest.raises(SecretKeyRefusedError):
        provider.open_session(wire.encode(wire.MessageType.CONTEXT, meta, [ckks.parameters_bytes(), secret]))
    # smuggled under the Galois-keys name, it does not load as Galois keys
    meta["blobs"] = list(wire.CONTEXT_BLOBS)
    public = client._keys.public_key_bytes()
    with pytest.raises(WireFormatError):
        provider.open_session(wire.encode(wire.MessageType.CONTEXT, meta, [ckks.parameters_bytes(), secret, public]))
    # nor under the public key's name: it has not a public key's size
    message = wire.decode(client.public_context(), wire.MessageType.CONTEXT)
    with pytest.raises(ParameterError, match="public key"):
        provider.open_session(wire.encode(wire.MessageType.CONTEXT, message.meta, [*message.blobs[:2], secret]))
    _good_round_trip(setup)


def test_context_with_other_parameters_or_a_bad_key_id_is_refused(setup):
    _, provider, _, client, _ = setup
    message = wire.decode(client.public_context(), wire.MessageType.CONTEXT)
    params = seal.EncryptionParameters(seal.SCHEME_TYPE.CKKS)
    params.set_poly_modulus_degree(16384)
    params.set_coeff_modulus(seal.CoeffModulus.Create(16384, [60, 40, 40, 60]))
    with pytest.raises(ParameterError):
        provider.open_session(
            wire.encode(wire.MessageType.CONTEXT, message.meta, [ckks.save_bytes(params), *message.blobs[1:]])
        )
    with pytest.raises(KeyMismatchError):
        provider.open_session(
            wire.encode(wire.MessageType.CONTEXT, dict(message.meta, key="0" * 32), list(message.blobs))
        )
    with pytest.raises(ParameterError):
        provider.open_session(
            wire.encode(wire.MessageType.CONTEXT, dict(message.meta, steps=[1, 2, 3]), list(message.blobs))
        )


def test_session_memory_bound_evicts_least_recently_used():
    provider = Provider(max_sessions=2)
    ids = [provider.open_session(ClientSession([Layout.plan(8, 2)]).public_context()) for _ in range(3)]
    assert len(provider.sessions) == 2
    with pytest.raises(UnknownSessionError):
        provider.sessions.get(ids[0])
    small = Provider(max_session_bytes=1 << 20)
    with pytest.raises(LimitExceededError):
        small.open_session(ClientSession().public_context())


def _reachable(root) -> list:
    seen, stack, found = set(), [root], []
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (type, type(gc))):
            continue
        seen.add(id(obj))
        found.append(obj)
        stack.extend(gc.get_referents(obj))
    return found


def test_provider_never_holds_a_secret_key(setup):
    m, provider, layout, client, session = setup
    _good_round_trip(setup)
    secret_types = (seal.SecretKey, seal.Decryptor, seal.KeyGenerator, ckks.KeyPair)
    reachable = _reachable(provider)
    assert any(isinstance(obj, seal.GaloisKeys) for obj in reachable)  # the walk does reach the sessions' keys
    assert [obj for obj in reachable if isinstance(obj, secret_types)] == []
    assert any(isinstance(obj, seal.SecretKey) for obj in _reachable(client))  # and would see a secret key
    assert not any(isinstance(obj, secret_types) for obj in _reachable(provider.sessions.get(session)))


def _zeroed(blob: bytes, parms_id, scale: float) -> bytes:
    """A transparent (all-zero) ciphertext at the blob's level: it decrypts to zero under any key, so whoever makes
    one chooses what it decrypts to."""
    ct = ckks.load_ciphertext(blob, parms_id=parms_id, scale=scale)
    ct.dyn_array().clear()
    ct.resize(ckks.context(), parms_id, 2)
    return ckks.save_bytes(ct)


def test_transparent_ciphertexts_are_refused_and_the_genuine_answer_still_counts(setup):
    m, provider, layout, client, session = setup
    query = _query(setup, 2)
    message = wire.decode(query, wire.MessageType.QUERY)
    forged_query = wire.encode(
        wire.MessageType.QUERY, message.meta, [_zeroed(message.blobs[0], ckks.fresh_parms_id(DEPTH), ckks.SCALE)]
    )
    with pytest.raises(ParameterError, match="seeded"):  # its random half is not a seed's: refused before loading
        provider.evaluate(session, "rt", forged_query)
    result = provider.evaluate(session, "rt", query)
    answer = wire.decode(result, wire.MessageType.RESULT)
    forged = wire.encode(
        wire.MessageType.RESULT, answer.meta, [_zeroed(b, ckks.bottom_parms_id(), ckks.SCALE) for b in answer.blobs]
    )
    with pytest.raises(ParameterError, match="transparent"):
        client.decrypt_result(forged)
    # the forged answer did not use up the query: the genuine one is still accepted, and only once
    logits = client.decrypt_result(result)
    assert np.max(np.abs(logits - plaintext_logits(m.test_source[2], m.V, m.c, m.W, m.b))) < 1e-3
    with pytest.raises(ProtocolError, match="no pending query"):
        client.decrypt_result(result)


def test_a_query_whose_random_half_is_not_a_seeds_is_refused(setup):
    """A client that chose its ciphertext's random half c1 (say q times a constant) would make the provider's
    product carry the weight polynomial itself in the half it returns, which no re-randomisation hides. A fresh
    query must therefore arrive seeded: the same ciphertext serialized in full (c1 written out, so it could be
    anything) is refused before any computation, and the genuine query is still answered."""
    m, provider, layout, client, session = setup
    query = _query(setup, 3)
    message = wire.decode(query, wire.MessageType.QUERY)
    ct = ckks.load_fresh(message.blobs[0], DEPTH)
    unseeded = ckks.save_bytes(ct)  # the same ciphertext with c1 written out: any c1 could stand there
    with pytest.raises(ParameterError, match="seeded"):
        provider.evaluate(session, "rt", wire.encode(wire.MessageType.QUERY, message.meta, [unseeded]))
    logits = client.decrypt_result(provider.evaluate(session, "rt", query))
    assert np.max(np.abs(logits - plaintext_logits(m.test_source[3], m.V, m.c, m.W, m.b))) < 1e-3


def test_deeply_nested_metadata_is_a_wire_format_error(setup):
    """4 KB of nested brackets with a correct digest: the JSON parser's recursion limit becomes a refusal."""
    meta, blob = b"[" * 2000 + b"]" * 2000, b"\0" * 16
    header = struct.pack(
        ">4sHBBI32s",
        wire.MAGIC,
        wire.VERSION,
        int(wire.MessageType.QUERY),
        1,
        len(meta),
        hashlib.sha256(meta + blob).digest(),
    )
    _refused(setup, WireFormatError, header + struct.pack(">Q", len(blob)) + meta + blob)


def test_heads_and_fits_too_large_for_one_message_are_refused_up_front(setup):
    """Refused at registration or when the fit opens, not after every query's or every row's full computation."""
    _, provider, _, _, session = setup
    with pytest.raises(LimitExceededError):  # 384-d input, 10 classes per result ciphertext: 700 classes need 70
        provider.register_head("huge", np.ones((384, 700)), np.zeros(700))
    provider.add_public_set("wide", ["a", "b"], np.ones((2, 768)))
    with pytest.raises(LimitExceededError):  # a 1,025-wide client row against 768-d rows: 256 product ciphertexts
        provider.open_fit(session, "wide", "paper", 1025)
    assert "huge" not in provider.models()


def _framed(kind: wire.MessageType, meta: bytes, blobs: list[bytes]) -> bytes:
    """A message whose metadata bytes are given verbatim (``wire.encode`` would write valid JSON), digest correct."""
    digest = hashlib.sha256(meta + b"".join(blobs)).digest()
    header = struct.pack(">4sHBBI32s", wire.MAGIC, wire.VERSION, int(kind), len(blobs), len(meta), digest)
    return header + struct.pack(f">{len(blobs)}Q", *map(len, blobs)) + meta + b"".join(blobs)


@pytest.mark.parametrize(
    "d_in", ["Infinity", "-Infinity", "NaN", "1e999", '"384"', "384.5", "true", "9" * 5000, "null", "[384]"]
)
def test_malformed_numbers_in_a_query_layout_are_refused(setup, d_in):
    """Issue 10: d_in = Infinity (digest recomputed) raised OverflowError, an HTTP 500; every malformed number is now
    a ``ProtocolError`` (HTTP 400), and the provider keeps serving."""
    m, provider, layout, client, session = setup
    message = wire.decode(_query(setup), wire.MessageType.QUERY)
    good = json.dumps(message.meta, separators=(",", ":"), sort_keys=True)
    forged = good.replace(f'"d_in":{layout.d_in}', f'"d_in":{d_in}')
    assert forged != good
    _refused(setup, ProtocolError, _framed(wire.MessageType.QUERY, forged.encode(), list(message.blobs)))


def test_unknown_metadata_keys_are_refused_everywhere(setup):
    """Nothing rides along in metadata: not beside a query's fields, not inside its layout, not in a context (where a
    secret key could hide)."""
    m, provider, layout, client, session = setup
    message = wire.decode(_query(setup), wire.MessageType.QUERY)
    with pytest.raises(WireFormatError, match="keys"):
        provider.evaluate(
            session, "rt", wire.encode(wire.MessageType.QUERY, dict(message.meta, extra=1), list(message.blobs))
        )
    with pytest.raises(ParameterError):
        provider.evaluate(
            session,
            "rt",
            wire.encode(
                wire.MessageType.QUERY,
                dict(message.meta, layout=dict(message.meta["layout"], extra=1)),
                list(message.blobs),
            ),
        )
    context = wire.decode(client.public_context(), wire.MessageType.CONTEXT)
    secret = ckks.save_bytes(client._keys.secret_key).hex()[:3000]
    with pytest.raises(WireFormatError, match="keys"):
        provider.open_session(
            wire.encode(wire.MessageType.CONTEXT, dict(context.meta, secret_key=secret), list(context.blobs))
        )
    _good_round_trip(setup)


def test_galois_keys_must_be_exactly_those_of_the_declared_steps(setup):
    """Issue 10 item 7 and the memory finding: bytes appended to a Galois-keys blob (SEAL ignores them), fewer or
    more keys than declared steps, and keys of other steps are refused; the genuine blob is accepted."""
    _, provider, _, client, _ = setup
    context = wire.decode(client.public_context(), wire.MessageType.CONTEXT)
    parameters, galois, public = context.blobs
    steps = context.meta["steps"]
    secret = ckks.save_bytes(client._keys.secret_key)

    def opened(blob: bytes, declared: list[int]) -> str:
        meta = dict(context.meta, key=ckks.key_id(blob), steps=declared)
        return provider.open_session(wire.encode(wire.MessageType.CONTEXT, meta, [parameters, blob, public]))

    with pytest.raises(WireFormatError, match="trailing"):
        opened(galois + secret, steps)
    with pytest.raises(ParameterError, match="declares"):  # one step fewer declared than keys sent
        opened(galois, steps[:-1])
    with pytest.raises(ParameterError, match="exactly"):  # as many keys as steps declared, but not those steps
        opened(galois, steps[1:] + [3])
    with pytest.raises(ParameterError, match="distinct"):
        opened(galois, [1] * len(steps))
    with pytest.raises(ParameterError, match="distinct"):
        opened(galois, steps + list(range(3, 3 + ckks.MAX_ROTATION_KEYS)))
    provider.close_session(opened(galois, steps))


@pytest.mark.parametrize("d_in", [float("inf"), float("nan"), "384", 384.5, None, 10**400])
def test_layout_from_a_peer_refuses_malformed_numbers(d_in):
    """``Layout.from_dict`` also reads layouts that did not come through ``wire`` (``describe`` over HTTP)."""
    good = Layout.plan(384, 2).to_dict()
    with pytest.raises(ParameterError):
        Layout.from_dict(dict(good, d_in=d_in))
    assert Layout.from_dict(good) == Layout.plan(384, 2)
