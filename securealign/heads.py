"""The provider's linear task heads and the Energy score used for out-of-distribution detection.

A head is fitted with scikit-learn's logistic regression and then kept as plain (V, c) arrays, because that is
all the encrypted protocol evaluates: logits = z V + c.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import logsumexp, softmax


@dataclass
class LinearHead:
    """``logits = z @ V + c`` with V (d, K), c (K,) and class names."""

    V: np.ndarray
    c: np.ndarray
    classes: list[str]

    @property
    def dim(self) -> int:
        return int(self.V.shape[0])

    def logits(self, Z: np.ndarray) -> np.ndarray:
        Z = np.asarray(Z, dtype=np.float64)
        if Z.ndim != 2 or Z.shape[1] != self.dim:
            raise ValueError(f"head expects embeddings of shape (n, {self.dim}), got {Z.shape}")
        return Z @ self.V + self.c

    def proba(self, Z: np.ndarray) -> np.ndarray:
        return softmax(self.logits(Z), axis=1)

    def predict(self, Z: np.ndarray) -> np.ndarray:
        return np.argmax(self.logits(Z), axis=1)

    def accuracy(self, Z: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(self.predict(Z) == np.asarray(y)))

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path, V=self.V.astype(np.float32), c=self.c.astype(np.float32), classes=np.array(self.classes)
        )

    @classmethod
    def load(cls, path: Path) -> LinearHead:
        with np.load(path) as data:
            return cls(data["V"].astype(np.float64), data["c"].astype(np.float64), [str(c) for c in data["classes"]])


def fit_head(Z: np.ndarray, y: np.ndarray, classes: list[str], C: float = 1.0) -> LinearHead:
    """Multinomial logistic regression on the provider's labeled embeddings.

    scikit-learn keeps one weight row for two classes; it is split symmetrically into two logits (same
    probabilities) so every head has K logits and the Energy score treats both classes alike.
    """
    from sklearn.linear_model import LogisticRegression  # on use: scikit-learn slows the app's start by ~0.9 s

    model = LogisticRegression(C=C, max_iter=3000).fit(np.asarray(Z, dtype=np.float64), y)
    if len(model.classes_) != len(classes):
        raise ValueError(f"training labels cover {len(model.classes_)} of {len(classes)} classes")
    coef, intercept = model.coef_, model.intercept_
    if coef.shape[0] == 1:
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    return LinearHead(coef.T.copy(), intercept.copy(), list(classes))


def energy_score(logits: np.ndarray) -> np.ndarray:
    """Energy E(z) = -log sum_k exp(logit_k) (Liu et al., 2020): lower means more in-distribution."""
    return -logsumexp(np.asarray(logits, dtype=np.float64), axis=1)


def ood_metrics(energy_in: np.ndarray, energy_out: np.ndarray) -> dict[str, float]:
    """AUROC and FPR at 95% TPR for separating in-distribution (positive) from OOD by negative energy."""
    scores = np.concatenate([-np.asarray(energy_in), -np.asarray(energy_out)])
    labels = np.concatenate([np.ones(len(energy_in)), np.zeros(len(energy_out))])
    from sklearn.metrics import roc_auc_score, roc_curve  # on use (see fit_head)

    fpr, tpr, _ = roc_curve(labels, scores)
    return {"auroc": float(roc_auc_score(labels, scores)), "fpr95": float(fpr[np.searchsorted(tpr, 0.95)])}
