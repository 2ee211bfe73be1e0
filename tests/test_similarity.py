"""Similarity metrics hold their defining properties, and model-pair matrices are well formed on real embeddings."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ortho_group

from securealign.datasets import load_task
from securealign.models.embeddings import embed
from securealign.similarity import METRICS, debiased_cka, linear_cka, mutual_knn, similarity_matrix, svcca

RNG = np.random.default_rng(0)


def test_cka_is_invariant_to_rotation_and_scale() -> None:
    X = RNG.normal(size=(300, 40)) @ RNG.normal(size=(40, 40))
    Q = ortho_group.rvs(40, random_state=1)
    assert linear_cka(X, 3.0 * X @ Q) == pytest.approx(1.0, abs=1e-9)
    assert debiased_cka(X, X @ Q) == pytest.approx(1.0, abs=1e-9)
    assert svcca(X, X @ Q) == pytest.approx(1.0, abs=1e-6)
    assert mutual_knn(X, X @ Q) == pytest.approx(1.0)


def test_independent_noise_scores_near_zero() -> None:
    X, Y = RNG.normal(size=(500, 30)), RNG.normal(size=(500, 30))
    assert linear_cka(X, Y) < 0.1
    assert abs(debiased_cka(X, Y)) < 0.02
    assert mutual_knn(X, Y) < 0.05
    # SVCCA overfits when kept directions approach the sample count; the cap keeps wide noise low too
    assert svcca(RNG.normal(size=(500, 384)), RNG.normal(size=(500, 768))) < 0.3


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="same texts"):
        linear_cka(np.ones((5, 3)), np.ones((6, 3)))
    with pytest.raises(ValueError, match="valid metrics"):
        similarity_matrix({"a": np.ones((5, 2))}, "euclid")


@pytest.mark.slow  # over 20 s on 2 cores: not in the fast tier
def test_real_model_matrices_are_symmetric_with_unit_diagonal() -> None:
    texts = load_task("bbc_news").test_texts[:200]
    embs = {key: embed(key, texts) for key in ("minilm", "paraphrase_onnx", "wordllama", "potion")}
    for metric in METRICS:
        keys, matrix = similarity_matrix(embs, metric)
        assert keys == list(embs)
        np.testing.assert_allclose(matrix, matrix.T)
        np.testing.assert_allclose(np.diag(matrix), 1.0, atol=1e-6)
        off = matrix[~np.eye(len(keys), dtype=bool)]
        assert np.all(off > 0.1) and np.all(off < 1.0), (metric, matrix)
    keys, cka = similarity_matrix(embs, "cka")
    # the two MiniLM-family encoders are closer to each other than MiniLM is to a static word-vector model
    assert cka[0, 1] > cka[0, 2]
