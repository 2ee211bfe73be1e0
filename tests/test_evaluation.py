"""The experiment definitions on real (fast) encoders, and the committed assets the app starts from."""

from __future__ import annotations

from itertools import permutations

import numpy as np
import pytest

from securealign.artifacts import (MissingArtifactError, load_head, load_manifest, load_map, load_ood_scores,
                                   load_results, load_similarity)
from securealign.datasets import load_ood_texts, load_public_corpus, load_task
from securealign.embeddings import embed
from securealign.evaluation import (MAP_KINDS, REGIMES, ModelEmbeddings, evaluate_pair, fit_heads, mcnemar_p,
                                    regime_pairs)
from securealign.paths import assets_dir
from securealign.precompute import main as precompute_main
from securealign.report import render, sampling_note
from securealign.zoo import get_spec


def _embeddings(key: str, task_name: str) -> ModelEmbeddings:
    task = load_task(task_name)
    return ModelEmbeddings(embed(key, task.train_texts), embed(key, task.test_texts),
                           embed(key, load_ood_texts(task_name, 300)), embed(key, load_public_corpus(1500)))


def test_regimes_use_the_documented_pairs() -> None:
    a, b = _embeddings("potion", "debates"), _embeddings("wordllama", "debates")
    zb, za = regime_pairs("public+64", a, b)
    assert len(zb) == len(za) == len(a.public) + 64
    np.testing.assert_array_equal(zb[-64:], a.train[:64])
    assert regime_pairs("task", a, b)[0] is a.train
    with pytest.raises(ValueError, match="valid regimes"):
        regime_pairs("everything", a, b)


def test_evaluate_pair_on_real_embeddings() -> None:
    task = load_task("bbc_news")
    embs = {key: _embeddings(key, "bbc_news") for key in ("potion", "wordllama")}
    heads = fit_heads(embs, task.train_labels, task.classes)
    rows, maps = evaluate_pair("bbc_news", "potion", "wordllama", embs["potion"], embs["wordllama"], heads,
                               (task.train_labels, task.test_labels))
    assert {(r["regime"], r["map"]) for r in rows} == {(g, "ridge") for g in REGIMES} | {("task", k) for k in MAP_KINDS}
    by = {(r["regime"], r["map"]): r for r in rows}
    task_row = by[("task", "ridge")]
    assert task_row["baseline_acc"] > 0.9 and task_row["mapped_acc"] > 0.8
    # the paper's ordering: task-supervised >= public-only, and in-distribution samples help the public map
    assert task_row["mapped_acc"] >= by[("public", "ridge")]["mapped_acc"] - 0.01
    assert by[("public+128", "ridge")]["mapped_acc"] >= by[("public", "ridge")]["mapped_acc"] - 0.02
    assert set(maps) == set(REGIMES) and maps["task"].W.shape == (64, 256)


def test_committed_assets_are_complete_and_consistent() -> None:
    manifest = load_manifest()
    encoders, tasks = manifest["encoders"], manifest["tasks"]
    assert len(encoders) >= 3 and set(tasks) == {"rotten_tomatoes", "bbc_news", "debates"}
    assert manifest["bytes"] < 50e6
    rows = load_results()
    covered = {(r["task"], r["source"], r["target"], r["regime"]) for r in rows if r["map"] == "ridge"}
    for task in tasks:
        for source, target in permutations(encoders, 2):
            assert {(task, source, target, g) for g in manifest["regimes"]} <= covered
    task = tasks[0]
    source, target = encoders[0], encoders[1]
    affine, head = load_map(task, source, target), load_head(task, target)
    assert affine.W.shape == (get_spec(source).dim, get_spec(target).dim)
    assert head.V.shape[0] == get_spec(target).dim and head.classes == load_task(task).classes
    scores = load_ood_scores(task, source, target)
    assert set(scores) == {"native_in", "native_out", "mapped_in", "mapped_out"}
    for dataset in manifest["similarity_datasets"]:
        sim = load_similarity(dataset)
        matrix = np.array(sim["matrices"]["cka"])
        np.testing.assert_allclose(matrix, matrix.T, atol=1e-4)
        np.testing.assert_allclose(np.diag(matrix), 1.0, atol=1e-3)
    with pytest.raises(MissingArtifactError, match="precompute"):
        load_map(task, source, "no-such-model")
    with pytest.raises(MissingArtifactError, match="only for regimes"):
        load_map(task, source, target, regime="task")
    assert set(manifest["task_sizes"]) == set(tasks) and manifest["task_sizes"]["rotten_tomatoes"]["train"] == 2000
    assert set(manifest["similarity_models"]["public"]) >= set(encoders)
    assert "Table 1" in render() and "Table 2" in render()


def test_mcnemar_counts_only_the_texts_where_the_two_disagree() -> None:
    both = np.ones(500, dtype=bool)
    assert mcnemar_p(both, both) == 1.0  # identical predictions: no evidence of a difference
    native, mapped = both.copy(), both.copy()
    mapped[:20] = False  # 20 texts lost, none gained: p = 2 * 0.5**20
    assert mcnemar_p(native, mapped) == pytest.approx(2 * 0.5**20)
    native[20:30] = False  # 10 gained back: 20 vs 10 discordant, not significant at 0.05
    assert 0.05 < mcnemar_p(native, mapped) < 0.15


def test_sampling_note_gives_the_wilson_interval() -> None:
    """750 of 1,000 right: the Wilson 95% interval is 72.2%-77.6% (textbook value), about ±2.7 points."""
    note = sampling_note(0.75, 1000)
    assert "72.2-77.6" in note and "±2.7" in note


def test_committed_head_and_map_reproduce_on_fresh_embeddings() -> None:
    """The stored demo map and head give the stored accuracy class on newly computed embeddings."""
    manifest = load_manifest()
    task = load_task("bbc_news")
    head, affine = load_head("bbc_news", "wordllama"), load_map("bbc_news", "potion", "wordllama")
    mapped = head.accuracy(affine.apply(embed("potion", task.test_texts)), task.test_labels)
    row = next(r for r in load_results() if (r["task"], r["source"], r["target"], r["regime"], r["map"])
               == ("bbc_news", "potion", "wordllama", manifest["demo_regime"], "ridge"))
    assert mapped == pytest.approx(row["mapped_acc"], abs=0.01)  # float16 storage costs at most a point


@pytest.mark.parametrize("argv, message", [
    (["--encoders", "minilm"], "at least two distinct"),
    (["--encoders", "minilm", "smollm2"], "at least two distinct"),
    (["--encoders", "minilm", "no-such-model"], "no-such-model"),
    (["--similarity-texts", "5000"], "at most --public-texts"),
])
def test_precompute_refuses_bad_options_before_touching_assets(argv: list[str], message: str,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    manifest_file = assets_dir() / "manifest.json"
    before = manifest_file.read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        precompute_main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert manifest_file.read_bytes() == before
