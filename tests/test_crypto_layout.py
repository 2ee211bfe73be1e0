"""The packed slot layout, in plaintext: the algorithm the provider runs under encryption, checked against numpy."""

import numpy as np
import pytest

from securealign.crypto.ckks import SLOTS
from securealign.crypto.errors import DimensionError, ParameterError
from securealign.crypto.layout import Layout, simulate


@pytest.mark.parametrize("d_in,n_classes", [(768, 5), (384, 2), (256, 23), (300, 4), (769, 7), (3, 1), (4096, 2)])
def test_packed_algorithm_equals_matrix_product(d_in, n_classes):
    rng = np.random.default_rng(d_in + n_classes)
    matrix, bias, x = rng.normal(size=(n_classes, d_in)), rng.normal(size=n_classes), rng.normal(size=d_in)
    layout = Layout.plan(d_in, n_classes)
    assert np.allclose(simulate(layout, matrix, bias, x), matrix @ x + bias, atol=1e-9)


def test_768_to_5_classes_fits_one_ciphertext_with_ten_power_of_two_rotations():
    layout = Layout.plan(768, 5)
    assert (layout.block, layout.blocks_per_ct, layout.n_ciphertexts) == (768, 5, 1)
    assert layout.steps == [1 << k for k in range(10)]


@pytest.mark.parametrize("d_in", range(1, 1100, 37))
def test_block_is_small_padding_with_power_of_two_steps(d_in):
    layout = Layout.plan(d_in, 3)
    assert d_in <= layout.block < 2 * d_in + 1 and layout.blocks_per_ct * layout.block <= SLOTS
    assert all(step & (step - 1) == 0 for step in layout.steps)
    assert bin(layout.block).count("1") <= 2


def test_many_classes_use_several_ciphertexts():
    layout = Layout.plan(384, 23)
    assert layout.blocks_per_ct == 10 and layout.n_ciphertexts == 3


def test_bad_dimensions_and_forged_layouts_are_refused():
    with pytest.raises(DimensionError):
        Layout.plan(SLOTS + 1, 2)
    with pytest.raises(DimensionError):
        Layout.plan(384, 0)
    with pytest.raises(DimensionError):
        Layout.plan(384, 2).pack_query(np.ones(383))
    with pytest.raises(DimensionError):
        Layout.plan(4, 2).pack_query(np.array([1.0, np.nan, 0.0, 0.0]))
    forged = dict(Layout.plan(384, 2).to_dict(), block=4096)
    with pytest.raises(ParameterError):
        Layout.from_dict(forged)
    with pytest.raises(ParameterError):
        Layout.from_dict({"d_in": "many"})
