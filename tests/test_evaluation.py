"""The experiment definitions on real (fast) encoders, and the committed assets the app starts from."""

from __future__ import annotations

from itertools import permutations

import numpy as np
import pytest

from securealign.datasets import EXAMPLES_PER_TASK, example_queries, load_ood_texts, load_public_corpus, load_task
from securealign.experiments import artifacts
from securealign.experiments.artifacts import (
    MissingArtifactError,
    load_examples,
    load_head,
    load_manifest,
    load_map,
    load_ood_scores,
    load_results,
    load_seed_results,
    load_similarity,
)
from securealign.experiments.evaluation import (
    MAP_KINDS,
    REGIMES,
    ModelEmbeddings,
    evaluate_pair,
    fit_heads,
    mcnemar_p,
    probe_accuracy,
    regime_pairs,
    reseeded,
)
from securealign.experiments.precompute import main as precompute_main
from securealign.experiments.report import render, sampling_note
from securealign.models.embeddings import embed
from securealign.models.zoo import get_spec, list_models
from securealign.paths import assets_dir


def _embeddings(key: str, task_name: str) -> ModelEmbeddings:
    task = load_task(task_name)
    return ModelEmbeddings(
        embed(key, task.train_texts),
        embed(key, task.test_texts),
        embed(key, load_ood_texts(task_name, 300)),
        embed(key, load_public_corpus(1500)),
    )


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
    rows, maps = evaluate_pair(
        "bbc_news",
        "potion",
        "wordllama",
        embs["potion"],
        embs["wordllama"],
        heads,
        (task.train_labels, task.test_labels),
    )
    assert {(r["regime"], r["map"]) for r in rows} == {(g, "ridge") for g in REGIMES} | {("task", k) for k in MAP_KINDS}
    by = {(r["regime"], r["map"]): r for r in rows}
    task_row = by[("task", "ridge")]
    assert task_row["baseline_acc"] > 0.9 and task_row["mapped_acc"] > 0.8
    # the paper's ordering: task-supervised >= public-only, and in-distribution samples help the public map.
    # Measured (1,500 public texts): public 0.663, public+64 0.710, public+128 0.768, task 0.894; a regime that
    # ignored its in-distribution texts would score the public-only figure and fail here.
    public = by[("public", "ridge")]["mapped_acc"]
    assert task_row["mapped_acc"] >= public + 0.1
    assert by[("public+64", "ridge")]["mapped_acc"] >= public + 0.02
    assert by[("public+128", "ridge")]["mapped_acc"] >= public + 0.05
    assert set(maps) == set(REGIMES) and maps["task"].W.shape == (64, 256)
    # baselines on the same texts. Shuffled pairs: the majority class's share (sports, 24%), measured 0.237-0.241
    for regime in REGIMES:
        assert by[(regime, "ridge")]["shuffled_acc"] < 0.3 < by[(regime, "ridge")]["mapped_acc"] - 0.3
    assert by[("public", "ridge")]["probe_distilled_acc"] is None and by[("public", "ridge")]["labels_revealed"] == 0
    # the client's probe on all training texts with true labels is the client's own head (0.896)
    assert task_row["probe_true_acc"] == task_row["source_acc"] and task_row["labels_revealed"] == 1479
    few = by[("public+128", "ridge")]
    # measured: probe on 128 provider-labelled texts 0.825, on their true labels 0.822, map 0.768. The provider's
    # head is right on 96% of them, so its labels teach almost what the true ones do; on BBC they beat the map
    assert few["probe_distilled_acc"] > few["mapped_acc"] + 0.02 and few["labels_revealed"] == 128
    assert abs(few["probe_distilled_acc"] - few["probe_true_acc"]) < 0.03


def test_reseeded_draws_new_splits_of_the_same_texts() -> None:
    """Seed 0 is the committed run; another seed re-splits the same labeled rows with the same sizes and class
    balance, draws another public subset from the pool, and keeps the OOD texts."""
    task = load_task("debates")
    emb = _embeddings("potion", "debates")
    pool = {"potion": embed("potion", load_public_corpus(2000))}
    labels = (task.train_labels, task.test_labels)
    same, same_labels = reseeded({"potion": emb}, labels, pool, 1500, 0)
    np.testing.assert_array_equal(same["potion"].test, emb.test)
    np.testing.assert_array_equal(same["potion"].public, pool["potion"][:1500])
    assert same_labels is labels
    other, (train_y, test_y) = reseeded({"potion": emb}, labels, pool, 1500, 3)
    rows = np.vstack([emb.train, emb.test])
    assert other["potion"].train.shape == emb.train.shape and len(test_y) == len(task.test_labels)
    assert not np.array_equal(other["potion"].test, emb.test) and other["potion"].ood is emb.ood
    # every row of the new split is a row of the old data with its own label, and none is in both halves
    index = {r.tobytes(): y for r, y in zip(rows, np.concatenate(labels), strict=False)}
    assert all(index[r.tobytes()] == y for r, y in zip(other["potion"].train, train_y, strict=False))
    assert not {r.tobytes() for r in other["potion"].train} & {r.tobytes() for r in other["potion"].test}
    assert abs(train_y.mean() - task.train_labels.mean()) < 0.01  # stratified
    assert not np.array_equal(other["potion"].public, same["potion"].public) and len(other["potion"].public) == 1500


def test_probe_accuracy_with_a_single_seen_class_predicts_it() -> None:
    y_test = np.array([0, 1, 1, 2])
    assert probe_accuracy(np.ones((3, 2)), np.array([1, 1, 1]), np.zeros((4, 2)), y_test) == 0.5


def test_committed_examples_are_the_held_out_texts_with_their_labels() -> None:
    """The app's example queries come from assets/examples.json so its first page needs no dataset split; they
    must be exactly what the task's test split gives, one per class in turn, each with its true label."""
    committed = load_examples()
    assert set(committed) == set(load_manifest()["tasks"])
    for task, rows in committed.items():
        data = load_task(task)
        assert rows == example_queries(data) and len(rows) == EXAMPLES_PER_TASK
        assert load_manifest()["task_sizes"][task]["test"] == len(data.test_texts)  # the fit estimate reads it
        test_labels = {text: data.classes[int(y)] for text, y in zip(data.test_texts, data.test_labels, strict=True)}
        assert all(test_labels[text] == label for text, label in rows)
        assert [label for _, label in rows][: len(data.classes)] == data.classes


def test_committed_assets_are_complete_and_consistent() -> None:
    manifest = load_manifest()
    encoders, tasks = manifest["encoders"], manifest["tasks"]
    assert len(encoders) >= 3 and set(tasks) == {"rotten_tomatoes", "bbc_news", "debates"}
    assert manifest["bytes"] < 50e6
    rows = load_results()
    covered = {(r["task"], r["source"], r["target"], r["regime"]) for r in rows if r["map"] == "ridge"}
    # the assets hold exactly the classification zoo (a causal LM marked for it must have its pairs committed):
    # every pair of its sentence encoders, and each added model's pairs with its partners, in both directions
    assert set(encoders) == {spec.key for spec in list_models() if spec.classification}
    pairs = artifacts.pairs()
    sentence = [k for k in encoders if get_spec(k).kind == "encoder"]
    assert set(permutations(sentence, 2)) <= set(pairs) and len(pairs) == len(set(pairs))
    assert all((target, source) in pairs for source, target in pairs)
    assert all(any(key in pair for pair in pairs) for key in encoders)
    assert {(r["task"], r["source"], r["target"]) for r in rows} == {(t, s, g) for t in tasks for s, g in pairs}
    for task in tasks:
        for source, target in pairs:
            assert {(task, source, target, g) for g in manifest["regimes"]} <= covered
            assert (assets_dir() / "maps" / manifest["demo_regime"] / task / f"{source}__{target}.npz").is_file()
            assert (assets_dir() / "ood" / task / f"{source}__{target}.npz").is_file()
        for key in encoders:
            assert load_head(task, key).V.shape[0] == get_spec(key).dim
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
    for dataset in manifest["similarity_datasets"]:
        assert set(load_similarity(dataset)["keys"]) >= set(encoders)
    text = render()
    assert all(f"Table {n}" in text for n in ("1 ", "1b", "2 ", "3 ")) and "0.595-0.881" in text
    # seeds: every seed of every pair the assets hold, the causal LMs' included (the README's means are over them,
    # per kind of pair), and seed 0 is the committed run itself
    seeds = load_seed_results()
    assert [tuple(pair) for pair in manifest["seed_pairs"]] == pairs
    assert {(r["task"], r["source"], r["target"], r["regime"], r["seed"]) for r in seeds} == {
        (t, s, g, regime, seed)
        for t in tasks
        for s, g in pairs
        for regime in manifest["regimes"]
        for seed in range(manifest["seeds"])
    }
    assert len(seeds) == len(tasks) * len(pairs) * len(manifest["regimes"]) * manifest["seeds"]  # no duplicates
    committed = {
        (r["task"], r["source"], r["target"], r["regime"]): r["mapped_acc"] for r in rows if r["map"] == "ridge"
    }
    for r in seeds:
        if r["seed"] == 0:
            assert r["mapped_acc"] == committed[(r["task"], r["source"], r["target"], r["regime"])]


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
    row = next(
        r
        for r in load_results()
        if (r["task"], r["source"], r["target"], r["regime"], r["map"])
        == ("bbc_news", "potion", "wordllama", manifest["demo_regime"], "ridge")
    )
    assert mapped == pytest.approx(row["mapped_acc"], abs=0.01)  # float16 storage costs at most a point


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--encoders", "minilm"], "at least two distinct"),
        (["--encoders", "minilm", "minilm"], "at least two distinct"),
        (["--add", "minilm"], "already in the assets"),
        (["--add", "qwen05"], "classification=True"),
        (["--add", "smollm2", "--partners", "no-such-model"], "no-such-model"),
        (["--encoders", "minilm", "no-such-model"], "no-such-model"),
        (["--similarity-texts", "5000"], "at most --public-texts"),
    ],
)
def test_precompute_refuses_bad_options_before_touching_assets(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest_file = assets_dir() / "manifest.json"
    before = manifest_file.read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        precompute_main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert manifest_file.read_bytes() == before


def test_the_apps_tabs_and_the_report_follow_the_assets_zoo() -> None:
    """The Convergence and Results tabs read the zoo from the assets, so a model added with ``precompute --add``
    (a causal LM as an encoder) appears beside the others in the similarity heatmaps, the map-quality matrix and
    the results table; the report summarises each kind of pair apart (sentence encoders, mixed, LLM-to-LLM), and a
    pair the assets do not hold is refused with a readable message."""
    from securealign.app_support import service
    from securealign.app_support.service.choices import check_pair
    from securealign.experiments.report import pair_group

    manifest = load_manifest()
    task = manifest["tasks"][0]
    for dataset in manifest["similarity_datasets"]:
        assert set(manifest["encoders"]) <= set(service.similarity(dataset, "cka")["keys"])
    quality = service.map_quality_matrix(task, manifest["demo_regime"], "mapped_acc")
    assert quality["keys"] == manifest["encoders"]
    for source, target in artifacts.pairs():
        value = quality["matrix"][quality["keys"].index(source), quality["keys"].index(target)]
        assert 0 < value <= 1
    assert set(service.results_table(task)["client model"]) == {service.model_name(k) for k in manifest["encoders"]}
    text = render([task], show_map_kinds=False)
    for group in {pair_group(s, t) for s, t in artifacts.pairs()}:
        assert f"{group} (" in text
    missing = [(s, t) for s, t in permutations(manifest["encoders"], 2) if (s, t) not in artifacts.pairs()]
    for source, target in missing[:1]:
        with pytest.raises(service.ServiceError, match="No precomputed map"):
            check_pair(source, target)


def test_adding_a_model_reproduces_its_committed_rows_exactly(tmp_path) -> None:
    """``precompute --add`` on a copy of the assets without potion gives back potion's committed rows with WordLlama
    (results, every seed, head, maps, OOD scores) exactly: adding a model cannot move a committed row, and the added
    rows are computed as a full run computes them. The two static models embed everything in seconds."""
    import json
    import shutil

    from threadpoolctl import threadpool_limits

    from securealign.experiments.precompute import run_added

    root = tmp_path / "assets"
    shutil.copytree(assets_dir(), root)
    manifest = json.loads((root / "manifest.json").read_text())
    drop = "potion"
    kept = [[s, t] for s, t in manifest["pairs"] if drop not in (s, t)]
    manifest |= {
        "encoders": [k for k in manifest["encoders"] if k != drop],
        "pairs": kept,
        "seed_pairs": kept,
        "similarity_models": {k: ["wordllama"] for k in manifest["similarity_models"]},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    for name in ("results.json", "seeds.json"):
        rows = [r for r in json.loads((root / name).read_text()) if drop not in (r["source"], r["target"])]
        (root / name).write_text(json.dumps(rows))
    with threadpool_limits(limits=1, user_api="blas"):  # as the command runs it (many small solves)
        run_added([drop], ["wordllama"], manifest["tasks"], root=root)

    def by_key(rows: list[dict], fields: tuple[str, ...]) -> dict:
        return {tuple(r[f] for f in fields): r for r in rows if drop in (r["source"], r["target"])}

    fields = ("task", "source", "target", "regime", "map")
    added, committed = by_key(json.loads((root / "results.json").read_text()), fields), by_key(load_results(), fields)
    committed = {k: r for k, r in committed.items() if "wordllama" in k}
    assert set(added) == set(committed) and len(added) == 2 * 6 * len(manifest["tasks"])
    for key, row in committed.items():
        for field, value in row.items():
            # least squares' fit-quality floats may differ in the last bit (LAPACK); every accuracy is exact
            if field in ("r2", "cosine"):
                assert added[key][field] == pytest.approx(value, abs=1e-12, rel=0), (key, field)
            else:
                assert added[key][field] == value, (key, field)
    seed_fields = ("task", "source", "target", "regime", "seed")
    added_seeds = by_key(json.loads((root / "seeds.json").read_text()), seed_fields)
    assert added_seeds == {k: r for k, r in by_key(load_seed_results(), seed_fields).items() if "wordllama" in k}
    for stored in root.rglob(f"*{drop}*.npz"):
        with np.load(stored) as new, np.load(assets_dir() / stored.relative_to(root)) as old:
            assert all(np.array_equal(new[k], old[k]) for k in old.files), stored
    assert json.loads((root / "manifest.json").read_text())["pairs"][-2:] == [["wordllama", drop], [drop, "wordllama"]]
