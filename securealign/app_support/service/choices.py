"""What can be chosen: the selectors' choices from the precomputed manifest (so the first page needs no model),
short display names, example queries and their true labels.
"""

from __future__ import annotations

import functools

from securealign.app_support.service.checks import ServiceError, check_choice
from securealign.datasets import load_task
from securealign.experiments import artifacts
from securealign.models.zoo import ModelSpec, get_spec, list_models

# the pair the demo tells its story with (app, warm-up, benchmark): the provider's head keeps 96.5% of its 97.2%
# through the map, and the first held-out examples are right on every path
STORY_TASK, STORY_CLIENT, STORY_PROVIDER = "bbc_news", "minilm", "mpnet"

METRIC_LABELS = {
    "cka": "linear CKA",
    "cka_debiased": "debiased CKA",
    "mutual_knn": "mutual k-NN (k = 10)",
    "svcca": "SVCCA",
}
PUBLIC_LABEL = "public corpus (Guardian headlines, film plots)"


def catalogue() -> dict:
    """Choices for every selector, from the precomputed manifest only (so the first page needs no model)."""
    try:
        manifest = artifacts.load_manifest()
    except artifacts.MissingArtifactError as exc:
        raise ServiceError(f"The precomputed results are missing ({exc}).") from exc
    return {
        "encoders": [(f"{model_name(k)}: {manifest['encoder_names'][k]}", k) for k in manifest["encoders"]],
        "tasks": [(manifest["task_titles"][t], t) for t in manifest["tasks"]],
        "similarity_datasets": [
            (manifest["task_titles"].get(d, PUBLIC_LABEL if d == "public" else d), d)
            for d in manifest["similarity_datasets"]
        ],
        "similarity_metrics": [(METRIC_LABELS.get(m, m), m) for m in manifest["similarity_metrics"]],
        "regimes": [(manifest["regime_descriptions"][r], r) for r in manifest["regimes"]],
        "demo_regime": manifest["demo_regime"],
        "causal": [(f"{model_name(spec.key)}: {spec.name}", spec.key) for spec in list_models("causal")],
        "created": manifest["created"],
    }


def check_task(task: str) -> str:
    return check_choice("task", task, [t for _, t in catalogue()["tasks"]])


def check_pair(source: str, target: str) -> tuple[ModelSpec, ModelSpec]:
    """Two different encoders of the catalogue whose pair the assets hold, resolved to their specs: the one look-up
    of each key on a call's path (the layers below take the spec)."""
    encoders = [k for _, k in catalogue()["encoders"]]
    check_choice("client model", source, encoders)
    check_choice("provider model", target, encoders)
    if source == target:
        raise ServiceError(
            "Client and provider use the same model here; pick two different models to see a map at work."
        )
    if (source, target) not in artifacts.pairs():
        partners = [model_name(t) for s, t in artifacts.pairs() if s == source]
        raise ServiceError(
            f"No precomputed map from {model_name(source)} to {model_name(target)}: embedding every task with both "
            f"did not fit the 2-core machine. {model_name(source)} pairs with: {', '.join(partners)}."
        )
    return get_spec(source), get_spec(target)


# short names the page uses everywhere (figures, headlines, tables, export): the zoo's full names do not fit a
# heatmap's axis or a phone's width; the selectors show both
SHORT_NAMES = {
    "minilm": "MiniLM",
    "mpnet": "mpnet",
    "paraphrase_onnx": "MiniLM-L3 (ONNX)",
    "wordllama": "WordLlama",
    "potion": "potion",
    "smollm2": "SmolLM2",
    "gemma3": "Gemma 3",
    "qwen05": "Qwen 0.5B",
    "qwen15": "Qwen 1.5B",
}


def model_name(key: str) -> str:
    return SHORT_NAMES[key] if key in SHORT_NAMES else get_spec(key).name


def examples(task: str) -> list[str]:
    """Held-out test texts of ``task``, one per class in turn, so a presenter can pick a realistic query (read
    from the assets with their labels, so the first page needs no dataset split)."""
    return [text for text, _ in artifacts.load_examples()[check_task(task)]]


@functools.cache
def true_labels(task: str) -> dict[str, str]:
    data = load_task(task)
    pairs = zip(data.test_texts, data.test_labels, strict=True)
    return {text.strip(): data.classes[int(label)] for text, label in pairs}


def true_label(task: str, text: str) -> str | None:
    """The class a held-out test text of ``task`` is labelled with, or None for any other text (a typed query).
    The examples' labels come with them; any other text is looked up in the task's test split."""
    if not isinstance(text, str):
        return None
    task = check_task(task)
    shown = {example.strip(): label for example, label in artifacts.load_examples()[task]}
    return shown.get(text.strip()) or true_labels(task).get(text.strip())
