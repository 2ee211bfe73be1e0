"""Cross-model generation for the page: checked inputs, models and map loaded under a progress bar, streamed
snapshots, the encrypted head's cost per token, and the story's fifth step (one pair that works beside one that
drifts, each with its measured figures).
"""

from __future__ import annotations

import functools
import threading
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
from securealign.experiments import artifacts

MAX_PROMPT_CHARS = 500
MAX_APP_NEW_TOKENS = 48  # the library allows 128; on 2 shared cores a live demo stays short

# The story's pairs (source, target), the one to show first leading: a pair whose tokenizers agree, then the zoo's
# Gemma 3 -> SmolLM2, whose mapped text drifts. The compatible pair joins when its models and maps are in the zoo.
STORY_PAIRS = (("qwen15", "qwen05"), ("gemma3", "smollm2"))
# a held-out prompt: the first words of a public-corpus text after the 4,000 every generation map is fitted on
STORY_PROMPT = "Morrison government flags incentives for Australians to take"
STORY_NEW_TOKENS = 12  # the encrypted stream, after the plaintext ones, costs seconds per token (~8 s into Qwen 0.5B)


def _check_pair(source: str, target: str) -> None:
    causal = [k for _, k in catalogue()["causal"]]
    check_choice("source language model", source, causal)
    check_choice("target language model", target, causal)
    if source == target:
        raise ServiceError("Source and target are the same model; pick two different language models.")
    from securealign.generation.mapping import fitted_map_path

    if fitted_map_path(source, target) is None:
        raise ServiceError(
            f"No map from {model_name(source)} to {model_name(target)} has been fitted yet, and fitting one takes "
            "about an hour on 2 CPU cores. Pick a precomputed pair (Gemma 3 and SmolLM2, or the two Qwen models, "
            "either way round), or "
            f'fit it once with `python -m securealign generate --source {source} --target {target} "..."`.'
        )


def _load(source: str, target: str, encrypted: bool, progress: ProgressFn | None) -> None:
    """The pair, its map and (if asked) its encrypted head, under the progress bar; any other pair is let go."""
    from securealign.generation import load_pair_alone
    from securealign.generation.quality import compatibility

    report(progress, 0.1, f"loading {model_name(source)} and {model_name(target)} and their map (first use only)")
    with loading(f"{model_name(source)} or {model_name(target)}"):
        pair = load_pair_alone(source, target)
        compatibility(source, target)
        if encrypted:
            report(progress, 0.6, "compiling the provider's encrypted vocabulary head (first use only)")
            pair.encrypted_head  # noqa: B018 - a cached property: build it now, under the progress bar
    report(progress, 1.0, "generating")


def _check_prompt(prompt: str) -> str:
    return check_text(
        prompt, what="prompt", limit=MAX_PROMPT_CHARS, empty="The prompt is empty: type the beginning of a sentence."
    )


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
    prompt = _check_prompt(prompt)
    encrypted = check_flag("encrypt the vocabulary head", encrypted)
    max_new_tokens = check_whole_number("The number of new tokens", max_new_tokens, 1, MAX_APP_NEW_TOKENS)
    _check_pair(source, target)
    _load(source, target, encrypted, progress)
    from securealign.generation import stream_compare

    yield from stream_compare(prompt, source, target, encrypted, max_new_tokens)


def story_pair_key(source: str, target: str) -> str:
    return f"{source}->{target}"


def story_generate(pair: str, prompt: str = STORY_PROMPT, progress: ProgressFn | None = None) -> Iterator[dict]:
    """The story's fifth step: one of :data:`STORY_PAIRS` (``"source->target"``) continues ``prompt`` four ways,
    the source's own, the target's own, mapped in plaintext and mapped under encryption (after the plaintext
    streams), :data:`STORY_NEW_TOKENS` tokens each; each snapshot also carries the pair's measured figures."""
    keys = {story_pair_key(*p): p for p in STORY_PAIRS}
    source, target = keys[check_choice("pair", pair, list(keys))]
    prompt = _check_prompt(prompt)
    _check_pair(source, target)
    # the encrypted head is not waited for here: the plaintext streams need only the models and the map, and the
    # head (compiled by the warm-up, else on first use) is needed only once they end
    _load(source, target, False, progress)
    from securealign.generation import stream_compare

    figures = pair_figures(source, target)
    # the encrypted stream follows the plaintext ones: its measured cost per token is shown before it starts
    estimate = {"seconds_per_token": ENCRYPTED_SECONDS_PER_TOKEN.get(target), "tokens": STORY_NEW_TOKENS}
    for snapshot in stream_compare(prompt, source, target, max_new_tokens=STORY_NEW_TOKENS, encrypted_beside=True):
        yield snapshot | {"pair_figures": figures, "encrypted_estimate": estimate}


@functools.cache
def pair_figures(source: str, target: str) -> dict:
    """A story pair's measured figures, read from committed files (no model loads): from its map, the exact token
    match rate on the map's public texts and the held-out fit (R², top-1 agreement of the mapped next token with
    the target's own); from the predictor study, when it has the pair, top-5 agreement, the agreement of greedy
    continuations with the target's own and their median perplexity under the target beside its own text's."""
    from securealign.generation.mapping import HiddenMap, fitted_map_path

    path = fitted_map_path(source, target)
    if path is None:
        raise ServiceError(f"The map from {model_name(source)} to {model_name(target)} is missing.")
    metrics = HiddenMap.load(path).metrics
    figures = {
        "pair": story_pair_key(source, target),
        "source_name": model_name(source),
        "target_name": model_name(target),
        "exact_match_rate": metrics["exact_match_rate"],
        "next_token_agreement": metrics["next_token_agreement"],
        "r2": metrics["r2"],
        "held_out_tokens": metrics["held_out_tokens"],
        "study": None,
    }
    study = artifacts.load_predictor_study() or {}
    row = next((p for p in study.get("pairs", []) if (p["source"], p["target"]) == (source, target)), None)
    if row is not None:
        figures["study"] = {
            "top1": row["default"]["top1"],
            "top5": row["default"]["top5"],
            "continuation_agreement": row["continuation"]["agreement"],
            "prompts": row["continuation"]["prompts"],
            "new_tokens": study["new_tokens"],
            "ppl_mapped_median": row["continuation"]["ppl_mapped_median"],
            "ppl_native_median": row["native_target_ppl_median"],
        }
    return figures


def story_pairs() -> list[dict]:
    """Every story pair's measured figures, the pair to show first leading (the page's switch and table)."""
    return [pair_figures(*p) for p in STORY_PAIRS]


_warming: list[threading.Thread] = []


def warm_story_pair() -> None:
    """Start loading the story's first pair with its encrypted head in a background thread, once per process.

    Called when a visitor reaches the story's fourth step rather than at start-up: the pair takes about a minute of
    CPU and up to 14 GB, which would slow the first page and query of every start (and every test that starts the
    app), while a visitor on step 4 is some seconds from step 5. A click that comes first waits for the same load.
    """
    if not _warming:
        _warming.append(threading.Thread(target=_load, args=(*STORY_PAIRS[0], True, None), daemon=True))
        _warming[0].start()


# seconds per token of the encrypted decoding into each target (source forward + round trip), measured on 2 cores:
# SmolLM2, Gemma 3 and Qwen 0.5B (from Qwen 1.5B, the power-of-two layout) by benchmarks/bench_generation.py
# (docs/generation.md); Qwen 1.5B (from Qwen 0.5B) in the story step's functional run (docs/app.md, at nice 19
# beside other jobs, load 2.6-3.5, before the power-of-two layout)
ENCRYPTED_SECONDS_PER_TOKEN = {"smollm2": 0.75, "gemma3": 2.6, "qwen05": 5.9, "qwen15": 3.8}


def encrypted_seconds_per_token(target: str) -> float | None:
    """What one encrypted token into ``target`` costs, to estimate a generation before it starts."""
    check_choice("target language model", target, [k for _, k in catalogue()["causal"]])
    return ENCRYPTED_SECONDS_PER_TOKEN.get(target)
