"""The baby-step/giant-step diagonal layout, run in plaintext (its encrypted twin is tested against it)."""

from __future__ import annotations

import numpy as np
import pytest

from securealign.crypto.ckks import SLOTS
from securealign.crypto.errors import DimensionError
from securealign.generation.diagonal import DiagonalLayout, simulate


@pytest.mark.parametrize("d, vocab", [(640, 49152), (576, 49152), (7, 10), (64, 9001), (1, 3)])
def test_layout_covers_the_vocabulary_with_few_rotations(d: int, vocab: int) -> None:
    layout = DiagonalLayout.plan(d, vocab)
    assert 2 * layout.rows * layout.n_ciphertexts >= vocab
    assert layout.rows + d - 1 == SLOTS  # a rotation by j < d never wraps an output slot
    assert layout.baby * layout.giant >= d
    assert layout.steps[0] == 1 and len(layout.steps) <= 2
    naive = d - 1  # one rotation per diagonal
    assert layout.rotations <= naive + layout.n_ciphertexts  # BSGS never loses, and wins big for large d
    if d >= 512:
        assert layout.rotations < naive / 4


@pytest.mark.parametrize("d, vocab", [(640, 9000), (64, 9001), (5, 3)])
def test_simulated_algorithm_equals_the_matrix_product(d: int, vocab: int) -> None:
    rng = np.random.default_rng(d)
    matrix, bias, x = rng.normal(size=(vocab, d)), rng.normal(size=vocab), rng.normal(size=d)
    layout = DiagonalLayout.plan(d, vocab)
    assert np.allclose(simulate(layout, matrix, bias, x), matrix @ x + bias, atol=1e-9)


def test_wrong_shapes_are_refused() -> None:
    layout = DiagonalLayout.plan(8, 20)
    with pytest.raises(DimensionError, match="vector of 8"):
        layout.pack_query(np.ones(9))
    with pytest.raises(DimensionError, match="NaN"):
        layout.pack_query(np.full(8, np.nan))
    with pytest.raises(DimensionError, match="do not fit"):
        simulate(layout, np.ones((20, 9)), np.ones(20), np.ones(8))
    with pytest.raises(DimensionError, match="outside"):
        DiagonalLayout.plan(SLOTS, 10)
    with pytest.raises(DimensionError):
        DiagonalLayout.plan(8, 0)
