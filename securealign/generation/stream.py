"""Side-by-side streaming for the app: native source, native target and mapped continuations of one prompt,
advanced one token each per round, with speeds, the pair's compatibility and, at the end, quality metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator

from securealign.generation.decoding import Token, mapped_greedy, native_greedy
from securealign.generation.mapping import DEFAULT_CORPUS_SIZE
from securealign.generation.pair import DEFAULT_SOURCE, DEFAULT_TARGET, load_pair
from securealign.generation.quality import compatibility, perplexity, token_agreement

MAX_NEW_TOKENS = 128


def stream_compare(
    prompt: str,
    source: str = DEFAULT_SOURCE,
    target: str = DEFAULT_TARGET,
    encrypted: bool = False,
    max_new_tokens: int = 32,
    corpus_size: int = DEFAULT_CORPUS_SIZE,
) -> Iterator[dict]:
    """Yield a snapshot after every round of tokens; the last one has ``"finished": True`` and ``"quality"``.

    Each snapshot: ``texts`` and ``tokens_per_s`` per stream ("native_source", "native_target", "mapped"),
    ``compatibility`` (exact token match rate, vocabulary Jaccard), ``map`` (held-out fit metrics) and, when
    encrypted, ``encrypted_step`` (the last round trip's encrypt/provider/decrypt ms and bytes). The map is fitted
    on the first ``corpus_size`` public-corpus texts (once; cached).
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("the prompt must be a non-empty string")
    if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise ValueError(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS}")
    pair = load_pair(source, target, corpus_size)
    head = pair.encrypted_head if encrypted else pair.plain_head
    streams: dict[str, Iterator[Token]] = {
        "native_source": native_greedy(pair.source, prompt, max_new_tokens),
        "native_target": native_greedy(pair.target, prompt, max_new_tokens),
        "mapped": mapped_greedy(pair.source, pair.target, head, prompt, max_new_tokens),
    }
    tokens: dict[str, list[Token]] = {name: [] for name in streams}
    seconds = dict.fromkeys(streams, 0.0)
    snapshot = {
        "prompt": prompt,
        "source": source,
        "target": target,
        "encrypted": encrypted,
        "compatibility": compatibility(source, target),
        "map": pair.hidden_map.metrics,
        "finished": False,
    }
    while streams:
        for name, stream in list(streams.items()):
            start = time.perf_counter()
            token = next(stream, None)
            seconds[name] += time.perf_counter() - start
            if token is None:
                del streams[name]
                continue
            tokens[name].append(token)
            if name == "mapped" and token.cost is not None:
                snapshot["encrypted_step"] = vars(token.cost)
        snapshot["texts"] = {name: "".join(t.text for t in toks) for name, toks in tokens.items()}
        snapshot["tokens_per_s"] = {
            name: len(tokens[name]) / seconds[name] if seconds[name] else 0.0 for name in tokens
        }
        if streams:
            yield dict(snapshot)
    snapshot["quality"] = continuation_quality(target, prompt, snapshot["texts"], tokens)
    snapshot["finished"] = True
    yield snapshot


def continuation_quality(
    target: str, prompt: str, texts: dict[str, str], tokens: dict[str, list[Token]]
) -> dict[str, float | None]:
    """Agreement of the mapped continuation with the native target one, and both perplexities under the target."""
    native_ids = [t.id for t in tokens["native_target"]]
    mapped_ids = [t.id for t in tokens["mapped"]]
    return {
        "token_agreement": token_agreement(mapped_ids, native_ids) if native_ids else None,
        "perplexity_mapped": perplexity(target, prompt, texts["mapped"]) if texts["mapped"].strip() else None,
        "perplexity_native_target": (
            perplexity(target, prompt, texts["native_target"]) if texts["native_target"].strip() else None
        ),
    }
