"""Secure fitting of the map on real public-text embeddings equals the plaintext ridge solution, in process and over
HTTP, and the provider's half refuses what does not belong to a fit.

The client's WordLlama (256-d) and the provider's MiniLM (384-d) embed the same 400 public texts (the row rule needs
more than 384 for a sealed fit); the plaintext reference is scikit-learn's Ridge with an intercept.
"""

import time

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from securealign.crypto import (
    ClientSession,
    Layout,
    Provider,
    RemoteProvider,
    plaintext_logits,
    run_encrypted_query,
    wire,
)
from securealign.crypto.errors import (
    DimensionError,
    KeyMismatchError,
    LimitExceededError,
    ParameterError,
    TooFewRowsError,
    UnknownFitError,
    UnknownSessionError,
    WireFormatError,
)
from securealign.crypto.fit_client import fit_paper, fit_sealed
from securealign.crypto.secure_fit import CrossProductEvaluator, KeyHolder
from securealign.crypto.server import running_server
from securealign.datasets import load_public_corpus
from securealign.experiments.task_models import fit_task_models
from securealign.models.embeddings import embed

ALPHA = 1e-2
SET = "public"
N_TEXTS = 800
pytestmark = pytest.mark.slow  # a served app, model fits or ciphertexts by the hundred: not in the fast tier


@pytest.fixture(scope="module")
def public_pairs():
    texts = load_public_corpus(N_TEXTS)
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
    assert cost.rows == N_TEXTS and cost.bytes_up > N_TEXTS * 50_000 and cost.bytes_down > 0
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
    assert cost.bytes_down > N_TEXTS * 50_000 and cost.bytes_up > 0 and len(provider.fits) == 0
    assert len(provider.sessions) == 0  # the one-key session that owned the fit was closed
    _assert_serves_sealed(provider, receipt["model"], bbc, W, b)


def test_both_fits_over_http(public_pairs, reference, bbc):
    texts, z_b, _ = public_pairs
    provider = _provider(public_pairs, bbc)
    with running_server(provider) as url, RemoteProvider(url) as remote:
        assert remote.public_sets()[SET]["rows"] == N_TEXTS
        W, b, _ = fit_paper(remote, SET, texts, z_b, ALPHA)
        _assert_ridge(W, b, reference)
        receipt, _ = fit_sealed(remote, SET, texts, z_b, ALPHA, model="bbc")
        _assert_ridge(*provider.fitted_maps[receipt["fit_id"]], reference)
        _assert_serves_sealed(remote, receipt["model"], bbc, *provider.fitted_maps[receipt["fit_id"]])


def _session(provider) -> str:
    """A session of its own key: what a caller needs to open a fit (each key holds at most one fit by default)."""
    return provider.open_session(ClientSession([Layout.plan(1, 1)]).public_context())


def test_bad_fit_requests_are_refused_over_http(public_pairs, bbc):
    texts, z_b, z_a = public_pairs
    provider = _provider(public_pairs, bbc)
    with running_server(provider) as url, RemoteProvider(url) as remote:
        with pytest.raises(DimensionError):  # as many client embeddings as texts
            fit_paper(remote, SET, texts[:10], z_b[:11], ALPHA)
        with pytest.raises(ParameterError, match="same texts"):  # the client embedded other texts
            fit_paper(remote, SET, texts[::-1], z_b[::-1], ALPHA)
        assert len(provider.fits) == 0 and len(provider.sessions) == 0  # the refused fit and its session closed
        with pytest.raises(UnknownSessionError):  # a fit is opened from a session
            remote.open_fit("no-such-session", SET, "paper", 257)
        with pytest.raises(UnknownFitError):
            remote.open_fit(_session(remote), "no-such-set", "paper", 257)
        with pytest.raises(UnknownFitError):
            remote.fit_product("no-such-fit")
        with pytest.raises(DimensionError):
            remote.open_fit(_session(remote), SET, "paper", 1)
        provider.add_public_set("small", texts, z_b)
        with pytest.raises(DimensionError):  # the head takes 384-d input; this set holds 256-d embeddings
            remote.open_fit(_session(remote), "small", "sealed", 257, "bbc")
        owner = _session(remote)
        paper = remote.open_fit(owner, SET, "paper", 257)
        with pytest.raises(LimitExceededError, match="this key"):  # one fit per key
            remote.open_fit(owner, SET, "sealed", 257, "bbc")
        with pytest.raises(ParameterError):  # a sealed-mode step on a paper fit
            remote.fit_rows(paper["fit_id"], 0)
        holder = KeyHolder()
        with pytest.raises(DimensionError):  # rows of another width than the fit was opened for
            remote.add_fit_rows(paper["fit_id"], holder.encrypt_batch(z_a[:3], 384, 0))
        with pytest.raises(ParameterError):  # rows out of order
            remote.add_fit_rows(paper["fit_id"], holder.encrypt_batch(np.hstack([z_b[:8], np.ones((8, 1))]), 384, 5))
        with pytest.raises(DimensionError):  # not every row is in yet
            remote.fit_product(paper["fit_id"])
        sealed = remote.open_fit(_session(remote), SET, "sealed", 257, "bbc")
        for q, error in ((100, DimensionError), (257, KeyMismatchError)):  # wrong shape; right shape, foreign key
            stranger = CrossProductEvaluator(np.ones((2, q)))
            stranger.add(KeyHolder().encrypt_batch(z_a[:2], q, 0))
            with pytest.raises(error):
                remote.finish_fit(sealed["fit_id"], stranger.result())
        with pytest.raises(LimitExceededError, match="already running"):  # at most 4 fits at once, over all keys
            for _ in range(3):
                remote.open_fit(_session(remote), SET, "paper", 257)
        assert remote.describe("bbc")  # the provider keeps serving after every refusal


def test_a_fit_that_stops_receiving_steps_expires_soon(public_pairs, bbc):
    """Slots are not held by callers that open fits and go quiet: an idle fit is gone after the idle expiry."""
    provider = Provider(fit_idle_ttl=2.0)
    provider.add_public_set(SET, public_pairs[0], public_pairs[2])
    sessions = [_session(provider) for _ in range(6)]  # keys made first: opening a fit itself is quick
    fits = [provider.open_fit(session, SET, "paper", 257)["fit_id"] for session in sessions[:4]]
    with pytest.raises(LimitExceededError, match="already running"):
        provider.open_fit(sessions[4], SET, "paper", 257)
    time.sleep(2.5)
    assert provider.open_fit(sessions[5], SET, "paper", 257)["fit_id"] not in fits
    with pytest.raises(UnknownFitError):
        provider.fit_product(fits[0])


def _solve(known: np.ndarray, product: np.ndarray) -> np.ndarray:
    """The decrypting party's attack: from ``P = S^T K`` and its own ``K`` (n x p, rank n when n <= p), the secret
    ``S = (K^+)^T P^T``, exact because ``K K^+ = I`` then."""
    return np.linalg.pinv(np.asarray(known, dtype=np.float64)).T @ product.T


def test_row_rule_paper_mode_client_would_recover_the_providers_embeddings(public_pairs):
    """Paper mode: the client decrypts P = Z_A^T X with its own X = [Z_B, 1] (n x p). With n <= p, X has full row
    rank, so Z_A = (X^+)^T P^T exactly. A slot is complex, so a client that encrypts X + i X' for a second matrix
    X' of its choosing decrypts Z_A^T X' as well: exact up to n = 2 p. The provider therefore refuses a fit unless
    n > 2 p, before any work."""
    texts, z_b, z_a = public_pairs
    rng = np.random.default_rng(5)
    for n in (200, 257):  # n <= p = 257: the solve is exact
        X = np.hstack([z_b[:n], np.ones((n, 1))])
        assert np.max(np.abs(_solve(X, z_a[:n].T @ X) - z_a[:n])) < 1e-6
    for n in (400, 514):  # p < n <= 2 p: exact again with a second matrix in the imaginary parts
        X = np.hstack([z_b[:n], np.ones((n, 1))])
        X2 = rng.normal(size=(n, 257))
        product = z_a[:n].T @ (X + 1j * X2)  # what the client decrypts: real and imaginary parts
        both = np.hstack([X, X2])
        assert np.max(np.abs(_solve(both, np.hstack([product.real, product.imag])) - z_a[:n])) < 1e-6
    X = np.hstack([z_b, np.ones((N_TEXTS, 1))])  # n = 800 > 2 p: the same solve is far off
    X2 = rng.normal(size=(N_TEXTS, 257))
    product = z_a.T @ (X + 1j * X2)
    assert np.max(np.abs(_solve(np.hstack([X, X2]), np.hstack([product.real, product.imag])) - z_a)) > 0.1
    provider = Provider()
    provider.add_public_set("few", texts[:514], z_a[:514])
    with pytest.raises(TooFewRowsError, match="at least 515"):
        provider.open_fit(_session(provider), "few", "paper", 257)
    with pytest.raises(TooFewRowsError, match="the client refuses"):  # and the client library checks it first
        fit_paper(provider, "few", texts[:514], z_b[:514], ALPHA)
    assert len(provider.fits) == 0


def test_row_rule_sealed_mode_provider_would_recover_the_clients_data(public_pairs):
    """Sealed mode: the provider decrypts M = (X G^-1)^T Z_A with its own Z_A (n x q). With n <= q it solves
    X G^-1 = (Z_A^+)^T M^T exactly, the client's data up to its own Gram matrix; a provider that encrypts
    Z_A + i Z' gets (X G^-1)^T Z' too, exact up to n = 2 q. So the client refuses unless n > 2 q, and the provider
    refuses too, before anything is encrypted."""
    texts, z_b, z_a = public_pairs
    alpha, rng = ALPHA, np.random.default_rng(6)
    penalty = np.diag(np.r_[np.full(256, alpha), 0.0])
    assert np.linalg.matrix_rank(np.asarray(z_a, dtype=np.float64)) == 382  # MiniLM's embeddings span 382 of 384
    for n in (300, 382):  # n <= rank(Z_A) <= q = 384: exact from the real product alone
        X = np.hstack([z_b[:n], np.ones((n, 1))])
        U = X @ np.linalg.inv(X.T @ X + penalty)  # the client's secret plaintext X G^-1
        assert np.max(np.abs(_solve(z_a[:n], U.T @ z_a[:n]) - U)) < 1e-6 * np.max(np.abs(U))
    for n in (500, 766):  # up to rank(Z_A) + q: exact with a chosen Z' in the imaginary parts
        X = np.hstack([z_b[:n], np.ones((n, 1))])
        U = X @ np.linalg.inv(X.T @ X + penalty)
        Z2 = rng.normal(size=(n, 384))
        product = U.T @ (z_a[:n] + 1j * Z2)
        solved = _solve(np.hstack([z_a[:n], Z2]), np.hstack([product.real, product.imag]))
        assert np.max(np.abs(solved - U)) < 1e-6 * np.max(np.abs(U))
    X = np.hstack([z_b, np.ones((N_TEXTS, 1))])  # n = 800 > 2 q: the same solve is far off
    U = X @ np.linalg.inv(X.T @ X + penalty)
    Z2 = rng.normal(size=(N_TEXTS, 384))
    product = U.T @ (z_a + 1j * Z2)
    solved = _solve(np.hstack([z_a, Z2]), np.hstack([product.real, product.imag]))
    assert np.max(np.abs(solved - U)) > 0.1 * np.max(np.abs(U))
    provider = Provider()
    provider.add_public_set("few", texts[:768], z_a[:768])
    with pytest.raises(TooFewRowsError, match="at least 769"):
        provider.open_fit(_session(provider), "few", "sealed", 257)
    with pytest.raises(TooFewRowsError, match="the client refuses"):  # before it opens anything
        fit_sealed(provider, "few", texts[:768], z_b[:768], ALPHA)
    assert len(provider.fits) == 0 and len(provider.sessions) == 1


def test_a_refused_batch_leaves_the_fit_intact(public_pairs, bbc):
    """One corrupt ciphertext in a batch (digest recomputed): the whole batch is refused, nothing of it is added,
    and the fit completes correctly when the intact batch follows."""
    texts, z_b, z_a = public_pairs
    provider = _provider(public_pairs, bbc)
    provider.add_public_set("tiny", texts[:520], z_a[:520])  # more rows than twice the width of 257, as the rule asks
    fit = provider.open_fit(_session(provider), "tiny", "paper", z_b.shape[1] + 1)
    holder, x = KeyHolder(), np.hstack([z_b[:520], np.ones((520, 1))])
    first, *rest = holder.encrypt_rows(x, z_a.shape[1])
    message = wire.decode(first, wire.MessageType.MATRIX)
    blobs = list(message.blobs)
    blobs[5] = np.random.default_rng(0).integers(0, 256, len(blobs[5]), dtype=np.uint8).tobytes()
    with pytest.raises(WireFormatError):
        provider.add_fit_rows(fit["fit_id"], wire.encode(wire.MessageType.MATRIX, message.meta, blobs))
    assert provider.add_fit_rows(fit["fit_id"], first) == 255
    assert [provider.add_fit_rows(fit["fit_id"], batch) for batch in rest] == [510, 520]
    np.testing.assert_allclose(holder.decrypt(provider.fit_product(fit["fit_id"])), z_a[:520].T @ x, atol=1e-4)


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

    texts, z_b, z_a = public_pairs
    provider = _provider(public_pairs, bbc)
    out = tmp_path / "map.npz"
    with running_server(provider) as url:
        common = ["--provider", url, "--public-set", SET, "--client-model", "wordllama", "--alpha", "0.5"]
        assert fit_main([*common, "--mode", "paper", "--out", str(out)]) == 0
        assert fit_main([*common, "--mode", "sealed", "--model", "bbc"]) == 0
    printed = capsys.readouterr().out
    assert "fitted W 256 x 384" in printed and "sealed model served as: bbc@fit-" in printed
    ridge = Ridge(alpha=0.5).fit(z_b, z_a)
    with np.load(out) as fitted:
        assert np.max(np.abs(fitted["W"] - ridge.coef_.T)) < 1e-4
    assert any(model.startswith("bbc@fit-") for model in provider.models())
