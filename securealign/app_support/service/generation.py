"""Cross-model generation for the page: checked inputs, models and map loaded under a progress bar, streamed
snapshots, and the encrypted head's cost per token.
"""

from __future__ import annotations

from collections.abc import Iterator

from securealign.app_support.service.checks import (
    ProgressFn,
    ServiceError,
    check_choice,
    check_flag,
    check_text,
    check_whole_number,
    loading,
    report,
)
from securealign.app_support.service.choices import catalogue, model_name

MAX_PROMPT_CHARS = 500
MAX_APP_NEW_TOKENS = 48  # the library allows 128; on 2 shared cores a live demo stays short


def generate(
    prompt: str,
    source: str,
    target: str,
    encrypted: bool = False,
    max_new_tokens: int = 16,
    progress: ProgressFn | None = None,
) -> Iterator[dict]:
    """Native source, native target and mapped continuations, streamed as snapshots (see
    :func:`securealign.generation.stream_compare`); models and the map load first, with progress."""
    prompt = check_text(
        prompt, what="prompt", limit=MAX_PROMPT_CHARS, empty="The prompt is empty: type the beginning of a sentence."
    )
    encrypted = check_flag("encrypt the vocabulary head", encrypted)
    max_new_tokens = check_whole_number("The number of new tokens", max_new_tokens, 1, MAX_APP_NEW_TOKENS)
    causal = [k for _, k in catalogue()["causal"]]
    check_choice("source language model", source, causal)
    check_choice("target language model", target, causal)
    if source == target:
        raise ServiceError("Source and target are the same model; pick two different language models.")
    from securealign.generation import load_pair, stream_compare
    from securealign.generation.mapping import fitted_map_path

    if fitted_map_path(source, target) is None:
        raise ServiceError(
            f"No map from {model_name(source)} to {model_name(target)} has been fitted yet, and fitting one takes "
            "about an hour on 2 CPU cores. Pick a precomputed pair (Gemma 3 and SmolLM2, either way round), or "
            f'fit it once with `python -m securealign generate --source {source} --target {target} "..."`.'
        )
    report(progress, 0.1, f"loading {model_name(source)} and {model_name(target)} and their map (first use only)")
    with loading(f"{model_name(source)} or {model_name(target)}"):
        pair = load_pair(source, target)
        if encrypted:
            report(progress, 0.6, "compiling the provider's encrypted vocabulary head (first use only)")
            pair.encrypted_head  # noqa: B018 - a cached property: build it now, under the progress bar
    report(progress, 1.0, "generating")
    yield from stream_compare(prompt, source, target, encrypted, max_new_tokens)


# seconds per token of the encrypted vocabulary head into each target, measured on 2 cores (docs/generation.md)
ENCRYPTED_SECONDS_PER_TOKEN = {"smollm2": 0.75, "gemma3": 2.6}


def encrypted_seconds_per_token(target: str) -> float | None:
    """What one encrypted token into ``target`` costs, to estimate a generation before it starts."""
    check_choice("target language model", target, [k for _, k in catalogue()["causal"]])
    return ENCRYPTED_SECONDS_PER_TOKEN.get(target)
