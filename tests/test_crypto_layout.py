"""The packed slot layout, in plaintext: the algorithm the provider runs under encryption, checked against numpy."""

import numpy as np
import pytest

from securealign.crypto.ckks import SLOTS
from securealign.crypto.errors import DimensionError, ParameterError
from securealign.crypto.layout import Layout, simulate, simulate_slots


@pytest.mark.parametrize(
    "d_in,n_classes", [(768, 5), (384, 2), (256, 23), (300, 4), (769, 7), (3, 1), (4096, 2), (8192, 1)]
)
def test_packed_algorithm_equals_matrix_product(d_in, n_classes):
    rng = np.random.default_rng(d_in + n_classes)
    matrix, bias, x = rng.normal(size=(n_classes, d_in)), rng.normal(size=n_classes), rng.normal(size=d_in)
    layout = Layout.plan(d_in, n_classes)
    assert np.allclose(simulate(layout, matrix, bias, x), matrix @ x + bias, atol=1e-9)


def test_768_to_5_classes_fits_one_ciphertext_with_nine_rotations():
    layout = Layout.plan(768, 5)
    assert (layout.stride, layout.span, layout.n_ciphertexts) == (8, 512, 1)
    assert layout.steps == [8 << k for k in range(9)]


@pytest.mark.parametrize("d_in", range(1, 1100, 37))
def test_span_holds_two_inputs_per_slot_with_little_padding(d_in):
    layout = Layout.plan(d_in, 3)
    assert d_in <= 2 * layout.span < 2 * d_in + 2 and layout.stride * layout.span == SLOTS
    assert len(layout.steps) == layout.span.bit_length() - 1
    assert all(step & (step - 1) == 0 and step % layout.stride == 0 for step in layout.steps)


def test_many_classes_use_several_ciphertexts():
    layout = Layout.plan(384, 23)
    assert layout.stride == 16 and layout.n_ciphertexts == 2


def test_every_slot_holds_an_output_copy_or_zero():
    """No partial sum anywhere: each used coset holds its output in every slot, unused cosets hold exact zeros."""
    rng = np.random.default_rng(5)
    layout = Layout.plan(300, 7)
    matrix, bias, x = rng.normal(size=(7, 300)), rng.normal(size=7), rng.normal(size=300)
    slots = simulate_slots(layout, matrix, bias, x)
    for vector, placed in zip(slots, layout.place_outputs(matrix @ x + bias), strict=True):
        assert np.allclose(vector, placed, atol=1e-9)
    assert np.count_nonzero(slots[0].reshape(layout.span, layout.stride)[:, 7:]) == 0
    assert layout.deviation(slots) < 1e-9


def test_bad_dimensions_and_forged_layouts_are_refused():
    with pytest.raises(DimensionError):
        Layout.plan(2 * SLOTS + 1, 2)
    with pytest.raises(DimensionError):
        Layout.plan(384, 0)
    with pytest.raises(DimensionError):
        Layout.plan(384, 2).pack_query(np.ones(383))
    with pytest.raises(DimensionError):
        Layout.plan(4, 2).pack_query(np.array([1.0, np.nan, 0.0, 0.0]))
    forged = dict(Layout.plan(384, 2).to_dict(), stride=1)
    with pytest.raises(ParameterError):
        Layout.from_dict(forged)
    with pytest.raises(ParameterError):
        Layout.from_dict({"d_in": "many"})
