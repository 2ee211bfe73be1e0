"""Secure fitting of the map on real public-text embeddings equals the plaintext ridge solution, in process and over
HTTP, and the provider's half refuses what does not belong to a fit.

The client's WordLlama and the provider's MiniLM embed the same 200 public texts; the plaintext reference is
scikit-learn's Ridge with an intercept.
"""

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from securealign.crypto import ClientSession, Layout, Provider, RemoteProvider, plaintext_logits, run_encrypted_query
from securealign.crypto.demo import fit_task_models
from securealign.crypto import wire
from securealign.crypto.errors import (DimensionError, KeyMismatchError, LimitExceededError, ParameterError,
                                       UnknownFitError, WireFormatError)
from securealign.crypto.fit_client import fit_paper, fit_sealed
from securealign.crypto.secure_fit import CrossProductEvaluator, KeyHolder
from securealign.crypto.server import running_server
from securealign.datasets import load_public_corpus
from securealign.embeddings import embed

ALPHA = 1e-2
SET = "public"
pytestmark = pytest.mark.slow  # a served app, model fits or ciphertexts by the hundred: not in the fast tier


@pytest.fixture(scope="module")
def public_pairs():
    texts = load_public_corpus(200)
    return texts, embed("wordllama", texts), embed("minilm", texts)


@pytest.fixture(scope="module")
def reference(public_pairs):
    _, z_b, z_a = public_pairs
    ridge = Ridge(alpha=ALPHA).fit(z_b, z_a)
    return ridge.coef_.T, ridge.intercept_


@pytest.fixture(scope="module")
def bbc():
    """A real provider head (MiniLM on BBC News) and real client queries (WordLlama embeddings of test articles)."""
    return fit_task_models("bbc_news", "wordllama", "minilm", n_test=30)


def _provider(public_pairs, bbc) -> Provider:
    texts, _, z_a = public_pairs
    provider = Provider()
    provider.add_public_set(SET, texts, z_a)
    provider.register_head("bbc", bbc.V, bbc.c, bbc.classes)
    return provider


def _assert_ridge(W, b, reference) -> None:
    assert np.max(np.abs(W - reference[0])) < 1e-4 and np.max(np.abs(b - reference[1])) < 1e-4


def _assert_serves_sealed(provider, model_id: str, bbc, W, b) -> None:
    client = ClientSession([Layout.from_dict(provider.describe(model_id)["modes"]["sealed"])])
    for z in bbc.test_source:
        logits, _ = run_encrypted_query(client, provider, model_id, z, "sealed")
        assert np.max(np.abs(logits - plaintext_logits(z, bbc.V, bbc.c, W, b))) < 1e-3


def test_paper_fit_gives_the_client_the_ridge_map(public_pairs, reference, bbc, capsys):
    texts, z_b, _ = public_pairs
    W, b, cost = fit_paper(_provider(public_pairs, bbc), SET, texts, z_b, ALPHA, progress=True)
    _assert_ridge(W, b, reference)
    assert cost.rows == 200 and cost.bytes_up > 200 * 50_000 and cost.bytes_down > 0
    assert set(cost.ms) == {"client", "provider"}
    assert "secure fit (paper)" in capsys.readouterr().err  # the progress bar


def test_sealed_fit_gives_the_provider_the_map_and_serves_it(public_pairs, reference, bbc):
    """The provider decrypts the ridge map, composes it with its real head, and classifies real client queries."""
    texts, z_b, _ = public_pairs
    provider = _provider(public_pairs, bbc)
    receipt, cost = fit_sealed(provider, SET, texts, z_b, ALPHA, model="bbc")
    assert set(receipt) == {"fit_id", "model", "map_shape"}  # the client's receipt carries no map
    W, b = provider.fitted_maps[receipt["fit_id"]]
    _assert_ridge(W, b, reference)
    assert cost.bytes_down > 200 * 50_000 and cost.bytes_up > 0 and len(provider.fits) == 0
    _assert_serves_sealed(provider, receipt["model"], bbc, W, b)


def test_both_fits_over_http(public_pairs, reference, bbc):
    texts, z_b, _ = public_pairs
    provider = _provider(public_pairs, bbc)
    with running_server(provider) as url, RemoteProvider(url) as remote:
        assert remote.public_sets()[SET]["rows"] == 200
        W, b, _ = fit_paper(remote, SET, texts, z_b, ALPHA)
        _assert_ridge(W, b, reference)
        receipt, _ = fit_sealed(remote, SET, texts, z_b, ALPHA, model="bbc")
        _assert_ridge(*provider.fitted_maps[receipt["fit_id"]], reference)
        _assert_serves_sealed(remote, receipt["model"], bbc, *provider.fitted_maps[receipt["fit_id"]])


def test_bad_fit_requests_are_refused_over_http(public_pairs, bbc):
    texts, z_b, z_a = public_pairs
    provider = _provider(public_pairs, bbc)
    with running_server(provider) as url, RemoteProvider(url) as remote:
        with pytest.raises(DimensionError):  # as many client embeddings as texts
            fit_paper(remote, SET, texts[:10], z_b[:11], ALPHA)
        with pytest.raises(ParameterError, match="same texts"):  # the client embedded other texts
            fit_paper(remote, SET, texts[::-1], z_b[::-1], ALPHA)
        assert len(provider.fits) == 0  # the refused fit was closed
        with pytest.raises(UnknownFitError):
            remote.open_fit("no-such-set", "paper", 257)
        with pytest.raises(UnknownFitError):
            remote.fit_product("no-such-fit")
        with pytest.raises(DimensionError):
            remote.open_fit(SET, "paper", 1)
        provider.add_public_set("small", texts, z_b)
        with pytest.raises(DimensionError):  # the head takes 384-d input; this set holds 256-d embeddings
            remote.open_fit("small", "sealed", 257, "bbc")
        paper = remote.open_fit(SET, "paper", 257)
        with pytest.raises(ParameterError):  # a sealed-mode step on a paper fit
            remote.fit_rows(paper["fit_id"], 0)
        holder = KeyHolder()
        with pytest.raises(DimensionError):  # rows of another width than the fit was opened for
            remote.add_fit_rows(paper["fit_id"], holder.encrypt_batch(z_a[:3], 384, 0))
        with pytest.raises(ParameterError):  # rows out of order
            remote.add_fit_rows(paper["fit_id"], holder.encrypt_batch(np.hstack([z_b[:8], np.ones((8, 1))]), 384, 5))
        with pytest.raises(DimensionError):  # not every row is in yet
            remote.fit_product(paper["fit_id"])
        sealed = remote.open_fit(SET, "sealed", 257, "bbc")
        for q, error in ((100, DimensionError), (257, KeyMismatchError)):  # wrong shape; right shape, foreign key
            stranger = CrossProductEvaluator(np.ones((2, q)))
            stranger.add(KeyHolder().encrypt_batch(z_a[:2], q, 0))
            with pytest.raises(error):
                remote.finish_fit(sealed["fit_id"], stranger.result())
        with pytest.raises(LimitExceededError):  # at most 4 fits at once
            for _ in range(4):
                remote.open_fit(SET, "paper", 257)
        assert remote.describe("bbc")  # the provider keeps serving after every refusal


def test_a_refused_batch_leaves_the_fit_intact(public_pairs, bbc):
    """One corrupt ciphertext in a batch (digest recomputed): the whole batch is refused, nothing of it is added,
    and the fit completes correctly when the intact batch follows."""
    texts, z_b, z_a = public_pairs
    provider = _provider(public_pairs, bbc)
    provider.add_public_set("tiny", texts[:8], z_a[:8])
    fit = provider.open_fit("tiny", "paper", z_b.shape[1] + 1)
    holder, x = KeyHolder(), np.hstack([z_b[:8], np.ones((8, 1))])
    batch = holder.encrypt_batch(x, z_a.shape[1], 0)
    message = wire.decode(batch, wire.MessageType.MATRIX)
    blobs = list(message.blobs)
    blobs[5] = np.random.default_rng(0).integers(0, 256, len(blobs[5]), dtype=np.uint8).tobytes()
    with pytest.raises(WireFormatError):
        provider.add_fit_rows(fit["fit_id"], wire.encode(wire.MessageType.MATRIX, message.meta, blobs))
    assert provider.add_fit_rows(fit["fit_id"], batch) == 8
    np.testing.assert_allclose(holder.decrypt(provider.fit_product(fit["fit_id"])), z_a[:8].T @ x, atol=1e-4)


def test_products_under_a_foreign_key_are_refused(public_pairs):
    _, z_b, z_a = public_pairs
    holder, stranger = KeyHolder(), KeyHolder()
    evaluator = CrossProductEvaluator(z_a[:4])
    for batch in holder.encrypt_rows(z_b[:4], z_a.shape[1]):
        evaluator.add(batch)
    product = evaluator.result()
    with pytest.raises(KeyMismatchError):
        stranger.decrypt(product)
    assert np.allclose(holder.decrypt(product), z_a[:4].T @ z_b[:4], atol=1e-4)
    with pytest.raises(DimensionError):
        CrossProductEvaluator(z_a[:2]).result()
    with pytest.raises(DimensionError):
        CrossProductEvaluator(np.full((5, 3), np.nan))


def test_fit_command_against_a_running_provider(public_pairs, bbc, tmp_path, capsys):
    """`python -m securealign fit` embeds the provider's public texts with the client's model and fits over HTTP."""
    from securealign.crypto.fit_client import main as fit_main

    texts, _, z_a = public_pairs
    provider = _provider(public_pairs, bbc)
    provider.add_public_set("small", texts[:64], z_a[:64])
    out = tmp_path / "map.npz"
    with running_server(provider) as url:
        common = ["--provider", url, "--public-set", "small", "--client-model", "wordllama", "--alpha", "0.5"]
        assert fit_main([*common, "--mode", "paper", "--out", str(out)]) == 0
        assert fit_main([*common, "--mode", "sealed", "--model", "bbc"]) == 0
    printed = capsys.readouterr().out
    assert "fitted W 256 x 384" in printed and "sealed model served as: bbc@fit-" in printed
    z_b = embed("wordllama", texts[:64])
    ridge = Ridge(alpha=0.5).fit(z_b, z_a[:64])
    with np.load(out) as fitted:
        assert np.max(np.abs(fitted["W"] - ridge.coef_.T)) < 1e-4
    assert any(model.startswith("bbc@fit-") for model in provider.models())
