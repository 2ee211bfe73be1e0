"""The hidden-state map: ridge regression from a source LM's final hidden states to a target LM's, fitted on
token pairs of public text matched by character offsets, and composed with the target's LM head.

The map is the only thing the two models share. Once composed with the target's frozen LM head it becomes one
(V x d_source) matrix and a bias, which is exactly what the provider evaluates under encryption in sealed mode.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.metrics import r2_score

from securealign.alignment import fit_ridge
from securealign.datasets import load_public_corpus
from securealign.generation.token_pairing import exact_match_counts, pair_by_end_offset
from securealign.models.causal_lm import CausalLM, TokenStates, load_causal_lm
from securealign.paths import assets_dir, cache_dir

RIDGE_ABSOLUTE_ALPHA = 1e-4  # the paper's choice for generation maps, in scikit-learn's convention (Ridge's alpha)
HELD_OUT_FRACTION = 0.1
DEFAULT_CORPUS_SIZE = 4000  # the paper's order of magnitude (~4,000 prompts)


@dataclass(frozen=True)
class HiddenMap:
    """z_target ~ h_source @ W + b, with its fit quality on held-out tokens."""

    source: str
    target: str
    W: np.ndarray  # (d_source, d_target)
    b: np.ndarray  # (d_target,)
    metrics: dict = field(default_factory=dict)

    def apply(self, hidden: np.ndarray) -> np.ndarray:
        return np.asarray(hidden, dtype=np.float32) @ self.W + self.b

    def compose(self, lm_head: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The map followed by an LM head (V, d_target) as one (V, d_source) matrix and (V,) bias (float64).

        logits = (h W + b) H^T = h (H W^T)^T + H b: one matrix-vector product instead of two.
        """
        head = np.asarray(lm_head, dtype=np.float64)
        return head @ self.W.T.astype(np.float64), head @ self.b.astype(np.float64)

    def save(self, path: Path) -> None:
        np.savez(
            path,
            W=self.W,
            b=self.b,
            meta=json.dumps({"source": self.source, "target": self.target, "metrics": self.metrics}),
        )

    @classmethod
    def load(cls, path: Path) -> HiddenMap:
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            return cls(meta["source"], meta["target"], data["W"], data["b"], meta["metrics"])


@dataclass
class TokenPairs:
    """Paired hidden states of many texts, plus the tokenizer agreement seen while pairing them."""

    source: np.ndarray  # (n, d_source)
    target: np.ndarray  # (n, d_target)
    exact_matches: int
    target_tokens: int


def pair_states(source_states: list[TokenStates], target_states: list[TokenStates]) -> TokenPairs:
    """Pair two models' states of the same texts by character end offsets (each text's ``hidden`` as given)."""
    xs, ys, matched, total = [], [], 0, 0
    for s, t in zip(source_states, target_states, strict=True):
        ti, si = pair_by_end_offset(t.offsets, s.offsets)
        xs.append(s.hidden[si])
        ys.append(t.hidden[ti])
        m, n = exact_match_counts(t.offsets, s.offsets)
        matched, total = matched + m, total + n
    return TokenPairs(np.concatenate(xs), np.concatenate(ys), matched, total)


def collect_pairs(source: CausalLM, target: CausalLM, texts: list[str], batch_size: int = 16) -> TokenPairs:
    """Run both models on ``texts`` and pair their final hidden states by character end offsets."""
    return pair_states(source.final_hidden_batch(texts, batch_size), target.final_hidden_batch(texts, batch_size))


def hidden_map_quality(pred: np.ndarray, true: np.ndarray, lm_head: np.ndarray) -> dict[str, float]:
    """Held-out R^2 (variance-weighted), mean cosine, and how often the LM head picks the same next token."""
    cos = np.sum(pred * true, axis=1) / (np.linalg.norm(pred, axis=1) * np.linalg.norm(true, axis=1) + 1e-12)
    # in chunks: 40k held-out tokens against Gemma's 262k-token vocabulary would be a 42 GB logit matrix
    same = np.concatenate(
        [
            np.argmax(pred[i : i + 512] @ lm_head.T, axis=1) == np.argmax(true[i : i + 512] @ lm_head.T, axis=1)
            for i in range(0, len(true), 512)
        ]
    )
    return {
        "r2": float(r2_score(true, pred, multioutput="variance_weighted")),
        "cosine": float(cos.mean()),
        "next_token_agreement": float(same.mean()),
        "held_out_tokens": int(len(true)),
    }


def fit_hidden_map(
    source_key: str, target_key: str, texts: list[str], absolute_alpha: float = RIDGE_ABSOLUTE_ALPHA
) -> HiddenMap:
    """Fit on 90% of ``texts`` (split by text, not by token) and measure on the other 10%."""
    if len(texts) < 10:
        raise ValueError("fitting a hidden-state map needs at least 10 texts")
    source, target = load_causal_lm(source_key), load_causal_lm(target_key)
    n_held = held_out_count(len(texts))
    train = collect_pairs(source, target, texts[n_held:])
    held = collect_pairs(source, target, texts[:n_held])
    return fit_on_pairs(source_key, target_key, train, held, target.lm_head(), len(texts), absolute_alpha)


def held_out_count(n_texts: int) -> int:
    """How many of a map's texts (the first ones) are held out to measure it."""
    return max(1, int(n_texts * HELD_OUT_FRACTION))


def fit_on_pairs(
    source_key: str,
    target_key: str,
    train: TokenPairs,
    held: TokenPairs,
    lm_head: np.ndarray,
    n_texts: int,
    absolute_alpha: float = RIDGE_ABSOLUTE_ALPHA,
) -> HiddenMap:
    """The ridge map fitted on ``train``'s pairs, with its quality on ``held``'s (whichever way they were run:
    live, or from cached states)."""
    affine = fit_ridge(train.source, train.target, absolute_alpha=absolute_alpha)
    W, b = affine.W.astype(np.float32), affine.b.astype(np.float32)
    pred = held.source @ W + b
    metrics = hidden_map_quality(pred, held.target, lm_head)
    metrics.update(
        {
            "train_tokens": int(len(train.source)),
            "texts": n_texts,
            "lambda": absolute_alpha,
            "exact_match_rate": (train.exact_matches + held.exact_matches)
            / max(1, train.target_tokens + held.target_tokens),
        }
    )
    return HiddenMap(source_key, target_key, W, b, metrics)


def map_cache_path(source_key: str, target_key: str, texts: list[str], absolute_alpha: float) -> Path:
    digest = hashlib.sha256("\x1f".join(texts).encode()).hexdigest()[:12]
    return cache_dir() / "generation" / f"map-{source_key}-{target_key}-{len(texts)}-{absolute_alpha:g}-{digest}.npz"


def fitted_map_path(
    source_key: str, target_key: str, texts: list[str] | None = None, absolute_alpha: float = RIDGE_ABSOLUTE_ALPHA
) -> Path | None:
    """Where an already fitted map for the pair lies (the cache, else the copy committed in assets/), or None.

    Lets callers with a user waiting (the app) refuse a pair whose fit would take the better part of an hour.
    """
    path = map_cache_path(source_key, target_key, default_corpus() if texts is None else texts, absolute_alpha)
    return next((c for c in (path, assets_dir() / "generation" / path.name) if c.exists()), None)


def load_hidden_map(
    source_key: str, target_key: str, texts: list[str] | None = None, absolute_alpha: float = RIDGE_ABSOLUTE_ALPHA
) -> HiddenMap:
    """The fitted map for a pair: from the cache, else the copy committed in assets/, else fitted once (minutes
    for the default 4,000 texts) and cached. Default corpus: the project's public corpus."""
    if texts is None:
        texts = default_corpus()
    fitted = fitted_map_path(source_key, target_key, texts, absolute_alpha)
    if fitted is not None:
        return HiddenMap.load(fitted)
    path = map_cache_path(source_key, target_key, texts, absolute_alpha)
    hmap = fit_hidden_map(source_key, target_key, texts, absolute_alpha)
    path.parent.mkdir(parents=True, exist_ok=True)
    hmap.save(path)
    return hmap


def default_corpus(limit: int = DEFAULT_CORPUS_SIZE) -> list[str]:
    """The public alignment corpus both parties can run (Guardian headlines and movie plot lines)."""
    return load_public_corpus(limit)
