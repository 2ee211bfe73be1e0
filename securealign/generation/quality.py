"""How good a cross-model continuation is, and how compatible two tokenizers are (the paper's predictors)."""

from __future__ import annotations

import functools

import numpy as np

from securealign.datasets import load_public_corpus
from securealign.generation.token_pairing import exact_match_rate, surface_forms, vocabulary_jaccard
from securealign.models.causal_lm import load_causal_lm

COMPATIBILITY_TEXTS = 500  # tokenization only, so a larger sample than the map fit is cheap


def token_agreement(mapped_ids: list[int], native_ids: list[int]) -> float:
    """Share of the native continuation's positions where the mapped continuation chose the same token."""
    if not native_ids:
        raise ValueError("the native continuation is empty")
    return sum(a == b for a, b in zip(mapped_ids, native_ids, strict=False)) / len(native_ids)


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
