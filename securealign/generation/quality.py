"""How good a cross-model continuation is, and how compatible two tokenizers are (the paper's predictors)."""

from __future__ import annotations

import functools

import numpy as np

from securealign.datasets import load_public_corpus
from securealign.generation.token_pairing import exact_match_rate, surface_forms, vocabulary_jaccard
from securealign.models.causal_lm import load_causal_lm

COMPATIBILITY_TEXTS = 500  # tokenization only, so a larger sample than the map fit is cheap
# The paper: pairs whose tokenizers cut more than 70% of tokens alike succeeded (exact match, r = 0.898 with quality)
PAPER_EXACT_MATCH = 0.7
# "works" on screen: the mapped continuation writes what the target itself writes on at least half its tokens
WORKS_AGREEMENT = 0.5
# "reads well" on screen: under the target the mapped text is at most twice as surprising (perplexity) as the
# target's own greedy text, its least surprising continuation; position-by-position agreement cannot see this, as
# one different token shifts every later one
READS_WELL_PERPLEXITY_RATIO = 2.0


def token_agreement(mapped_ids: list[int], native_ids: list[int]) -> float:
    """Share of the native continuation's positions where the mapped continuation chose the same token."""
    if not native_ids:
        raise ValueError("the native continuation is empty")
    return sum(a == b for a, b in zip(mapped_ids, native_ids, strict=False)) / len(native_ids)


def agreement_marks(mapped_ids: list[int], native_ids: list[int]) -> list[bool]:
    """For each mapped token, whether the native continuation has the same token at the same position (the
    positions :func:`token_agreement` counts; past the native continuation's end nothing agrees)."""
    return [i < len(native_ids) and token == native_ids[i] for i, token in enumerate(mapped_ids)]


def generation_verdict(quality: dict, compat: dict) -> dict:
    """What a visitor sees in one continuation, and whether the paper's predictor foretold it.

    ``outcome``: "works" when the mapped text agrees with the target's own on at least :data:`WORKS_AGREEMENT` of
    the target's tokens; else "reads well" when the target finds it at most :data:`READS_WELL_PERPLEXITY_RATIO`
    times as surprising as its own text (fluent, in words of its own); else "drifts". ``predicted``: the
    tokenizers' exact match rate is above the paper's :data:`PAPER_EXACT_MATCH`; ``predictor_holds``: the
    prediction of success matches an outcome other than "drifts".
    """
    agreement, rate = quality["token_agreement"], compat["exact_match_rate"]
    mapped, native = quality["perplexity_mapped"], quality["perplexity_native_target"]
    ratio = mapped / native if mapped is not None and native else None
    works = agreement is not None and agreement >= WORKS_AGREEMENT
    reads_well = ratio is not None and ratio <= READS_WELL_PERPLEXITY_RATIO
    outcome = "works" if works else "reads well" if reads_well else "drifts"
    predicted = rate > PAPER_EXACT_MATCH
    return {
        "outcome": outcome,
        "works": works,
        "token_agreement": agreement,
        "agreeing_tokens": quality["agreeing_tokens"],
        "native_tokens": quality["native_tokens"],
        "exact_match_rate": rate,
        "paper_exact_match": PAPER_EXACT_MATCH,
        "works_agreement": WORKS_AGREEMENT,
        "reads_well_ratio": READS_WELL_PERPLEXITY_RATIO,
        "predicted": predicted,
        "predictor_holds": (outcome != "drifts") == predicted,
        "perplexity_ratio": ratio,
    }


def perplexity(model_key: str, prompt: str, continuation: str) -> float:
    """exp(mean negative log-likelihood) of ``continuation``'s tokens under the model, given ``prompt``."""
    if not continuation.strip():
        raise ValueError("the continuation is empty")
    offsets, logprobs = load_causal_lm(model_key).token_logprobs(prompt + continuation)
    scored = logprobs[offsets[:, 1] > len(prompt)]  # tokens that end inside the continuation
    return float(np.exp(-scored.mean()))


@functools.cache
def compatibility(source_key: str, target_key: str, n_texts: int = COMPATIBILITY_TEXTS) -> dict[str, float]:
    """Exact token match rate on public text and vocabulary Jaccard for a (source, target) pair."""
    source, target = load_causal_lm(source_key), load_causal_lm(target_key)
    texts = load_public_corpus(n_texts)
    rate = exact_match_rate((target.tokens(t)[1], source.tokens(t)[1]) for t in texts)
    jaccard = vocabulary_jaccard(surface_forms(source.tokenizer), surface_forms(target.tokenizer))
    return {"exact_match_rate": rate, "vocabulary_jaccard": jaccard}
