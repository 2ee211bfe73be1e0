"""The paper's predictor of cross-model generation, measured on every ordered causal pair of the zoo.

The paper finds that whether a source model can write through a target's LM head is predicted by tokenizer
compatibility (exact token match rate, r = 0.898 with quality; vocabulary Jaccard, r = 0.822) and source size.
This measures, per ordered pair: both predictors; next-token quality on held-out public text (top-1 and top-5
agreement of the mapped next token with the target's own greedy token); and, for the default map, 32-token greedy
continuations (token agreement with the target's own, perplexity under the target). Then what moves next-token
quality: the source layer (last vs penultimate), the number of training texts and the ridge penalty.

Every map is fitted from the states cached once per model (securealign/generation/state_cache.py), so the only
forward passes here are the continuations'. The committed maps of the Qwen pair come from the same caches with the
exact split and penalty of :func:`securealign.generation.mapping.fit_hidden_map`.
"""

from __future__ import annotations

import datetime
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.stats import pearsonr
from sklearn.metrics import r2_score

from securealign.alignment import AffineMap, RidgeStats
from securealign.experiments.artifacts import PREDICTOR_STUDY
from securealign.generation.decoding import mapped_greedy
from securealign.generation.mapping import (
    DEFAULT_CORPUS_SIZE,
    RIDGE_ABSOLUTE_ALPHA,
    HiddenMap,
    TokenPairs,
    default_corpus,
    fit_on_pairs,
    held_out_count,
    map_cache_path,
)
from securealign.generation.quality import perplexity, token_agreement
from securealign.generation.state_cache import CachedStates, extraction_seconds, load_states
from securealign.generation.token_pairing import (
    exact_match_counts,
    pair_by_end_offset,
    surface_forms,
    vocabulary_jaccard,
)
from securealign.models.causal_lm import CausalLM, load_causal_lm
from securealign.models.zoo import list_models
from securealign.paths import assets_dir

HELD_TEXTS = 100  # the first texts (inside every map's held-out 10%): ~3,500 tokens per pair, top-k over the vocabulary
TRAIN_SIZES = (1000, 2000, 3600)  # training texts; 3,600 = the 4,000-text corpus minus its held-out 10%
RELATIVE_LAMBDAS = (1e-2, 1.0)  # beside the paper's alpha = 1e-4 (sklearn convention; negligible at ~120k pairs)
CONTINUATION_PROMPTS = 10  # 32-token greedy continuations are the slow part on 2 cores
NEW_TOKENS = 32
PROMPT_WORDS = 8  # prompts are the first words of public-corpus texts after the 4,000 the maps see


@dataclass(frozen=True)
class PairIndex:
    """Global row indices of one pair's token pairs in the two caches, for a range of texts."""

    source: np.ndarray
    target: np.ndarray
    exact_matches: int
    target_tokens: int


def pair_index(source: CachedStates, target: CachedStates, texts: range) -> PairIndex:
    """Pair every text's tokens by character end offsets, as rows of the two caches."""
    src, tgt, matched, total = [], [], 0, 0
    for i in texts:
        s_off = source.offsets[source.starts[i] : source.starts[i + 1]]
        t_off = target.offsets[target.starts[i] : target.starts[i + 1]]
        ti, si = pair_by_end_offset(t_off, s_off)
        src.append(si + source.starts[i])
        tgt.append(ti + target.starts[i])
        m, n = exact_match_counts(t_off, s_off)
        matched, total = matched + m, total + n
    return PairIndex(np.concatenate(src), np.concatenate(tgt), matched, total)


def cached_pairs(source: CachedStates, target: CachedStates, texts: range, layer: str = "last") -> TokenPairs:
    """:class:`TokenPairs` of ``texts`` from the caches: the source's ``layer`` against the target's final state."""
    index = pair_index(source, target, texts)
    return TokenPairs(
        np.asarray(getattr(source, layer)[index.source]),
        np.asarray(target.last[index.target]),
        index.exact_matches,
        index.target_tokens,
    )


def fit_committed_map(source: CachedStates, target: CachedStates, lm_head: np.ndarray) -> HiddenMap:
    """The pair's map exactly as :func:`fit_hidden_map` fits it on the default corpus, from cached states."""
    n = source.n_texts
    held = held_out_count(n)
    train_pairs = cached_pairs(source, target, range(held, n))
    held_pairs = cached_pairs(source, target, range(held))
    hmap = fit_on_pairs(source.key, target.key, train_pairs, held_pairs, lm_head, n)
    hmap.metrics["fitted_from"] = "cached states (benchmarks/predictor_study.py maps)"
    return hmap


def save_committed_maps(keys: tuple[str, str]) -> list[Path]:
    """Fit both directions between two models from their caches and write them where load_hidden_map finds them."""
    texts = default_corpus(DEFAULT_CORPUS_SIZE)
    paths = []
    for source_key, target_key in itertools.permutations(keys):
        source, target = load_states(source_key, texts), load_states(target_key, texts)
        hmap = fit_committed_map(source, target, load_causal_lm(target_key).lm_head())
        path = assets_dir() / "generation" / map_cache_path(source_key, target_key, texts, RIDGE_ABSOLUTE_ALPHA).name
        hmap.save(path)
        print(f"{source_key} -> {target_key}: {path.name} {json.dumps(hmap.metrics)}", flush=True)
        paths.append(path)
    return paths


def _top_k_agreement(pred: np.ndarray, own_top: np.ndarray, lm_head: torch.Tensor) -> tuple[float, float]:
    """Share of rows whose target-own greedy token is the mapped state's first / among its first five."""
    top1 = top5 = 0
    for start in range(0, len(pred), 512):  # 512 x 262k logits at a time
        logits = torch.from_numpy(np.ascontiguousarray(pred[start : start + 512], dtype=np.float32)) @ lm_head.T
        best = torch.topk(logits, 5, dim=1).indices.numpy()
        own = own_top[start : start + 512, None]
        top1 += int((best[:, :1] == own).sum())
        top5 += int((best == own).any(axis=1).sum())
    return top1 / len(pred), top5 / len(pred)


def _own_greedy(target: CachedStates, rows: np.ndarray, lm_head: torch.Tensor) -> np.ndarray:
    """The target's own greedy next token at cached rows (argmax of its head on its own final state)."""
    out = []
    for start in range(0, len(rows), 512):
        states = torch.from_numpy(np.asarray(target.last[rows[start : start + 512]], dtype=np.float32))
        out.append((states @ lm_head.T).argmax(dim=1).numpy())
    return np.concatenate(out)


def _quality(affine: AffineMap, held: TokenPairs, own: np.ndarray, lm_head: torch.Tensor) -> dict[str, float]:
    pred = affine.apply(held.source).astype(np.float32)
    top1, top5 = _top_k_agreement(pred, own, lm_head)
    cos = np.sum(pred * held.target, 1) / (np.linalg.norm(pred, axis=1) * np.linalg.norm(held.target, axis=1) + 1e-12)
    return {
        "r2": float(r2_score(held.target, pred, multioutput="variance_weighted")),
        "cosine": float(cos.mean()),
        "top1": top1,
        "top5": top5,
    }


def next_token_rows(source: CachedStates, target: CachedStates, lm_head: torch.Tensor) -> tuple[list[dict], AffineMap]:
    """Held-out next-token quality for the default map and each variant (layer, training size, penalty); and the
    default map itself (last layer, every training text, the paper's penalty)."""
    held_index = pair_index(source, target, range(HELD_TEXTS))
    own = _own_greedy(target, held_index.target, lm_head)
    first_train = held_out_count(source.n_texts)
    rows = []
    for layer in ("last", "penultimate"):
        held = TokenPairs(
            np.asarray(getattr(source, layer)[held_index.source]), np.asarray(target.last[held_index.target]), 0, 0
        )
        stats, seen = RidgeStats(source.last.shape[1], target.last.shape[1]), first_train
        for size in TRAIN_SIZES:
            chunk = cached_pairs(source, target, range(seen, first_train + size), layer)
            stats.update(chunk.source, chunk.target)
            seen = first_train + size
            # one factor at a time around the default (last layer, every training text, the paper's penalty): the
            # size curve on the last layer, the penalty grid at the full size, the penultimate layer at the full
            # size (each held-out evaluation is a top-k over the whole target vocabulary)
            full = size == TRAIN_SIZES[-1]
            if layer == "penultimate" and not full:
                continue
            variants = [("alpha", RIDGE_ABSOLUTE_ALPHA)]
            if layer == "last" and full:
                variants += [("relative", lam) for lam in RELATIVE_LAMBDAS]
            for convention, value in variants:
                if convention == "alpha":
                    affine = stats.solve(absolute_alpha=value)
                    if layer == "last" and size == TRAIN_SIZES[-1]:
                        default = affine
                else:
                    affine = stats.solve(value)
                row = {
                    "layer": layer,
                    "train_texts": size,
                    "train_tokens": stats.n,
                    "penalty": f"{convention} {value:g}",
                }
                row.update(_quality(affine, held, own, lm_head))
                rows.append(row)
    for row in rows:
        row["held_tokens"] = int(len(own))
    return rows, default


def continuation_prompts() -> list[str]:
    """Held-out prompts: the first words of the public-corpus texts after the maps' 4,000."""
    texts = default_corpus(DEFAULT_CORPUS_SIZE + CONTINUATION_PROMPTS)[DEFAULT_CORPUS_SIZE:]
    return [" ".join(text.split()[:PROMPT_WORDS]) for text in texts]


def _perplexity_or_none(key: str, prompt: str, text: str) -> float | None:
    try:
        return perplexity(key, prompt, text)
    except ValueError:  # an empty (or all-whitespace) continuation has no perplexity
        return None


def continuation_row(source: CausalLM, target: CausalLM, hmap: HiddenMap, native: list[list[int]]) -> dict:
    """32-token greedy continuations through the default map: agreement with the target's own, perplexity."""
    agreements, ppl_mapped, examples = [], [], []
    start = time.perf_counter()
    for prompt, own in zip(continuation_prompts(), native, strict=True):
        tokens = list(mapped_greedy(source, target, lambda h: target.logits(hmap.apply(h)), prompt, NEW_TOKENS))
        ids = [t.id for t in tokens]
        text = target.tokenizer.decode(ids, skip_special_tokens=True)
        agreements.append(token_agreement(ids, own))
        ppl_mapped.append(_perplexity_or_none(target.key, prompt, text))
        examples.append(text)
    scored = [p for p in ppl_mapped if p is not None]
    return {
        "prompts": len(agreements),
        "agreement": float(np.mean(agreements)),
        "ppl_mapped_median": float(np.median(scored)) if scored else None,
        "ppl_scored": len(scored),
        "seconds": round(time.perf_counter() - start, 1),
        # per prompt, the mapped text with its agreement and perplexity (the native texts are the study's)
        "mapped": [
            {"text": text, "agreement": a, "ppl": p}
            for text, a, p in zip(examples, agreements, ppl_mapped, strict=True)
        ],
    }


def _correlations(pairs: list[dict]) -> dict:
    """Pearson r across pairs of each predictor with each quality measure (few pairs: read with care)."""
    qualities = {
        "top1": [p["default"]["top1"] for p in pairs],
        "top5": [p["default"]["top5"] for p in pairs],
        "continuation_agreement": [p["continuation"]["agreement"] for p in pairs],
        "neg_log_ppl_ratio": [
            -np.log(p["continuation"]["ppl_mapped_median"] / p["native_target_ppl_median"]) for p in pairs
        ],
    }
    out = {}
    for predictor in ("exact_match_rate", "vocabulary_jaccard"):
        xs = [p[predictor] for p in pairs]
        out[predictor] = {}
        for name, ys in qualities.items():
            if np.ptp(xs) == 0 or np.ptp(ys) == 0:  # a constant column has no correlation
                out[predictor][name] = {"r": None, "p": None}
                continue
            r, pvalue = pearsonr(xs, ys)
            out[predictor][name] = {"r": float(r), "p": float(pvalue)}
    return out


def run(save: Callable[[dict], None] = lambda result: None) -> dict:
    """The whole study; returns the JSON-ready result (every figure measured here), handing it to ``save`` after
    each pair too (marked incomplete), so a long run interrupted keeps what it measured."""
    keys = [spec.key for spec in list_models("causal")]
    texts = default_corpus(DEFAULT_CORPUS_SIZE)
    caches = {key: load_states(key, texts) for key in keys}
    models = {key: load_causal_lm(key) for key in keys}
    heads = {key: torch.from_numpy(models[key].lm_head()) for key in keys}
    vocab = {key: surface_forms(models[key].tokenizer) for key in keys}
    prompts = continuation_prompts()
    native = {key: [models[key].greedy_ids(p, NEW_TOKENS) for p in prompts] for key in keys}
    native_ppl, native_scored = {}, {}
    for key in keys:
        scored = [
            _perplexity_or_none(key, p, models[key].tokenizer.decode(ids, skip_special_tokens=True))
            for p, ids in zip(prompts, native[key], strict=True)
        ]
        native_ppl[key], native_scored[key] = float(np.median([s for s in scored if s is not None])), scored
    pairs = []
    for source_key, target_key in itertools.permutations(keys, 2):
        start = time.perf_counter()
        source, target = caches[source_key], caches[target_key]
        index = pair_index(source, target, range(source.n_texts))
        rows, affine = next_token_rows(source, target, heads[target_key])
        default = next(
            r
            for r in rows
            if (r["layer"], r["train_texts"], r["penalty"])
            == ("last", TRAIN_SIZES[-1], f"alpha {RIDGE_ABSOLUTE_ALPHA:g}")
        )
        hmap = HiddenMap(source_key, target_key, affine.W.astype(np.float32), affine.b.astype(np.float32))
        pair = {
            "source": source_key,
            "target": target_key,
            "exact_match_rate": index.exact_matches / index.target_tokens,
            "vocabulary_jaccard": vocabulary_jaccard(vocab[source_key], vocab[target_key]),
            "default": default,
            "variants": rows,
            "continuation": continuation_row(models[source_key], models[target_key], hmap, native[target_key]),
            "native_target_ppl_median": native_ppl[target_key],
        }
        pairs.append(pair)
        save(_result(pairs, models, native, native_scored, texts, complete=len(pairs) == len(keys) * (len(keys) - 1)))
        print(
            f"{source_key:8s} -> {target_key:8s} exact {pair['exact_match_rate']:.3f} jaccard "
            f"{pair['vocabulary_jaccard']:.3f} top1 {default['top1']:.3f} top5 {default['top5']:.3f} "
            f"cont {pair['continuation']['agreement']:.3f} ppl {pair['continuation']['ppl_mapped_median']} / "
            f"{native_ppl[target_key]:.1f} ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    return _result(pairs, models, native, native_scored, texts, complete=True)


def _result(
    pairs: list[dict],
    models: dict[str, CausalLM],
    native: dict[str, list[list[int]]],
    native_ppl: dict[str, list[float | None]],
    texts: list[str],
    complete: bool,
) -> dict:
    return {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "complete": complete,
        "command": "flock /tmp/heavy.lock .venv/bin/python benchmarks/predictor_study.py study",
        "loadavg": open("/proc/loadavg").read().split()[:3],
        "texts": DEFAULT_CORPUS_SIZE,
        "held_texts": HELD_TEXTS,
        "train_sizes": list(TRAIN_SIZES),
        "continuation_prompts": CONTINUATION_PROMPTS,
        "new_tokens": NEW_TOKENS,
        "dtypes": {key: str(lm.model.dtype).removeprefix("torch.") for key, lm in models.items()},
        "extraction_seconds": {key: extraction_seconds(key, texts) for key in models},
        "prompts": continuation_prompts(),
        "native": {
            key: [lm.tokenizer.decode(ids, skip_special_tokens=True) for ids in native[key]]
            for key, lm in models.items()
        },
        "native_ppl": native_ppl,
        "pairs": pairs,
        "correlations": _correlations(pairs) if len(pairs) > 2 else {},
    }


def main(argv: list[str]) -> int:
    path = assets_dir().joinpath(*PREDICTOR_STUDY)
    run(lambda result: path.write_text(json.dumps(result, indent=1) + "\n"))
    print(f"wrote {path}")
    return 0
