"""Secure fitting of the map on real public-text embeddings equals the plaintext ridge solution.

The client's WordLlama and the provider's MiniLM embed the same 200 public texts; the plaintext reference is
scikit-learn's Ridge with an intercept.
"""

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from securealign.crypto import ClientSession, Layout, Provider, plaintext_logits, run_encrypted_query
from securealign.crypto.demo import fit_task_models
from securealign.crypto.errors import DimensionError, KeyMismatchError
from securealign.crypto.secure_fit import CrossProductEvaluator, KeyHolder, fit_map_paper, fit_map_sealed
from securealign.datasets import load_public_corpus
from securealign.embeddings import embed

ALPHA = 1e-2


@pytest.fixture(scope="module")
def public_pairs():
    texts = load_public_corpus(200)
    return embed("wordllama", texts, progress=False), embed("minilm", texts, progress=False)


@pytest.fixture(scope="module")
def reference(public_pairs):
    z_b, z_a = public_pairs
    ridge = Ridge(alpha=ALPHA).fit(z_b, z_a)
    return ridge.coef_.T, ridge.intercept_


@pytest.mark.parametrize("fit", [fit_map_paper, fit_map_sealed])
def test_secure_fit_equals_plaintext_ridge(public_pairs, reference, fit, capsys):
    W, b, cost = fit(*public_pairs, ALPHA, progress=True)
    assert np.max(np.abs(W - reference[0])) < 1e-4 and np.max(np.abs(b - reference[1])) < 1e-4
    assert cost.rows == 200 and cost.bytes_up > 0 and cost.bytes_down > 0
    assert set(cost.ms) == {"client", "provider"}
    assert "secure fit" in capsys.readouterr().err  # the progress bar


def test_sealed_fit_serves_sealed_inference(public_pairs):
    """The provider's W from the sealed fit, pre-composed with a real head, classifies real client queries."""
    m = fit_task_models("bbc_news", "wordllama", "minilm", n_test=30)
    W, b, _ = fit_map_sealed(*public_pairs, ALPHA, progress=False)
    provider = Provider()
    provider.register_sealed("bbc", W, b, m.V, m.c)
    client = ClientSession([Layout.from_dict(provider.describe("bbc")["modes"]["sealed"])])
    for z in m.test_source:
        logits, _ = run_encrypted_query(client, provider, "bbc", z, "sealed")
        assert np.max(np.abs(logits - plaintext_logits(z, m.V, m.c, W, b))) < 1e-3


def test_bad_inputs_to_the_fit_are_refused(public_pairs):
    z_b, z_a = public_pairs
    with pytest.raises(DimensionError):
        fit_map_paper(z_b[:10], z_a[:11], ALPHA, progress=False)
    with pytest.raises(DimensionError):
        fit_map_paper(np.full((5, 3), np.nan), z_a[:5], ALPHA, progress=False)
    holder, stranger = KeyHolder(), KeyHolder()
    evaluator = CrossProductEvaluator(z_a[:4], progress=False)
    for batch in holder.encrypt_rows(z_b[:4], z_a.shape[1]):
        evaluator.add(batch)
    product = evaluator.result()
    with pytest.raises(KeyMismatchError):
        stranger.decrypt(product)
    assert np.allclose(holder.decrypt(product), z_a[:4].T @ z_b[:4], atol=1e-4)
    with pytest.raises(DimensionError):
        CrossProductEvaluator(z_a[:2], progress=False).result()
