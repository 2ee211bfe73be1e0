"""Distinguishers (issue 18) against the real CKKS protocol in process: can a client tell which of two heads that
agree on its query answered it?

The provider serves committed BBC News heads and maps with 64-d inputs in both modes (as in
test_crypto_attacks.py); the client's queries are real embeddings of test texts, and per query the second candidate
is the model reflected in a mirror orthogonal to the query (same logits, same normalised pair margins). A
deterministic logits result names its head every time (the issue's 40 / 40, here by four distinguishers);
label-only results carry secret factors that no snapped estimate reproduces, except with one pair, where a search of
the factor grid does. Flooded (circuit-private) results are never recomputed and leave the noise distinguishers at
chance; a client-chosen public key undoes that (xfail). The secure fits' and the vocabulary head's products name
the other party's matrix too (fits are not flooded; a flooded vocabulary head is never recomputed).
"""

import numpy as np
import pytest

from securealign.crypto import distinguish, fit_distinguish, flooding
from securealign.crypto.answers import ANSWERS, pairwise_head
from securealign.datasets import load_public_corpus, load_task
from securealign.experiments import artifacts
from securealign.generation import head_distinguish
from securealign.models.embeddings import embed
from securealign.paths import assets_dir

TASK = "bbc_news"
MODES = ("paper", "sealed")
SERVED = {"paper": ("wordllama", "potion"), "sealed": ("potion", "minilm")}  # 64-d inputs in both modes
QUERIES = 4
EXACT = ("recompute", "decrypted-distance", "c1-recompute", "c1-distance")


def _served(mode: str) -> dict:
    source, target = SERVED[mode]
    head, amap = artifacts.load_head(TASK, target), artifacts.load_map(TASK, source, target)
    return {k: np.asarray(v, dtype=np.float64) for k, v in zip("WbVc", (amap.W, amap.b, head.V, head.c), strict=True)}


def _queries(mode: str, served: dict) -> np.ndarray:
    Z = embed(SERVED[mode][0], load_task(TASK).test_texts[:QUERIES]).astype(np.float64)
    return Z @ served["W"] + served["b"] if mode == "paper" else Z


def _play(mode: str, answer: str, trials: int, names=tuple(distinguish.DISTINGUISHERS), seed: int = 0):
    served = _served(mode)
    rng = np.random.default_rng(seed)
    game = distinguish.Classification.build(mode, answer, _queries(mode, served), served, rng)
    return distinguish.run(game, trials, rng, names)


@pytest.mark.parametrize("mode", MODES)
def test_candidates_agree_on_the_query_and_nowhere_else(mode):
    served = _served(mode)
    x = _queries(mode, served)[0]
    first, second = (
        distinguish.computation(r, mode)
        for r in distinguish.candidate_pair(mode, x, *(served[k] for k in "WbVc"), np.random.default_rng(1))
    )
    assert np.max(np.abs((first[0] @ x + first[1]) - (second[0] @ x + second[1]))) < 1e-12  # same logits
    margins = [rows @ x + bias for rows, bias in (pairwise_head(*first), pairwise_head(*second))]
    assert np.max(np.abs(margins[0] - margins[1])) < 1e-12  # same normalised margins: same label answers
    assert np.linalg.norm(first[0] - second[0]) > 0.1 * np.linalg.norm(first[0])  # and different heads
    y = np.random.default_rng(2).standard_normal(len(x))  # another query tells them apart
    assert np.max(np.abs(first[0] @ y - second[0] @ y)) > 1e-3


def test_wilson_interval():
    assert distinguish.wilson(40, 40) == pytest.approx((0.9124, 1.0), abs=1e-4)
    low, high = distinguish.wilson(1000, 2000)
    assert low == pytest.approx(0.4781, abs=1e-4) and high == pytest.approx(0.5219, abs=1e-4)


@pytest.mark.parametrize("mode", MODES)
def test_a_deterministic_logits_result_names_its_head(mode):
    """Today's results are deterministic functions of the query, the Galois keys and the weights: the client's
    recomputation equals the answer byte for byte for the head that answered and never for the other, and so do
    the decrypted noise and the second half c1 (which needs no secret key to recompute)."""
    report = _play(mode, "logits", 200)
    for name in EXACT:
        tally = report.tallies[name]
        assert tally.correct == tally.trials == 200, name
        assert tally.interval[0] > 0.98
    assert report.c1_matches == 200


@pytest.mark.parametrize("mode", MODES)
def test_label_only_results_are_not_recomputed_from_estimated_factors(mode):
    """Label-only answers carry a fresh 52-bit factor per pair: estimated from the decrypted margins and snapped
    to the provider's grid, the recomputation never equals the answer (ten factors at once for BBC's ten pairs),
    so the exact distinguishers fall back to their fixed guess (0.5 on the balanced coins)."""
    report = _play(mode, "label", 40, names=("recompute", "c1-recompute"))
    assert report.c1_matches == 0
    assert report.tallies["recompute"].accuracy == report.tallies["c1-recompute"].accuracy == 0.5


FIT_ROWS = 131  # just above the row rule for both fits here (paper: 2 (64 + 1); sealed: 2 * 64)
FIT_MODELS = {"paper": ("potion", "wordllama"), "sealed": ("wordllama", "potion")}  # (client, provider)


@pytest.mark.parametrize("mode", MODES)
def test_a_deterministic_secure_fit_product_names_the_other_partys_matrix(mode):
    """Secure fits: the party that decrypts the cross-product recomputes the other party's public algorithm on its
    own encrypted rows, once per candidate matrix (two that give the same product, hence the same fitted map), and
    names the one used every time. Sealed mode: the provider names which of two client datasets was used."""
    texts = load_public_corpus()[:FIT_ROWS]
    client, provider = FIT_MODELS[mode]
    Z_A, Z_B = (embed(model, texts).astype(np.float64) for model in (provider, client))
    rng = np.random.default_rng(3)
    game = fit_distinguish.fit_game(mode, Z_A, Z_B, rng)
    Y = game.candidates  # the products agree: the decrypting party learns the same map either way
    encrypted = Z_A if mode == "sealed" else np.hstack([Z_B, np.ones((FIT_ROWS, 1))])
    assert np.max(np.abs(Y[0].T @ encrypted - Y[1].T @ encrypted)) < 1e-9
    report = distinguish.run_blobs([game], 4, rng, mode, "cross-product")
    for name in distinguish.BLOB_NAMES:
        assert report.tallies[name].correct == 4, name
    assert report.c1_matches == 4


def test_a_deterministic_vocabulary_head_result_names_its_head():
    """The encrypted vocabulary head of generation: the committed SmolLM2 -> Gemma 3 map (640 x 576, real) as the
    composed head, two candidates equal on the client's hidden state; the client's recomputation names the one
    that answered every time."""
    mapping = np.load(assets_dir() / "generation" / "map-smollm2-gemma3-4000-0.0001-d392371eae2f.npz")
    matrix, bias = mapping["W"].T.astype(np.float64), mapping["b"].astype(np.float64)
    rng = np.random.default_rng(4)
    hidden = rng.standard_normal(matrix.shape[1])
    game = head_distinguish.VocabularyGame(matrix, bias, hidden, rng)
    first, second = game.candidates
    assert np.max(np.abs(first @ hidden - second @ hidden)) < 1e-9
    report = distinguish.run_blobs([game], 4, rng, "generation", "logits")
    for name in distinguish.BLOB_NAMES:
        assert report.tallies[name].correct == 4, name
    assert report.c1_matches == 4


@pytest.mark.slow  # 8-30 s: one search of a few hundred to a few thousand recomputations
def test_a_two_class_label_answer_names_its_head_by_a_factor_search():
    """One blinded margin (K = 2): the client aims its query at margin 25, estimates the factor from the answer,
    and enumerates the provider's grid of factors around it (a few hundred recomputations when the factor is
    large, about one answer in four): the recomputation that equals the answer names the head. Played until the
    first search (each answer is a fresh factor; without a search the distinguisher has nothing)."""
    task, mode = "rotten_tomatoes", "paper"
    source, target = SERVED[mode]
    head, amap = artifacts.load_head(task, target), artifacts.load_map(task, source, target)
    served = {k: np.asarray(v, dtype=np.float64) for k, v in zip("WbVc", (amap.W, amap.b, head.V, head.c), strict=True)}
    Z = embed(source, load_task(task).test_texts[:200]).astype(np.float64)
    X = Z @ served["W"] + served["b"] if mode == "paper" else Z
    queries = distinguish.aimed_queries(X, *distinguish.computation(served, mode), margin=25.0, count=2)
    rng = np.random.default_rng(5)
    game = distinguish.Classification.build(mode, "label", queries, served, rng)
    report = distinguish.run(game, 60, rng, ("factor-search",), until=lambda r: r.notes.get("searched", 0) > 0)
    assert report.notes["searched"] == report.notes.get("found", 0) == 1
    assert report.notes["evaluations"] < distinguish.SEARCH_BUDGET * 2


# circuit-private (re-randomised, noise-flooded) answers ------------------------------------------------------------
# A distinguisher at chance lands within 3.29 standard errors of 0.5 in 99.9% of runs: over 2,000 trials that is
# 0.037; 0.02 (the figure) is 1.8 standard errors there, which chance alone exceeds in 7% of runs, so the
# +-0.02 measurement over more trials is the benchmark's (docs/protocol.md, "Distinguishers, measured").
def _chance_band(trials: int) -> float:
    return 3.29 * 0.5 / np.sqrt(trials)


def _flooded(mode: str, answer: str, trials: int, names, queries: int = 2, seed: int = 6):
    served = _served(mode)
    rng = np.random.default_rng(seed)
    X = _queries(mode, served)[:queries]
    game = distinguish.Classification.build(mode, answer, X, served, rng, privacy="flooded")
    return distinguish.run(game, trials, rng, names, requery=False)


@pytest.mark.parametrize("answer", ANSWERS)
def test_a_flooded_result_is_never_recomputed(answer):
    """Re-randomised with a fresh public-key encryption of zero and flooded: neither the result nor its second
    half ever equals the client's recomputation of the deterministic part (for label-only answers: at the snapped
    factor estimate, or anywhere in a factor search), so the exact distinguishers keep their fixed guess."""
    exact = ("recompute", "c1-recompute") + (("factor-search",) if answer == "label" else ())
    report = _flooded("sealed", answer, 48, exact)
    assert report.c1_matches == 0 and report.notes.get("found", 0) == 0
    for name in exact:
        assert report.tallies[name].accuracy == 0.5, name
    assert min(report.c1_pvalues) > 1e-4  # and c1 looks uniform


@pytest.mark.slow  # ~30 s
def test_flooded_logits_are_at_chance_for_the_noise_distinguishers():
    """The decrypted noise against each candidate's exact expected decryption, the noise template and the second
    half's distance to each recomputation: the flood (2^18 times the measured bound) leaves them at chance."""
    names = ("decrypted-distance", "noise-template", "c1-distance")
    report = _flooded("sealed", "logits", 320, names)
    for name in names:
        assert abs(report.tallies[name].accuracy - 0.5) <= _chance_band(320), name


@pytest.mark.slow  # ~2 min: 2,000 real flooded answers
def test_flooded_label_answers_are_at_chance_over_2000_trials():
    """Label-only answers, the private default: 2,000 trials, a fresh key every tau = 16 answers, the cheap
    statistical distinguisher on every one (the factor search too: it never finds a window small enough to
    search)."""
    names = ("noise-template", "factor-search")
    report = _flooded("sealed", "label", 2000, names)
    assert report.notes.get("searched", 0) == 0
    assert report.tallies["factor-search"].accuracy == 0.5
    assert abs(report.tallies["noise-template"].accuracy - 0.5) <= _chance_band(2000)


def test_a_flooded_vocabulary_head_result_is_never_recomputed():
    """A flooding vocabulary head (fresh keys every tau answers): no answer equals the client's recomputation of
    the deterministic part, nor does its second half."""
    mapping = np.load(assets_dir() / "generation" / "map-smollm2-gemma3-4000-0.0001-d392371eae2f.npz")
    rng = np.random.default_rng(7)
    matrix = mapping["W"].T.astype(np.float64)
    game = head_distinguish.VocabularyGame(
        matrix, mapping["b"].astype(np.float64), rng.standard_normal(matrix.shape[1]), rng, flooding.DEFAULT_POLICY
    )
    report = distinguish.run_blobs([game], 20, rng, "generation", "logits")
    assert report.c1_matches == 0
    assert report.tallies["recompute"].accuracy == report.tallies["c1-recompute"].accuracy == 0.5
    assert min(report.c1_pvalues) > 1e-4


@pytest.mark.xfail(
    strict=True,
    reason="circuit privacy assumes an honestly generated public key: a client-chosen pk = (-s, 1) makes the "
    "provider's encryption of zero (0, 0), so a flooded result's second half is the deterministic one (issue 18)",
)
def test_a_flooded_result_is_not_recomputed_even_under_a_client_chosen_public_key():
    """The public key travels whole, so the client chooses its random half. With the constant 1 there (and -s
    beside it, so that it still decrypts), SEAL's encryption of zero at the result's level rounds to (0, 0) and
    the second half c1 of every flooded logits answer equals the client's recomputation: the head is named every
    time (measured 48 / 48). This test states what circuit privacy should give; it fails until the provider takes
    only a public key whose random half it can trust (e.g. expanded from a seed, as queries are)."""
    served = _served("sealed")
    rng = np.random.default_rng(8)
    game = distinguish.Classification.build(
        "sealed", "logits", _queries("sealed", served)[:2], served, rng, privacy="flooded"
    )
    game.weak_key = True
    report = distinguish.run(game, 32, rng, ("c1-recompute",), requery=False)
    assert report.c1_matches == 0


@pytest.mark.parametrize("pair", ["reflected", "stretched"])
def test_the_flood_size_reveals_the_row_norm_bucket_and_nothing_else(pair):
    """What a flooded answer's declared flood size (``max_residual``) tells: nothing for two heads whose largest row
    norms share a power of two (reflected pairs: the fixed guess, 0.5 exactly), the head for two whose do not
    (the second with one row three times longer along a direction orthogonal to the query: same logits)."""
    served = _served("sealed")
    rng = np.random.default_rng(9)
    build = distinguish.candidate_pair if pair == "reflected" else distinguish.stretched_pair
    game = distinguish.Classification.build(
        "sealed", "logits", _queries("sealed", served)[:2], served, rng, privacy="flooded", pair=build
    )
    report = distinguish.run(game, 16, rng, ("flood-size",), requery=False)
    assert report.tallies["flood-size"].accuracy == (0.5 if pair == "reflected" else 1.0)
