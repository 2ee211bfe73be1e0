"""The zoo's causal LMs load offline from their cached conversion and behave like language models."""

from __future__ import annotations

import dataclasses
import hashlib
import logging

import numpy as np
import pytest
import torch

from securealign.models.causal_lm import ModelIntegrityError, join_chunks, load_causal_lm, prepare
from securealign.models.zoo import UnknownModelError, get_spec, list_models

CAUSAL = [spec.key for spec in list_models("causal")]
# a fact both small models complete correctly with greedy decoding
PROMPT = "The capital of France is Paris. The capital of Germany is"


@pytest.fixture(scope="module", params=CAUSAL)
def lm(request):
    return load_causal_lm(request.param)


def test_dimensions_match_the_zoo(lm) -> None:
    spec = get_spec(lm.key)
    assert lm.dim == spec.dim
    assert lm.vocab_size == spec.options["vocab_size"]
    assert lm.lm_head().shape == (lm.vocab_size, lm.dim)
    states = lm.final_hidden("A short sentence about the sea.")
    assert states.hidden.shape == (len(states.ids), lm.dim)
    assert states.offsets.shape == (len(states.ids), 2)


def test_greedy_continues_with_sensible_text(lm) -> None:
    assert "Berlin" in lm.greedy(PROMPT, 4)
    if lm.key == "smollm2":
        assert "Paris" in lm.greedy("The capital of France is", 4)


def test_lm_head_consumes_the_final_hidden_state(lm) -> None:
    """final_hidden is post-norm: hidden @ lm_head^T reproduces the model's own logits."""
    text = "Rain fell on the quiet town all night"
    logits = lm.model(input_ids=torch.from_numpy(lm.tokens(text)[0])[None]).logits[0].detach().float().numpy()
    mine = lm.logits(lm.final_hidden(text).hidden)
    if lm.model.dtype == torch.float32:
        assert np.allclose(mine, logits, atol=1e-3 * np.abs(logits).max())
        assert (mine.argmax(1) == logits.argmax(1)).all()
        return
    # a bf16 model's own logits are rounded to 8 significant bits; lm.logits computes in float32
    eps = torch.finfo(lm.model.dtype).eps
    assert np.allclose(mine, logits, rtol=eps, atol=1e-3 * np.abs(logits).max())
    top = logits.max(1)
    # the same next token, up to ties that the rounding creates
    assert (logits[np.arange(len(logits)), mine.argmax(1)] >= top - eps * np.abs(top)).all()


@pytest.mark.slow  # over 20 s on 2 cores: not in the fast tier
def test_deterministic_and_batch_consistent(lm) -> None:
    texts = ["The market opened higher today.", "A dog", "Rivers flow to the sea, slowly and without end."]
    first, second = lm.final_hidden(texts[0]), lm.final_hidden(texts[0])
    assert np.array_equal(first.hidden, second.hidden)
    assert lm.greedy(texts[0], 5) == lm.greedy(texts[0], 5)
    pooled = lm.pooled(texts, batch_size=2)
    assert pooled["last"].shape == pooled["mean"].shape == (3, lm.dim)
    assert pooled["last"].dtype == np.float32
    for text, last, mean in zip(texts, pooled["last"], pooled["mean"], strict=False):
        alone = lm.final_hidden(text).hidden  # padding in a batch must not change a text's states
        assert np.allclose(last, alone[-1], atol=1e-3)
        assert np.allclose(mean, alone.mean(0), atol=1e-3)


def test_offsets_cover_the_text(lm) -> None:
    text = "Tokenizers split words like unbelievably differently."
    states = lm.final_hidden(text)
    real = states.offsets[~states.special]
    assert real[0, 0] == 0 and real[-1, 1] == len(text)
    assert (np.diff(real[:, 1]) > 0).all()


def test_prepare_reuses_the_cached_copy(lm, caplog: pytest.LogCaptureFixture) -> None:
    folder = prepare(lm.key)  # converted (at the latest) when the fixture loaded the model
    assert (folder / "config.json").exists() and any(folder.glob("*.safetensors"))
    written = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}
    with caplog.at_level(logging.INFO, logger="securealign.models.causal_lm"):
        assert prepare(lm.key) == folder
    assert not caplog.records  # no conversion started
    assert {path.name: path.stat().st_mtime_ns for path in folder.iterdir()} == written  # nothing rewritten


def test_bad_input_gives_clear_errors() -> None:
    lm = load_causal_lm(CAUSAL[0])
    with pytest.raises(ValueError, match="non-empty"):
        lm.final_hidden("   ")
    with pytest.raises(ValueError, match="at most"):
        lm.final_hidden("word " * 5000)
    with pytest.raises(ValueError, match="max_new_tokens"):
        lm.greedy("Hello", 0)
    with pytest.raises(ValueError, match="non-empty"):
        lm.pooled([])
    with pytest.raises(ValueError, match="causal LMs are"):
        load_causal_lm("minilm")
    with pytest.raises(UnknownModelError, match="valid models"):
        load_causal_lm("gpt-17")


def test_chunked_weights_join_to_the_pinned_hash(tmp_path) -> None:
    spec = get_spec("qwen05")
    joined = join_chunks(spec, tmp_path / "model.gguf")
    assert joined.stat().st_size == 491_400_064
    with joined.open("rb") as f:
        assert hashlib.file_digest(f, "sha256").hexdigest() == spec.options["sha256"]


def test_a_join_with_another_hash_is_refused(tmp_path) -> None:
    """A join missing chunks (as a truncated, swapped or substituted package would give) is refused, and leaves
    no file that a later run could take for the model."""
    spec = get_spec("qwen05")
    for chunks in (spec.options["chunks"][:1], spec.options["chunks"][1::-1]):
        broken = dataclasses.replace(spec, options={**spec.options, "chunks": chunks})
        with pytest.raises(ModelIntegrityError, match="SHA256"):
            join_chunks(broken, tmp_path / "model.gguf")
        assert not any(tmp_path.iterdir())
