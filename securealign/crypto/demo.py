"""Real task models for the protocol: a provider head on real target embeddings and a ridge map from a source
encoder, fitted on a task's training texts (the paper's task-supervised regime).

The service's ``--demo`` option, the benchmark and the tests use these so that every encrypted computation runs on
real embeddings. Fitting is plain scikit-learn; the project's alignment and heads modules offer the full variety.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge

from securealign.datasets import load_task
from securealign.embeddings import embed

RIDGE_ALPHA = 1e-2


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
        return f"{self.task}:{self.source}->{self.target}"


def head_from_logistic(model: LogisticRegression) -> tuple[np.ndarray, np.ndarray]:
    """(V, c) with one logit per class; a binary model's single score becomes the pair (-s/2, +s/2)."""
    coef, intercept = model.coef_.T, model.intercept_
    if coef.shape[1] == 1:
        return np.hstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    return coef, intercept


def fit_task_models(task_name: str, source: str, target: str, n_train: int = 600, n_test: int = 200) -> TaskModels:
    """Embed ``n_train`` training and ``n_test`` test texts (cached), fit the head on target embeddings and the
    ridge map source -> target on the same training texts."""
    task = load_task(task_name)
    train, test = task.train_texts[:n_train], task.test_texts[:n_test]
    z_src, z_tgt = embed(source, train, progress=False), embed(target, train, progress=False)
    head = LogisticRegression(max_iter=2000).fit(z_tgt, task.train_labels[:n_train])
    V, c = head_from_logistic(head)
    ridge = Ridge(alpha=RIDGE_ALPHA).fit(z_src, z_tgt)
    W, b = ridge.coef_.T.copy(), ridge.intercept_.copy()
    return TaskModels(task_name, source, target, list(task.classes), V, c, W, b,
                      embed(source, test, progress=False).astype(np.float64), np.asarray(task.test_labels[:n_test]))
