"""Offset-based token pairing across tokenizers, and the tokenizer compatibility metrics."""

from __future__ import annotations

import numpy as np
import pytest

from securealign.generation.token_pairing import (
    exact_match_counts,
    exact_match_rate,
    pair_by_end_offset,
    surface_forms,
    vocabulary_jaccard,
)
from securealign.models.causal_lm import load_causal_lm

# words whose splits differ between SentencePiece (Gemma) and byte-level BPE (SmolLM2)
TEXTS = [
    "Photosynthesis in cyanobacteria is unbelievably efficient!",
    "Der Kindergarten öffnet um 7:45 Uhr, naïve café-goers.",
    "The antidisestablishmentarianism debate (1868-1869) was heated.",
]


def test_pairs_each_target_token_with_the_first_source_token_ending_at_or_after_it() -> None:
    target = np.array([[0, 0], [0, 3], [3, 8], [8, 9]])  # BOS, "The", " cats", "!"
    source = np.array([[0, 5], [5, 7], [7, 9]])  # "The c", "at", "s!"
    t, s = pair_by_end_offset(target, source)
    assert t.tolist() == [1, 2, 3]  # BOS spans no characters: unpaired
    assert s.tolist() == [0, 2, 2]


def test_pairing_on_real_tokenizations_that_differ() -> None:
    gemma, smol = load_causal_lm("gemma3"), load_causal_lm("smollm2")
    differing = 0
    for text in TEXTS:
        (_, t_off), (_, s_off) = smol.tokens(text), gemma.tokens(text)
        t_real = t_off[t_off[:, 1] > t_off[:, 0]]
        s_real = s_off[s_off[:, 1] > s_off[:, 0]]
        differing += {tuple(x) for x in t_real.tolist()} != {tuple(x) for x in s_real.tolist()}
        t_idx, s_idx = pair_by_end_offset(t_off, s_off)
        assert len(t_idx) == len(t_real)  # every real target token is paired
        ends_t, ends_s = t_off[t_idx, 1], s_off[s_idx, 1]
        assert (ends_s >= ends_t).all()
        # ... and with the *first* such source token: the real source token before it ends earlier
        real_s = np.flatnonzero(s_off[:, 1] > s_off[:, 0]).tolist()
        for i, j in zip(t_idx, s_idx, strict=False):
            k = real_s.index(j)
            assert k == 0 or s_off[real_s[k - 1], 1] < t_off[i, 1]
    assert differing == len(TEXTS)


def test_exact_match_rate_and_jaccard() -> None:
    same = np.array([[0, 3], [3, 7]])
    other = np.array([[0, 3], [3, 5], [5, 7]])
    assert exact_match_counts(same, other) == (1, 2)
    assert exact_match_rate([(same, same), (same, other)]) == pytest.approx(3 / 4)
    assert vocabulary_jaccard({"a", " the", "b"}, {" the", "b", "c"}) == pytest.approx(2 / 4)
    with pytest.raises(ValueError):
        exact_match_rate([])
    with pytest.raises(ValueError):
        vocabulary_jaccard(set(), {"a"})


def test_surface_forms_normalise_both_tokenizer_families() -> None:
    gemma, smol = surface_forms(load_causal_lm("gemma3").tokenizer), surface_forms(load_causal_lm("smollm2").tokenizer)
    for word in (" the", " and", "ing"):  # '▁the' and 'Ġthe' must both become ' the'
        assert word in gemma and word in smol
    assert 0.05 < vocabulary_jaccard(gemma, smol) < 0.5
