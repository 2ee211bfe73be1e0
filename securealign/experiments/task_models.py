"""Real task models for the protocol: a provider head on real target embeddings and a ridge map from a source
encoder, fitted on a task's training texts (the paper's task-supervised regime).

The service's ``--demo`` option, the benchmark and the tests use these so that every encrypted computation runs on
real embeddings. The fits are the project's own (alignment.fit_ridge, heads.fit_head), at fixed settings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from securealign.alignment import fit_ridge
from securealign.datasets import load_task
from securealign.experiments.artifacts import served_model_id
from securealign.heads import fit_head
from securealign.models.embeddings import embed

RIDGE_ABSOLUTE_ALPHA = 1e-2  # in scikit-learn's convention (Ridge's alpha)


@dataclass
class TaskModels:
    """A provider's head (V, c) on the target space, the map (W, b) from the source space, and test queries."""

    task: str
    source: str
    target: str
    classes: list[str]
    V: np.ndarray  # (d_target, K)
    c: np.ndarray  # (K,)
    W: np.ndarray  # (d_source, d_target)
    b: np.ndarray  # (d_target,)
    test_source: np.ndarray  # (n_test, d_source): the client's queries
    test_labels: np.ndarray

    @property
    def model_id(self) -> str:
        return served_model_id(self.task, self.source, self.target)


def fit_task_models(task_name: str, source: str, target: str, n_train: int = 600, n_test: int = 200) -> TaskModels:
    """Embed ``n_train`` training and ``n_test`` test texts (cached), fit the head on target embeddings and the
    ridge map source -> target on the same training texts."""
    task = load_task(task_name)
    train, test = task.train_texts[:n_train], task.test_texts[:n_test]
    z_src, z_tgt = embed(source, train, progress=False), embed(target, train, progress=False)
    head = fit_head(z_tgt, task.train_labels[:n_train], task.classes)
    affine = fit_ridge(z_src, z_tgt, absolute_alpha=RIDGE_ABSOLUTE_ALPHA)
    return TaskModels(
        task_name,
        source,
        target,
        list(task.classes),
        head.V,
        head.c,
        affine.W,
        affine.b,
        embed(source, test, progress=False).astype(np.float64),
        np.asarray(task.test_labels[:n_test]),
    )
