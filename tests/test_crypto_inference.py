"""Encrypted inference on real embeddings: 200 test queries per task, both modes, in-process and over HTTP.

The provider's head is a logistic regression on real MiniLM embeddings; the client's queries are real WordLlama
embeddings, mapped by a ridge map fitted on the task's training texts. Every encrypted result is compared with the
plaintext reference computed from the same inputs.
"""

import time

import numpy as np
import pytest

from securealign.alignment import AffineMap
from securealign.crypto import (
    ClientSession,
    Layout,
    Provider,
    RemoteProvider,
    plaintext_logits,
    run_encrypted_query,
)
from securealign.crypto.server import running_server
from securealign.experiments.task_models import fit_task_models
from securealign.heads import LinearHead

TASKS = ("rotten_tomatoes", "bbc_news")
N_QUERIES = 200


@pytest.fixture(scope="module")
def models():
    return {task: fit_task_models(task, "wordllama", "minilm", n_test=N_QUERIES) for task in TASKS}


@pytest.fixture(scope="module")
def provider(models):
    provider = Provider()
    for m in models.values():
        provider.register_sealed(m.model_id, m.W, m.b, m.V, m.c, m.classes)
    return provider


@pytest.fixture(scope="module")
def url(provider):
    with running_server(provider) as base_url:
        yield base_url


def _check_all_queries(client, provider, m, mode):
    reference = plaintext_logits(m.test_source, m.V, m.c, m.W, m.b)
    encrypted = np.array(
        [
            run_encrypted_query(client, provider, m.model_id, z, mode, affine_map=AffineMap(m.W, m.b))[0]
            for z in m.test_source
        ]
    )
    assert encrypted.shape == (N_QUERIES, len(m.classes))
    assert np.max(np.abs(encrypted - reference)) < 1e-3
    assert np.array_equal(encrypted.argmax(1), reference.argmax(1))
    # the head is a real classifier, so the shared predictions mean something
    assert (reference.argmax(1) == m.test_labels).mean() > 0.5


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("mode", ("paper", "sealed"))
@pytest.mark.slow  # over 20 s on 2 cores: not in the fast tier
def test_in_process_matches_plaintext_on_200_queries(models, provider, task, mode):
    _check_all_queries(ClientSession(), provider, models[task], mode)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("mode", ("paper", "sealed"))
@pytest.mark.slow  # over 20 s on 2 cores: not in the fast tier
def test_over_http_matches_plaintext_on_200_queries(models, url, task, mode):
    with RemoteProvider(url) as remote:
        _check_all_queries(ClientSession(), remote, models[task], mode)


def test_many_classes_span_several_ciphertexts(models):
    """A 23-class head on the real queries: a 384-d input spans 256 slots, so 16 class cosets per ciphertext and
    two result ciphertexts."""
    m = models["bbc_news"]
    rng = np.random.default_rng(0)
    V, c = rng.normal(size=(m.V.shape[0], 23)), rng.normal(size=23)
    provider = Provider()
    provider.register_head("wide", V, c)
    assert Layout.from_dict(provider.describe("wide")["modes"]["paper"]).n_ciphertexts == 2
    client = ClientSession()
    for z in m.test_source[:20]:
        logits, trace = run_encrypted_query(client, provider, "wide", z, "paper", affine_map=AffineMap(m.W, m.b))
        assert np.max(np.abs(logits - plaintext_logits(z, V, c, m.W, m.b))) < 1e-3


def test_one_dimensional_input_needs_no_rotation(models):
    """The smallest layout (d = 1: no window sum) still round-trips, and its session has a unique key id."""
    provider = Provider()
    provider.register_head("tiny", np.array([[2.0, -1.0, 0.5]]), np.array([0.1, 0.2, 0.3]))
    layout = Layout.from_dict(provider.describe("tiny")["modes"]["paper"])
    first, second = ClientSession([layout]), ClientSession([layout])
    assert layout.steps == [] and first.key_id != second.key_id
    logits, _ = run_encrypted_query(first, provider, "tiny", np.array([0.7]), "paper")
    assert np.allclose(logits, [1.5, -0.5, 0.65], atol=1e-3)


def test_register_accepts_head_and_map_objects(models):
    """The alignment module's ``AffineMap`` and the heads module's ``LinearHead``, as the app registers them."""
    m = models["bbc_news"]
    provider = Provider()
    provider.register("bbc", LinearHead(m.V, m.c, m.classes), AffineMap(m.W, m.b))
    info = provider.describe("bbc")
    assert info["classes"] == m.classes and set(info["modes"]) == {"paper", "sealed"}
    logits, _ = run_encrypted_query(ClientSession(), provider, "bbc", m.test_source[0], "sealed")
    assert np.max(np.abs(logits - plaintext_logits(m.test_source[0], m.V, m.c, m.W, m.b))) < 1e-3


def test_trace_lists_the_protocol_steps_with_sizes(models, provider):
    m = models["bbc_news"]
    client = ClientSession()
    _, first = run_encrypted_query(client, provider, m.model_id, m.test_source[0], "sealed")
    _, second = run_encrypted_query(client, provider, m.model_id, m.test_source[1], "sealed")
    assert [s.party for s in first.steps] == ["client", "client", "provider", "client"]
    assert [s.kind for s in first.steps] == ["keys", "encrypt", "provider", "decrypt"]
    assert first.steps[0].bytes > 1_000_000 and "no secret key" in first.steps[0].what  # context, sent once
    assert [s.kind for s in second.steps] == ["encrypt", "provider", "decrypt"]  # session reused
    assert all(s.ms >= 0 for s in second.steps) and second.steps[0].preview.endswith("…")
    assert 0 < second.steps[0].bytes <= 500_000 and 0 < second.steps[1].bytes <= 500_000
    assert second.residue < 1e-4


def test_expired_session_is_reopened_transparently(models):
    m = models["rotten_tomatoes"]
    provider = Provider(session_ttl=0.5)
    provider.register_head(m.model_id, m.V, m.c)
    client = ClientSession()
    mapped = m.test_source[:2] @ m.W + m.b
    run_encrypted_query(client, provider, m.model_id, mapped[0], "paper")
    time.sleep(0.6)  # the session expires
    logits, trace = run_encrypted_query(client, provider, m.model_id, mapped[1], "paper")
    assert np.max(np.abs(logits - plaintext_logits(mapped[1], m.V, m.c))) < 1e-3
    assert any("public context" in s.what for s in trace.steps)
