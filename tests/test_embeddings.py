"""embed(): clear errors on bad input and a disk cache that makes the second call free."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import securealign.models.embeddings as embeddings
from securealign.models.embeddings import MAX_TEXT_CHARS, embed


@pytest.fixture()
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SECUREALIGN_CACHE", str(tmp_path))
    return tmp_path


def test_second_call_is_served_from_disk(fresh_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    computed: list[int] = []
    real_compute = embeddings._compute

    def counting_compute(model_key, pooling, texts, batch_size):  # the real model, counted
        computed.append(len(texts))
        return real_compute(model_key, pooling, texts, batch_size)

    monkeypatch.setattr(embeddings, "_compute", counting_compute)
    texts = ["An old man fishes at dawn.", "Markets slid after the report.", "An old man fishes at dawn."]
    first = embed("wordllama", texts)
    assert computed == [2]  # duplicates embedded once
    assert len(list((fresh_cache / "embeddings").glob("wordllama-mean-*.sqlite"))) == 1
    second = embed("wordllama", texts)
    assert computed == [2]  # nothing recomputed
    np.testing.assert_array_equal(first, second)
    third = embed("wordllama", texts + ["A brand new sentence."])
    assert computed == [2, 1]  # only the new text
    np.testing.assert_array_equal(third[:3], first)


def test_bad_input_gets_clear_errors() -> None:
    with pytest.raises(ValueError, match="no texts"):
        embed("minilm", [])
    with pytest.raises(ValueError, match="valid models: minilm"):
        embed("no-such-model", ["text"])
    with pytest.raises(ValueError, match="empty"):
        embed("minilm", ["fine", "   "])
    with pytest.raises(ValueError, match="limit"):
        embed("minilm", ["x" * (MAX_TEXT_CHARS + 1)])
    with pytest.raises(TypeError, match="list of strings"):
        embed("minilm", "a single string")
    with pytest.raises(ValueError, match="pooling"):
        embed("minilm", ["text"], pooling="last")


def test_causal_models_give_last_token_and_mean_pooled_states() -> None:
    texts = ["The cat sat on the mat.", "A kitten rested on the rug.", "Interest rates rose sharply."]
    for key, dim in (("smollm2", 576), ("gemma3", 640)):
        last, mean = embed(key, texts, pooling="last"), embed(key, texts, pooling="mean")
        assert last.shape == mean.shape == (3, dim)
        assert not np.allclose(last, mean)
        np.testing.assert_array_equal(embed(key, texts), last)  # causal LMs default to the last token
        unit = mean / np.linalg.norm(mean, axis=1, keepdims=True)
        assert unit[0] @ unit[1] > unit[0] @ unit[2]


def test_a_causal_encoders_vectors_are_its_mean_pooled_final_states() -> None:
    """What precompute embeds with a causal LM (mean pooling) is the model's own mean over the final (post-norm)
    states of the text's tokens, in the caller's order however the batches are sorted by length."""
    from securealign.models.causal_lm import load_causal_lm

    texts = [
        "Markets slid after the report.",
        "A long, rambling statement about taxes, jobs, the economy and what the other side would do to all of it.",
        "Yes.",
        "The film is a joy from start to finish.",
    ]
    for key in ("smollm2", "gemma3"):
        lm = load_causal_lm(key)
        vectors = embed(key, texts, pooling="mean", use_cache=False)
        np.testing.assert_array_equal(vectors, lm.pooled(texts, batch_size=32)["mean"])
        for text, vector in zip(texts, vectors, strict=True):
            states = lm.final_hidden(text)  # one text, no padding: the reference
            np.testing.assert_allclose(vector, states.hidden.mean(axis=0), rtol=1e-4, atol=2e-4)
