"""Dataset loaders return the documented sizes, classes and fixed splits."""

from __future__ import annotations

from collections import Counter

import pytest

from securealign.datasets import (
    PUBLIC_SOURCES,
    TASKS,
    _bbc_rows,
    load_ood_texts,
    load_public_corpus,
    load_public_source,
    load_task,
    non_test_rows,
)


@pytest.mark.parametrize(
    ("name", "classes", "n_train", "n_test"),
    [
        ("rotten_tomatoes", ["fresh", "rotten"], 2000, 1000),
        ("bbc_news", ["business", "entertainment", "politics", "sports", "tech"], 1479, 634),
        ("debates", ["Democratic", "Republican"], 511, 219),
    ],
)
def test_task_sizes_and_classes(name: str, classes: list[str], n_train: int, n_test: int) -> None:
    task = load_task(name)
    assert task.classes == classes
    assert len(task.train_texts) == len(task.train_labels) == n_train
    assert len(task.test_texts) == len(task.test_labels) == n_test
    counts = task.counts()
    assert sum(counts["train"].values()) == n_train and set(counts["test"]) == set(classes)
    assert not set(task.train_texts) & set(task.test_texts)


def test_bbc_source_has_the_documented_class_counts() -> None:
    _, labels = _bbc_rows()
    assert Counter(labels) == {"business": 510, "entertainment": 386, "politics": 417, "sports": 511, "tech": 401}


def test_splits_are_fixed() -> None:
    load_task.cache_clear()
    first = load_task("rotten_tomatoes").test_texts[:5]
    load_task.cache_clear()
    assert load_task("rotten_tomatoes").test_texts[:5] == first


def test_public_corpus_and_ood_pairing() -> None:
    corpus = load_public_corpus()
    assert len(corpus) > 5000 and len(set(corpus)) == len(corpus)
    assert load_public_corpus(100) == corpus[:100]
    for name, spec in TASKS.items():
        ood = load_ood_texts(name, limit=50)
        assert len(ood) == 50 and spec.ood_name != name
    with pytest.raises(ValueError, match="valid tasks"):
        load_task("imdb")


@pytest.mark.parametrize("name", list(TASKS))
def test_non_test_rows_hold_every_labeled_row_but_the_test_split(name: str) -> None:
    task = load_task(name)
    texts, labels = non_test_rows(name)
    assert not set(texts) & set(task.test_texts) and set(task.train_texts) <= set(texts)
    assert len(texts) == len(set(texts)) == len(labels) and set(labels.tolist()) == set(range(len(task.classes)))
    train_labels = dict(zip(texts, labels.tolist(), strict=False))
    assert all(train_labels[t] == y for t, y in zip(task.train_texts, task.train_labels.tolist(), strict=False))


def _key(text: str) -> str:
    """Case- and spacing-blind first 80 characters: catches a test text that reached the public side re-cased,
    re-spaced or truncated differently, not only verbatim."""
    return " ".join(text.casefold().split())[:80]


@pytest.mark.parametrize("source", ["corpus", *PUBLIC_SOURCES])
def test_public_text_shares_no_text_with_any_task(source: str) -> None:
    """A map fitted on public text must never have seen a test text (nor a training text: those are the provider's
    private labeled data). Measured: 0 shared keys for every source, task and split."""
    public = load_public_corpus() if source == "corpus" else load_public_source(source)
    assert len(public) > 1000
    keys = {_key(t) for t in public}
    for name in TASKS:
        task = load_task(name)
        for split, texts in (("test", task.test_texts), ("train", task.train_texts)):
            shared = keys & {_key(t) for t in texts}
            assert not shared, (source, name, split, sorted(shared)[:3])
