"""Cross-model generation with real models: the identity pair, the Gemma -> SmolLM2 pair in plaintext and under
encryption over SmolLM2's full vocabulary, streaming, quality metrics and the command line."""

from __future__ import annotations

import pytest

from securealign.generation.cli import main as generate_main
from securealign.generation.decoding import mapped_greedy
from securealign.generation.pair import load_pair
from securealign.generation.quality import compatibility, perplexity, token_agreement
from securealign.generation.stream import stream_compare
from securealign.models.zoo import UnknownModelError

SMALL_CORPUS = 80  # ~2,500 token pairs: enough for a 640 -> 576 map, fast enough for the suite
PROMPTS = ["The old lighthouse keeper looked out at the sea and", "My favourite recipe for dinner is"]
pytestmark = pytest.mark.slow  # a served app, model fits or ciphertexts by the hundred: not in the fast tier


@pytest.fixture(scope="module")
def identity():
    return load_pair("smollm2", "smollm2", SMALL_CORPUS)


@pytest.fixture(scope="module")
def cross():
    return load_pair("gemma3", "smollm2", SMALL_CORPUS)


def test_identity_pair_reproduces_the_models_own_greedy_output(identity) -> None:
    assert identity.hidden_map.metrics["r2"] > 0.99
    for prompt in PROMPTS:
        mapped = [t.id for t in mapped_greedy(identity.source, identity.target, identity.plain_head, prompt, 8)]
        assert mapped == identity.target.greedy_ids(prompt, 8)


def test_cross_map_fits_on_held_out_tokens(cross) -> None:
    metrics = cross.hidden_map.metrics
    assert metrics["held_out_tokens"] > 100 and metrics["train_tokens"] > 1000
    assert metrics["cosine"] > 0.6
    assert 0.2 < metrics["r2"] <= 1.0
    assert metrics["next_token_agreement"] > 0.15  # chance is 1 / 49,152
    assert cross.plain_head.matrix.shape == (49152, 640)


def test_encrypted_decoding_equals_plaintext_decoding(cross) -> None:
    prompt = PROMPTS[0]
    plain = [t.id for t in mapped_greedy(cross.source, cross.target, cross.plain_head, prompt, 4)]
    encrypted = list(mapped_greedy(cross.source, cross.target, cross.encrypted_head, prompt, 4))
    assert [t.id for t in encrypted] == plain
    assert cross.encrypted_head.provider.layout.vocab == 49152  # the full target vocabulary
    assert all(t.cost is not None and t.cost.bytes_up > 0 and t.cost.bytes_down > 0 for t in encrypted)


def test_stream_compare_streams_three_continuations(cross) -> None:
    prompt = PROMPTS[1]
    snapshots = list(stream_compare(prompt, "gemma3", "smollm2", max_new_tokens=6, corpus_size=SMALL_CORPUS))
    assert len(snapshots) >= 6 and snapshots[-1]["finished"] and not snapshots[0]["finished"]
    lengths = [len(s["texts"]["mapped"]) for s in snapshots]
    assert lengths == sorted(lengths) and lengths[-1] > 0
    final = snapshots[-1]
    assert final["texts"]["native_target"] == cross.target.greedy(prompt, 6)
    assert final["texts"]["native_source"] == cross.source.greedy(prompt, 6)
    assert all(rate > 0 for rate in final["tokens_per_s"].values())
    # the share of the native target's 6 tokens the mapped stream matched, recomputed from both greedy runs
    mapped_ids = [t.id for t in mapped_greedy(cross.source, cross.target, cross.plain_head, prompt, 6)]
    expected = token_agreement(mapped_ids, cross.target.greedy_ids(prompt, 6))
    assert final["quality"]["token_agreement"] == pytest.approx(expected)
    assert final["quality"]["perplexity_native_target"] > 1
    assert 0.5 < final["compatibility"]["exact_match_rate"] < 1
    assert 0 < final["compatibility"]["vocabulary_jaccard"] < 1


def test_quality_metrics() -> None:
    fluent = perplexity("smollm2", "The cat sat on the", " mat and purred quietly.")
    scrambled = perplexity("smollm2", "The cat sat on the", " quietly purred mat the and.")
    assert 1 < fluent < scrambled
    assert token_agreement([1, 2, 3], [1, 5, 3, 4]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        token_agreement([1], [])
    assert compatibility("smollm2", "smollm2")["exact_match_rate"] == 1.0


def test_bad_requests_give_clear_errors() -> None:
    with pytest.raises(ValueError, match="max_new_tokens"):
        next(stream_compare("Hello", max_new_tokens=0, corpus_size=SMALL_CORPUS))
    with pytest.raises(UnknownModelError, match="valid models"):
        next(stream_compare("Hello", source="gpt-17", corpus_size=SMALL_CORPUS))
    with pytest.raises(ValueError, match="non-empty"):
        next(stream_compare("   ", max_new_tokens=2, corpus_size=SMALL_CORPUS))


def test_generate_command(cross, capsys) -> None:
    assert generate_main([PROMPTS[0], "--max-new-tokens", "3", "--corpus-size", str(SMALL_CORPUS)]) == 0
    out = capsys.readouterr().out
    assert "mapped (gemma3 -> smollm2)" in out and "native_target:" in out and "exact_match_rate" in out


def test_app_refuses_a_pair_whose_map_would_take_an_hour_to_fit(monkeypatch, tmp_path) -> None:
    """With no fitted copy in the cache or in assets/ (both pointed at empty folders), the app refuses the pair with
    a readable message instead of starting an hour-long fit while a user waits."""
    from securealign.app_support import service
    from securealign.generation import mapping

    assert mapping.fitted_map_path("gemma3", "smollm2") is not None  # committed in assets/generation
    monkeypatch.setenv("SECUREALIGN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(mapping, "assets_dir", lambda: tmp_path / "assets")
    assert mapping.fitted_map_path("gemma3", "smollm2") is None
    with pytest.raises(service.ServiceError, match="about an hour"):
        next(service.generate("The capital of France is", "gemma3", "smollm2"))


def test_reverse_pair_runs_from_its_committed_map() -> None:
    """SmolLM2 reads, Gemma 3's 262k-token head writes: the map fitted once on 4,000 texts is committed, so the app
    serves this direction too without an hour's fit."""
    from securealign.app_support import service
    from securealign.generation import mapping

    path = mapping.fitted_map_path("smollm2", "gemma3")
    assert path is not None
    fit = mapping.HiddenMap.load(path).metrics
    assert fit["texts"] == 4000 and fit["r2"] > 0.4 and fit["next_token_agreement"] > 0.35
    last = list(service.generate("The capital of France is", "smollm2", "gemma3", False, 3))[-1]
    assert last["texts"]["mapped"].strip() and last["texts"]["native_target"].strip()
