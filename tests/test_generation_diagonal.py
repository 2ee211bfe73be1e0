"""The baby-step/giant-step diagonal layout, run in plaintext (its encrypted twin is tested against it)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from securealign.crypto.ckks import SLOTS
from securealign.crypto.errors import DimensionError
from securealign.generation.diagonal import CHECK_ROWS, DiagonalLayout, _rotations, simulate

# the zoo's heads (gemma3 -> smollm2, smollm2 -> gemma3, the Qwen pair both ways), then small and odd shapes
SHAPES = [(640, 49152), (576, 262144), (896, 151936), (1536, 151936), (576, 49152), (7, 10), (64, 9001), (1, 3)]


@pytest.mark.parametrize("d, vocab", SHAPES)
def test_layout_covers_the_vocabulary_with_every_slot_and_few_rotations(d: int, vocab: int) -> None:
    layout = DiagonalLayout.plan(d, vocab)
    assert sum(layout.parts) == d and all(SLOTS % p == 0 for p in layout.parts)  # no slot lost to wrap-around
    assert layout.rows == SLOTS - CHECK_ROWS and CHECK_ROWS > 0  # every ciphertext keeps check slots
    assert layout.n_ciphertexts == math.ceil(vocab / (2 * layout.rows))  # the fewest ciphertexts V logits fit in
    assert layout.products == d * layout.n_ciphertexts
    assert layout.baby * layout.giant >= layout.parts[0]
    assert layout.steps[0] == 1 and len(layout.steps) <= 2
    best = min(_rotations(layout.parts, layout.n_ciphertexts, g) for g in range(1, layout.parts[0] + 1))
    assert layout.rotations == best
    naive = d - len(layout.parts)  # one rotation per diagonal of each part, shared by all blocks
    assert layout.rotations <= naive + layout.n_ciphertexts
    if d >= 512:  # BSGS: a rotation costs ~11 plaintext products (measured), and rotations stay the minority
        assert 11 * layout.rotations < layout.products


@pytest.mark.parametrize("d, vocab", [(640, 9000), (1536, 9000), (896, 8177), (64, 9001), (7, 3), (5, 3)])
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
        DiagonalLayout.plan(SLOTS + 1, 10)
    with pytest.raises(DimensionError, match="outside"):
        DiagonalLayout.plan(0, 10)
    with pytest.raises(DimensionError):
        DiagonalLayout.plan(8, 0)
