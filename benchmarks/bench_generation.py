"""Benchmark of encrypted cross-model decoding over the full target vocabulary (Gemma-3-270M reads, SmolLM2's
49,152-token head writes): per-token latency and its parts, bytes per token, key material and provider memory,
against baselines measured in the same run.

    .venv/bin/python benchmarks/bench_generation.py [--prompts 3] [--tokens 12]

Targets (2-core machine): <= 2 s per token (stretch 1 s) for a ~50k vocabulary, provider memory < 4 GB.
Baselines: the plaintext composed head (numpy), and the classification protocol's row-packed layout
(``securealign.crypto``) timed on a slice of the vocabulary and scaled linearly to all of it (running it whole
would take about a minute per token).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import psutil

from securealign.crypto import ClientSession, Provider
from securealign.crypto.layout import Layout
from securealign.generation.decoding import mapped_greedy
from securealign.generation.encrypted import EncryptedHead
from securealign.generation.pair import DEFAULT_SOURCE, DEFAULT_TARGET, load_pair

TARGET_S, STRETCH_S, TARGET_PROVIDER_GB = 2.0, 1.0, 4.0
BASELINE_SLICE = 350  # vocabulary rows for the row-packed baseline (50 ciphertexts of 7 rows at d = 640)
PROMPTS = [
    "The history of the city begins in",
    "Scientists announced on Tuesday that",
    "She opened the letter and",
    "The best way to learn a language is",
    "In the morning the market",
]


def _rss_gb() -> float:
    return psutil.Process().memory_info().rss / 1e9


def _median(values: list[float]) -> float:
    return statistics.median(values)


def bench_plaintext_head(pair, hidden: np.ndarray, repeats: int = 20) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        pair.plain_head(hidden)
    return (time.perf_counter() - start) / repeats * 1e3


def bench_row_packed_baseline(pair, hidden: np.ndarray) -> tuple[float, int]:
    """The classification protocol's layout on BASELINE_SLICE rows, scaled to the vocabulary (ms/token, cts)."""
    matrix, bias = pair.plain_head.matrix[:BASELINE_SLICE], pair.plain_head.bias[:BASELINE_SLICE]
    provider = Provider()
    provider.register_head("slice", matrix.T, bias)
    layout = Layout.plan(matrix.shape[1], matrix.shape[0])
    client = ClientSession([layout])
    session = provider.open_session(client.public_context())
    query = client.encrypt_query(hidden, layout)
    start = time.perf_counter()
    provider.evaluate(session, "slice", query)
    slice_ms = (time.perf_counter() - start) * 1e3
    full_cts = -(-pair.plain_head.matrix.shape[0] // layout.blocks_per_ct)
    return slice_ms * full_cts / layout.n_ciphertexts, full_cts


def run(n_prompts: int, n_tokens: int) -> int:
    pair = load_pair(DEFAULT_SOURCE, DEFAULT_TARGET)
    vocab, d = pair.plain_head.matrix.shape
    print(
        f"pair {DEFAULT_SOURCE} -> {DEFAULT_TARGET}: pre-composed head {vocab:,} x {d} (map + LM head), "
        f"map held-out R^2 {pair.hidden_map.metrics['r2']:.3f}, cosine {pair.hidden_map.metrics['cosine']:.3f}"
    )

    rss_before = _rss_gb()
    start = time.perf_counter()
    head = EncryptedHead(pair.plain_head.matrix, pair.plain_head.bias)
    compile_s = time.perf_counter() - start
    rss_compiled = _rss_gb()
    layout = head.provider.layout
    print(
        f"layout: {layout.n_ciphertexts} result ciphertexts x 2 x {layout.rows} slots, baby {layout.baby} x "
        f"giant {layout.giant}, {layout.rotations} rotations and {layout.d * layout.n_ciphertexts:,} "
        f"plaintext products per token"
    )
    print(
        f"provider set-up: {compile_s:.1f} s to encode {layout.d * layout.n_ciphertexts:,} diagonals "
        f"({head.provider.plaintext_bytes / 1e9:.2f} GB of plaintexts); "
        f"Galois keys {len(head.key_bytes) / 1e3:.0f} KB "
        f"(steps {layout.steps}), sent once"
    )

    parts: dict[str, list[float]] = {"source": [], "encrypt": [], "provider": [], "decrypt": [], "total": []}
    up, down, peak, agree = [], [], rss_compiled, 0
    for prompt in PROMPTS[:n_prompts]:
        plain = [t.id for t in mapped_greedy(pair.source, pair.target, pair.plain_head, prompt, n_tokens)]
        encrypted = []
        for token in mapped_greedy(pair.source, pair.target, head, prompt, n_tokens):
            cost = token.cost
            parts["source"].append(token.source_ms)
            parts["encrypt"].append(cost.encrypt_ms)
            parts["provider"].append(cost.provider_ms)
            parts["decrypt"].append(cost.decrypt_ms)
            parts["total"].append(token.source_ms + token.head_ms)
            up.append(cost.bytes_up)
            down.append(cost.bytes_down)
            peak = max(peak, _rss_gb())
            encrypted.append(token.id)
        agree += encrypted == plain
    hidden = pair.source.final_hidden(PROMPTS[0]).hidden[-1]
    plain_ms = bench_plaintext_head(pair, hidden)
    packed_ms, packed_cts = bench_row_packed_baseline(pair, hidden)

    n = len(parts["total"])
    print(f"\nencrypted decoding, {n} tokens over {n_prompts} prompts (medians per token):")
    for name in ("source", "encrypt", "provider", "decrypt", "total"):
        values = parts[name]
        print(f"  {name:9s} {_median(values):9.1f} ms   (p95 {np.percentile(values, 95):8.1f} ms)")
    head_ms = _median(parts["encrypt"]) + _median(parts["provider"]) + _median(parts["decrypt"])
    print(
        f"  bytes per token: up {_median(up) / 1e3:.0f} KB (one ciphertext), down {_median(down) / 1e6:.2f} MB "
        f"({layout.n_ciphertexts} ciphertexts)"
    )
    print(f"  encrypted tokens equal plaintext-mapped tokens on {agree}/{n_prompts} prompts")
    provider_gb = peak - rss_before
    print(
        f"\nprovider memory: {rss_compiled - rss_before:.2f} GB after encoding, {provider_gb:.2f} GB peak while "
        f"decoding (process RSS growth; models excluded)"
    )

    print("\nbaselines measured in this run:")
    print(
        f"  plaintext composed head (numpy)                 {plain_ms:10.2f} ms/token -> encrypted head is "
        f"{head_ms / plain_ms:,.0f}x"
    )
    print(
        f"  row-packed protocol layout, {packed_cts:,} ciphertexts  {packed_ms:10.0f} ms/token (from "
        f"{BASELINE_SLICE} rows, scaled) -> diagonal method is {packed_ms / head_ms:.0f}x faster"
    )

    total_s = _median(parts["total"]) / 1e3
    ok = total_s <= TARGET_S and provider_gb < TARGET_PROVIDER_GB
    print(
        f"\ntarget <= {TARGET_S:.0f} s/token (stretch {STRETCH_S:.0f} s), provider < {TARGET_PROVIDER_GB:.0f} GB: "
        f"{total_s:.2f} s/token, {provider_gb:.2f} GB -> {'MET' if ok else 'NOT MET'}"
        f"{' (stretch met)' if total_s <= STRETCH_S else ''}"
    )
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=3, help=f"prompts to decode (1..{len(PROMPTS)})")
    parser.add_argument("--tokens", type=int, default=12, help="tokens per prompt")
    args = parser.parse_args()
    return run(max(1, min(args.prompts, len(PROMPTS))), args.tokens)


if __name__ == "__main__":
    sys.exit(main())
