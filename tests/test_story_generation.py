"""The story's fifth step in the library, with real models: four continuations of a held-out prompt (the source's
own, the target's own, mapped in plaintext and mapped under encryption after them), the tokens where the mapped text
agrees with the target's own, each stream's time per token, the verdict and the pair's measured figures; and an app
that switches pairs holds one at a time.
"""

from __future__ import annotations

import pytest

from securealign.app_support import service
from securealign.datasets import load_public_corpus
from securealign.generation import load_pair, load_pair_alone
from securealign.generation.mapping import DEFAULT_CORPUS_SIZE, HiddenMap, fitted_map_path
from securealign.generation.quality import (
    PAPER_EXACT_MATCH,
    READS_WELL_PERPLEXITY_RATIO,
    WORKS_AGREEMENT,
    agreement_marks,
    generation_verdict,
)

STREAMS = ("native_source", "native_target", "mapped", "mapped_encrypted")


def test_agreement_marks_compare_position_by_position() -> None:
    assert agreement_marks([5, 7, 9, 4], [5, 8, 9]) == [True, False, True, False]  # past the native end: no
    assert agreement_marks([], [1, 2]) == []


def _quality(agreeing: int, tokens: int, ppl_mapped: float = 6.0, ppl_native: float = 3.0) -> dict:
    return {
        "token_agreement": agreeing / tokens,
        "agreeing_tokens": agreeing,
        "native_tokens": tokens,
        "perplexity_mapped": ppl_mapped,
        "perplexity_native_target": ppl_native,
    }


@pytest.mark.parametrize(
    ("agreeing", "rate", "ppl_mapped", "outcome", "holds"),
    [
        (12, 0.99, 6.0, "works", True),
        (4, 1.00, 4.2, "reads well", True),  # 1.4x the target's own perplexity: fluent, in words of its own
        (1, 0.86, 17.0, "drifts", False),
        (1, 0.40, 17.0, "drifts", True),
        (10, 0.40, 17.0, "works", False),
    ],
)
def test_the_verdict_says_what_is_seen_and_whether_the_predictor_foretold_it(
    agreeing, rate, ppl_mapped, outcome, holds
) -> None:
    verdict = generation_verdict(_quality(agreeing, 16, ppl_mapped), {"exact_match_rate": rate})
    assert verdict["outcome"] == outcome and verdict["predictor_holds"] is holds
    assert verdict["works"] is (agreeing / 16 >= WORKS_AGREEMENT)
    assert verdict["predicted"] is (rate > PAPER_EXACT_MATCH)
    assert verdict["agreeing_tokens"] == agreeing and verdict["perplexity_ratio"] == pytest.approx(ppl_mapped / 3.0)
    assert (verdict["perplexity_ratio"] <= READS_WELL_PERPLEXITY_RATIO) is (ppl_mapped / 3.0 <= 2)


def test_the_story_prompt_is_held_out_from_every_story_map() -> None:
    """The prompt is the start of a public-corpus text past the texts each story pair's map was fitted on."""
    corpus = load_public_corpus(4 * DEFAULT_CORPUS_SIZE)
    index = next(i for i, text in enumerate(corpus) if text.startswith(service.STORY_PROMPT))
    for source, target in service.STORY_PAIRS:
        fitted_on = HiddenMap.load(fitted_map_path(source, target)).metrics["texts"]
        assert index >= fitted_on


@pytest.mark.slow
def test_the_fifth_step_streams_four_continuations_with_marks_times_and_a_verdict() -> None:
    # the story's lightest pair (Gemma 3 -> SmolLM2, ~3 GB; the Qwen pair's 14 GB is walked by the browser test)
    source, target = service.STORY_PAIRS[-1]
    key = service.story_pair_key(source, target)
    snaps = list(service.story_generate(key))
    final = snaps[-1]
    assert final["finished"] and not snaps[0]["finished"]
    pair = load_pair(source, target)
    n = service.STORY_NEW_TOKENS
    # each stream is its model's own greedy decoding (the encrypted one token for token the plaintext one)
    native = pair.target.greedy_ids(service.STORY_PROMPT, n)
    assert final["texts"]["native_target"] == pair.target.greedy(service.STORY_PROMPT, n)
    assert final["texts"]["native_source"] == pair.source.greedy(service.STORY_PROMPT, n)
    assert final["texts"]["mapped_encrypted"] == final["texts"]["mapped"] != ""
    assert final["quality"]["encrypted_equals_plaintext"] is True
    # the marks are the mapped tokens that equal the target's own at the same position, and the verdict counts them
    mapped_ids = [t.id for t in _mapped(pair, n)]
    assert final["agrees"]["mapped"] == [i < len(native) and m == native[i] for i, m in enumerate(mapped_ids)]
    assert final["agrees"]["mapped_encrypted"] == final["agrees"]["mapped"]
    assert final["verdict"]["agreeing_tokens"] == sum(final["agrees"]["mapped"])
    assert final["verdict"]["native_tokens"] == len(native)
    # a time for every token of every stream; the plaintext streams' first tokens come before the encrypted one's
    for name in STREAMS:
        assert len(final["token_ms"][name]) == len(final["tokens"][name]) > 0
        assert all(ms > 0 for ms in final["token_ms"][name])
    first = final["first_token_s"]
    assert first["mapped"] < first["native_target"] < first["native_source"] < first["mapped_encrypted"]
    # the verdict arrives with the plaintext streams, before the encrypted stream starts
    verdict_at = next(i for i, s in enumerate(snaps) if "verdict" in s)
    assert snaps[verdict_at]["waiting"] == ["mapped_encrypted"] and not snaps[verdict_at]["tokens"]["mapped_encrypted"]
    assert all(s["waiting"] == [] for s in snaps[verdict_at + 1 :])
    figures = final["pair_figures"]
    assert figures["exact_match_rate"] == HiddenMap.load(fitted_map_path(source, target)).metrics["exact_match_rate"]
    assert 0 < figures["next_token_agreement"] < 1


def _mapped(pair, n: int):
    from securealign.generation.decoding import mapped_greedy

    return mapped_greedy(pair.source, pair.target, pair.plain_head, service.STORY_PROMPT, n)


def test_the_fifth_step_refuses_what_it_cannot_serve() -> None:
    with pytest.raises(service.ServiceError, match="Unknown pair"):
        next(service.story_generate("gemma3->gpt-9"))
    with pytest.raises(service.ServiceError, match="prompt is empty"):
        next(service.story_generate(service.story_pair_key(*service.STORY_PAIRS[0]), "   "))


@pytest.mark.slow
def test_switching_pairs_lets_the_other_pair_go() -> None:
    first = load_pair_alone("gemma3", "smollm2")
    reverse = load_pair_alone("smollm2", "gemma3")  # same models: they stay, the other pair's heads go
    assert load_pair.cache_info().currsize == 1
    assert reverse.source is first.target and reverse.target is first.source
    again = load_pair_alone("gemma3", "smollm2")
    assert again is not first and again.source is first.source
