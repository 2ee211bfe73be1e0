"""Side-by-side streaming for the app: native source, native target and mapped continuations of one prompt,
taking turns token by token, with speeds, per-token times, which mapped tokens agree with the target's own,
the pair's compatibility and, once the plaintext streams end, quality metrics and a verdict.

Optionally a fourth stream decodes the same prompt through the encrypted head. It runs *after* the plaintext
streams rather than taking turns with them: one encrypted token over a large vocabulary costs seconds, and in turns
it would hold every plaintext stream to its pace (and make their per-token times its own).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from securealign.generation.decoding import Token, mapped_greedy, native_greedy
from securealign.generation.mapping import DEFAULT_CORPUS_SIZE
from securealign.generation.pair import DEFAULT_SOURCE, DEFAULT_TARGET, load_pair
from securealign.generation.quality import (
    agreement_marks,
    compatibility,
    generation_verdict,
    perplexity,
    token_agreement,
)

MAX_NEW_TOKENS = 128
MAPPED_STREAMS = ("mapped", "mapped_encrypted")  # the streams written by the target's head through the map


def stream_compare(
    prompt: str,
    source: str = DEFAULT_SOURCE,
    target: str = DEFAULT_TARGET,
    encrypted: bool = False,
    max_new_tokens: int = 32,
    corpus_size: int = DEFAULT_CORPUS_SIZE,
    encrypted_beside: bool = False,
) -> Iterator[dict]:
    """Yield a snapshot after every token of any stream (the streams take turns, one token each per round); the
    last one has ``"finished": True``.

    ``encrypted`` puts the encrypted head in the "mapped" stream itself; ``encrypted_beside`` keeps "mapped" in
    plaintext and adds a "mapped_encrypted" stream through the encrypted head, decoded after the plaintext streams
    end (one snapshot per encrypted token).

    Each snapshot: ``texts``, ``tokens`` (each token's text), ``token_ms`` (each token's own compute time, in ms)
    and ``tokens_per_s`` per stream ("native_source", "native_target", "mapped" and, beside, "mapped_encrypted");
    ``first_token_s`` (seconds from the start of decoding, models already loaded, to each stream's first token:
    what a caller waits, as the streams take turns); ``agrees`` (per mapped stream, whether each token equals the
    target's own at that position); ``waiting`` (streams not started yet); ``compatibility`` (exact token match
    rate, vocabulary Jaccard); ``map`` (held-out fit metrics); when the head is encrypted, ``encrypted_step`` (the
    last round trip's encrypt/provider/decrypt ms and bytes); from the end of the plaintext streams on,
    ``quality`` and ``verdict``. The map is fitted on the first ``corpus_size`` public-corpus texts (once; cached).
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("the prompt must be a non-empty string")
    if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise ValueError(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS}")
    pair = load_pair(source, target, corpus_size)
    head = pair.encrypted_head if encrypted else pair.plain_head
    # the mapped stream, the one the comparison is about, takes the first turn of every round
    rounds: dict[str, Iterator[Token]] = {
        "mapped": mapped_greedy(pair.source, pair.target, head, prompt, max_new_tokens),
        "native_target": native_greedy(pair.target, prompt, max_new_tokens),
        "native_source": native_greedy(pair.source, prompt, max_new_tokens),
    }
    after = ["mapped_encrypted"] if encrypted_beside else []
    tokens: dict[str, list[Token]] = {name: [] for name in [*rounds, *after]}
    token_ms: dict[str, list[float]] = {name: [] for name in tokens}
    first_token_s: dict[str, float] = {}
    snapshot = {
        "prompt": prompt,
        "source": source,
        "target": target,
        "encrypted": encrypted,
        "compatibility": compatibility(source, target),
        "map": pair.hidden_map.metrics,
        "finished": False,
    }
    start = time.perf_counter()

    def advance(name: str, stream: Iterator[Token]) -> bool:
        """One token of one stream, timed; False once the stream has ended."""
        t0 = time.perf_counter()
        token = next(stream, None)
        now = time.perf_counter()
        if token is None:
            return False
        tokens[name].append(token)
        token_ms[name].append((now - t0) * 1e3)
        first_token_s.setdefault(name, now - start)
        if token.cost is not None:
            snapshot["encrypted_step"] = vars(token.cost)
        return True

    def current(waiting: list[str]) -> dict:
        native = [t.id for t in tokens["native_target"]]
        snapshot.update(
            texts={name: "".join(t.text for t in toks) for name, toks in tokens.items()},
            tokens={name: [t.text for t in toks] for name, toks in tokens.items()},
            token_ms={name: list(ms) for name, ms in token_ms.items()},
            tokens_per_s={name: 1e3 * len(ms) / sum(ms) if ms else 0.0 for name, ms in token_ms.items()},
            first_token_s=dict(first_token_s),
            agrees={n: agreement_marks([t.id for t in tokens[n]], native) for n in MAPPED_STREAMS if n in tokens},
            waiting=list(waiting),
        )
        return dict(snapshot)

    while rounds:
        for name, stream in list(rounds.items()):
            if advance(name, stream):
                yield current(after)
            else:
                del rounds[name]
    current(after)
    snapshot["quality"] = continuation_quality(target, prompt, snapshot["texts"], tokens)
    snapshot["verdict"] = generation_verdict(snapshot["quality"], snapshot["compatibility"])
    if encrypted_beside:
        yield current(after)  # the plaintext streams' verdict, before the first (slow) encrypted token
        stream = mapped_greedy(pair.source, pair.target, pair.encrypted_head, prompt, max_new_tokens)
        while advance("mapped_encrypted", stream):
            yield current([])
        snapshot["quality"]["encrypted_equals_plaintext"] = [t.id for t in tokens["mapped_encrypted"]] == [
            t.id for t in tokens["mapped"]
        ]
    final = current([])
    final["finished"] = True
    yield final


def continuation_quality(
    target: str, prompt: str, texts: dict[str, str], tokens: dict[str, list[Token]]
) -> dict[str, float | int | None]:
    """Agreement of the mapped continuation with the native target one (as a share and as a count), and both
    perplexities under the target."""
    native_ids = [t.id for t in tokens["native_target"]]
    mapped_ids = [t.id for t in tokens["mapped"]]
    return {
        "token_agreement": token_agreement(mapped_ids, native_ids) if native_ids else None,
        "agreeing_tokens": sum(agreement_marks(mapped_ids, native_ids)),
        "native_tokens": len(native_ids),
        "perplexity_mapped": perplexity(target, prompt, texts["mapped"]) if texts["mapped"].strip() else None,
        "perplexity_native_target": (
            perplexity(target, prompt, texts["native_target"]) if texts["native_target"].strip() else None
        ),
    }
