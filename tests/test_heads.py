"""Linear heads fitted on real embeddings classify well; the Energy score separates in- from out-of-distribution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from securealign.datasets import load_ood_texts, load_task
from securealign.heads import LinearHead, energy_score, fit_head, ood_metrics
from securealign.models.embeddings import embed


@pytest.mark.slow  # over 20 s on 2 cores: not in the fast tier
def test_head_on_real_embeddings_and_ood(tmp_path: Path) -> None:
    task = load_task("bbc_news")
    head = fit_head(embed("minilm", task.train_texts), task.train_labels, task.classes)
    test = embed("minilm", task.test_texts)
    assert head.V.shape == (384, 5) and head.accuracy(test, task.test_labels) > 0.93
    np.testing.assert_allclose(head.proba(test).sum(1), 1.0)
    ood = embed("minilm", load_ood_texts("bbc_news", limit=600))
    metrics = ood_metrics(energy_score(head.logits(test)), energy_score(head.logits(ood)))
    # measured AUROC 0.741, FPR95 0.757 (454 of 600 reviews pass the threshold that keeps 95% of the news):
    # Energy on a small encoder's logistic head separates news from film reviews, imperfectly
    assert metrics["auroc"] > 0.7 and metrics["fpr95"] == pytest.approx(0.757, abs=0.02)
    head.save(tmp_path / "head.npz")
    again = LinearHead.load(tmp_path / "head.npz")
    assert again.classes == task.classes
    np.testing.assert_array_equal(again.predict(test), head.predict(test))


def test_binary_head_has_two_symmetric_logits() -> None:
    task = load_task("debates")
    head = fit_head(embed("potion", task.train_texts), task.train_labels, task.classes)
    logits = head.logits(embed("potion", task.test_texts[:20]))
    assert logits.shape == (20, 2)
    np.testing.assert_allclose(logits[:, 0], -logits[:, 1], atol=1e-9)


def test_ood_metrics_known_values_and_bad_dims() -> None:
    perfect = ood_metrics(np.array([-5.0, -4.0, -6.0]), np.array([-1.0, 0.0]))
    assert perfect == {"auroc": 1.0, "fpr95": 0.0}
    # by hand: in-distribution scores 1..100, OOD 0.5, 10.5, ..., 90.5. 95% TPR keeps scores >= 6, which 9 of the
    # 10 OOD texts pass (FPR 0.9); AUROC = sum over OOD of (100 - 10k) / 1000 = 550 / 1000
    overlap = ood_metrics(-np.arange(1.0, 101.0), -(0.5 + 10 * np.arange(10)))
    assert overlap == pytest.approx({"auroc": 0.55, "fpr95": 0.9})
    head = LinearHead(np.zeros((3, 2)), np.zeros(2), ["a", "b"])
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        head.logits(np.zeros((1, 4)))
