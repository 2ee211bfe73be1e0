"""The zoo loads every encoder for real and each behaves like a sentence encoder."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from transformers import AutoTokenizer

from securealign.models.causal_lm import prepare
from securealign.models.embeddings import embed
from securealign.models.encoders import load_encoder
from securealign.models.zoo import MODELS, UnknownModelError, get_spec, is_installed, list_models

ENCODERS = [spec.key for spec in list_models("encoder")]


def test_zoo_covers_the_required_models() -> None:
    encoders, causal = list_models("encoder"), list_models("causal")
    assert len(encoders) >= 4
    assert len({spec.family for spec in encoders}) >= 3
    assert {spec.dim for spec in encoders} >= {384, 768, 256}
    assert len(causal) >= 2
    assert all(spec.hub_id and spec.licence and spec.packages for spec in MODELS.values())


def test_the_classification_zoo_pools_causal_lms_by_mean() -> None:
    """A causal LM in the classification zoo is embedded by the app's query path with its default pooling, which
    must be the mean pooling its committed rows were computed with (precompute's CAUSAL_POOLING)."""
    from securealign.experiments.precompute import CAUSAL_POOLING

    assert all(spec.pooling == "mean" for spec in MODELS.values() if spec.classification and spec.kind == "encoder")
    for spec in MODELS.values():
        if spec.classification and spec.kind == "causal":
            assert spec.pooling == CAUSAL_POOLING, spec.key
    assert len([spec for spec in MODELS.values() if spec.classification]) >= 3


def test_unknown_model_names_the_valid_choices() -> None:
    with pytest.raises(UnknownModelError) as err:
        get_spec("gpt-17")
    assert all(key in str(err.value) for key in MODELS)
    with pytest.raises(ValueError, match="valid kinds"):
        list_models("vision")


def test_cli_lists_every_model_as_installed() -> None:
    out = subprocess.run([sys.executable, "-m", "securealign", "models"], capture_output=True, text=True, check=True)
    for spec in MODELS.values():
        line = next(line for line in out.stdout.splitlines() if line.startswith(spec.key + " "))
        assert str(spec.dim) in line and spec.family in line and line.rstrip().endswith("yes")


@pytest.mark.parametrize("key", ENCODERS)
def test_encoder_dimension_determinism_and_semantics(key: str) -> None:
    assert is_installed(key)
    texts = [
        "A cat is sitting on the mat.",
        "A kitten sits on a rug.",
        "The central bank raised interest rates to fight inflation.",
    ]
    encoder = load_encoder(key)
    first = encoder.encode(texts)
    second = encoder.encode(list(reversed(texts)))[::-1]
    assert first.shape == (3, get_spec(key).dim) and first.dtype == np.float32
    np.testing.assert_allclose(first, second, atol=1e-5)
    unit = first / np.linalg.norm(first, axis=1, keepdims=True)
    paraphrase, unrelated = unit[0] @ unit[1], unit[0] @ unit[2]
    assert paraphrase > unrelated + 0.2, (key, paraphrase, unrelated)


def test_causal_model_is_not_an_encoder() -> None:
    with pytest.raises(ValueError, match="not a sentence encoder"):
        load_encoder("smollm2")


def test_embed_matches_direct_encoding() -> None:
    texts = ["Stocks rallied on Friday.", "The striker scored twice."]
    np.testing.assert_allclose(embed("minilm", texts), load_encoder("minilm").encode(texts), atol=1e-5)


def test_the_qwen_pair_shares_one_tokenizer() -> None:
    """The compatible pair of the predictor study: two sizes of one family, so every token id means the same."""
    small, large = (AutoTokenizer.from_pretrained(prepare(key)) for key in ("qwen05", "qwen15"))
    assert small.get_vocab() == large.get_vocab()
    for text in ("The central bank raised interest rates.", "déjà vu — naïve café 🙂", "def f(x):\n    return x"):
        assert small(text)["input_ids"] == large(text)["input_ids"]
