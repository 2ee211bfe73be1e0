"""Pairing tokens of two tokenizers by character offsets, and how compatible two tokenizers are.

Two models rarely split a text the same way, so training pairs for the hidden-state map are made on characters:
each target token, ending at character e, is paired with the first source token whose end is at or after e (the
earliest source position that has seen everything the target token has). Pure functions on offset arrays, so
they are testable without models.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def _real(offsets: np.ndarray) -> np.ndarray:
    """Indices of tokens that span characters (special tokens such as BOS have empty spans)."""
    offsets = np.asarray(offsets).reshape(-1, 2)
    return np.flatnonzero(offsets[:, 1] > offsets[:, 0])


def pair_by_end_offset(target_offsets: np.ndarray, source_offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (target i, source j): j is the source token with the smallest end offset >= target i's end.

    Target tokens past the last source token's end (impossible for the same text) are left unpaired.
    """
    tgt, src = _real(target_offsets), _real(source_offsets)
    if len(tgt) == 0 or len(src) == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    src_ends = np.asarray(source_offsets)[src, 1]
    # tokenizers emit tokens in text order, so end offsets are non-decreasing and binary search applies
    pos = np.searchsorted(src_ends, np.asarray(target_offsets)[tgt, 1], side="left")
    keep = pos < len(src)
    return tgt[keep].astype(np.int64), src[pos[keep]].astype(np.int64)


def exact_match_counts(target_offsets: np.ndarray, source_offsets: np.ndarray) -> tuple[int, int]:
    """(target tokens whose exact character span is also a source token, target tokens) for one text."""
    tgt = {tuple(span) for span in np.asarray(target_offsets)[_real(target_offsets)].tolist()}
    src = {tuple(span) for span in np.asarray(source_offsets)[_real(source_offsets)].tolist()}
    return len(tgt & src), len(tgt)


def exact_match_rate(offset_pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> float:
    """Share of target tokens, over a corpus, that the source tokenizer cuts at exactly the same characters.

    The paper's best predictor of cross-model generation quality (r = 0.898).
    """
    matched = total = 0
    for target_offsets, source_offsets in offset_pairs:
        m, t = exact_match_counts(target_offsets, source_offsets)
        matched, total = matched + m, total + t
    if total == 0:
        raise ValueError("no tokens to compare")
    return matched / total


def surface_forms(tokenizer) -> set[str]:
    """A tokenizer's vocabulary as the text each entry stands for (its own decoder turns SentencePiece's '▁' and
    byte-level BPE's 'Ġ' or byte symbols into spaces and characters), so vocabularies of different families
    compare by what they spell."""
    decoder = tokenizer.backend_tokenizer.decoder
    return {decoder.decode([piece]) for piece in tokenizer.get_vocab()}


def vocabulary_jaccard(vocab_a: set[str], vocab_b: set[str]) -> float:
    """|A ∩ B| / |A ∪ B| of two vocabularies (sets of surface forms)."""
    if not vocab_a or not vocab_b:
        raise ValueError("vocabularies must be non-empty")
    return len(vocab_a & vocab_b) / len(vocab_a | vocab_b)
