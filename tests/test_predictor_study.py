"""The predictor study's machinery with real models: states cached once give exactly the maps a live fit gives;
the committed study covers every ordered causal pair and `report` prints it; the Qwen pair's maps are committed."""

from __future__ import annotations

from itertools import permutations

import numpy as np
import pytest

from securealign.experiments.artifacts import load_predictor_study
from securealign.experiments.predictor_study import fit_committed_map
from securealign.experiments.report import render
from securealign.generation.mapping import HiddenMap, default_corpus, fit_hidden_map, fitted_map_path
from securealign.generation.state_cache import extract_states, load_states
from securealign.models.causal_lm import load_causal_lm
from securealign.models.zoo import get_spec, list_models


@pytest.mark.slow  # two models over 30 texts, twice
def test_cached_states_give_the_live_fit() -> None:
    texts = default_corpus(30)
    for key in ("gemma3", "smollm2"):
        extract_states(load_causal_lm(key), texts)
    source, target = load_states("gemma3", texts), load_states("smollm2", texts)
    alone = load_causal_lm("gemma3").final_hidden(texts[3])
    cached = source.text(3)
    assert np.array_equal(cached.ids, alone.ids) and np.array_equal(cached.offsets, alone.offsets)
    assert np.allclose(cached.hidden, alone.hidden, atol=1e-3)
    assert source.text(3, "penultimate").hidden.shape == alone.hidden.shape
    assert not np.allclose(source.text(3, "penultimate").hidden, alone.hidden)  # another layer, not a copy
    from_cache = fit_committed_map(source, target, load_causal_lm("smollm2").lm_head())
    live = fit_hidden_map("gemma3", "smollm2", texts)
    np.testing.assert_allclose(from_cache.W, live.W, atol=1e-4)
    for name in ("r2", "next_token_agreement", "exact_match_rate", "train_tokens"):
        assert from_cache.metrics[name] == pytest.approx(live.metrics[name], abs=1e-4), name
    with pytest.raises(ValueError, match="valid layers"):
        source.text(0, "first")
    with pytest.raises(FileNotFoundError, match="no cached states"):
        load_states("gemma3", texts[:29])


def test_the_study_covers_every_ordered_causal_pair_and_report_prints_it() -> None:
    study = load_predictor_study()
    assert study is not None and study["complete"], "assets/generation/predictor_study.json is committed, complete"
    keys = [spec.key for spec in list_models("causal")]
    assert {(p["source"], p["target"]) for p in study["pairs"]} == set(permutations(keys, 2))
    for pair in study["pairs"]:
        assert 0 < pair["exact_match_rate"] <= 1 and 0 < pair["vocabulary_jaccard"] <= 1
        assert 0 <= pair["default"]["top1"] <= pair["default"]["top5"] <= 1
        assert pair["continuation"]["prompts"] == study["continuation_prompts"]
    text = render()
    assert "Table 4 " in text and "Table 4b" in text
    assert all(f"{s} -> {t}" in text for s, t in permutations(keys, 2))


def test_the_qwen_pair_has_committed_maps_in_both_directions() -> None:
    for source, target in permutations(("qwen05", "qwen15")):
        path = fitted_map_path(source, target)
        assert path is not None and path.parent.name == "generation"
        fit = HiddenMap.load(path)
        assert fit.metrics["texts"] == 4000 and fit.metrics["exact_match_rate"] == 1.0
        assert fit.W.shape == (get_spec(source).dim, get_spec(target).dim)
