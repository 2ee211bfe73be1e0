"""`python -m securealign generate`: continue a prompt with a source model read through a target model's head,
streaming the mapped tokens, then printing both native continuations and the metrics."""

from __future__ import annotations

import argparse
import json
import sys

from securealign.generation.mapping import DEFAULT_CORPUS_SIZE
from securealign.generation.pair import DEFAULT_SOURCE, DEFAULT_TARGET
from securealign.generation.stream import MAX_NEW_TOKENS, stream_compare
from securealign.models.zoo import list_models


def main(argv: list[str]) -> int:
    causal = [spec.key for spec in list_models("causal")]
    parser = argparse.ArgumentParser(prog="python -m securealign generate", description=main.__doc__)
    parser.add_argument("prompt", help="the text to continue")
    parser.add_argument("--source", default=DEFAULT_SOURCE, choices=causal, help="the model that reads")
    parser.add_argument("--target", default=DEFAULT_TARGET, choices=causal, help="the model whose head writes")
    parser.add_argument(
        "--encrypted", action="store_true", help="evaluate map + LM head under CKKS encryption (full target vocabulary)"
    )
    parser.add_argument("--max-new-tokens", type=int, default=32, help=f"1..{MAX_NEW_TOKENS}")
    parser.add_argument(
        "--corpus-size",
        type=int,
        default=DEFAULT_CORPUS_SIZE,
        help="public-corpus texts to fit the map on (fitted once, then cached)",
    )
    args = parser.parse_args(argv)
    if not args.prompt.strip():
        parser.error("the prompt is empty")
    shown = 0
    print(
        f"mapped ({args.source} -> {args.target}{', encrypted' if args.encrypted else ''}): {args.prompt}",
        end="",
        flush=True,
    )
    snapshot: dict = {}
    for snapshot in stream_compare(
        args.prompt, args.source, args.target, args.encrypted, args.max_new_tokens, args.corpus_size
    ):
        mapped = snapshot["texts"]["mapped"]
        print(mapped[shown:], end="", flush=True)
        shown = len(mapped)
    print()
    for name in ("native_source", "native_target"):
        print(f"{name}: {args.prompt}{snapshot['texts'][name]}")
    report = {key: snapshot[key] for key in ("tokens_per_s", "compatibility", "map", "quality")}
    if "encrypted_step" in snapshot:
        report["encrypted_step"] = snapshot["encrypted_step"]
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0
