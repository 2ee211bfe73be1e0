"""Extraction attacks by the client (issue 10), run against the real CKKS protocol in process.

The provider serves committed BBC News heads (5 topics) with committed maps, with 64-d inputs in both modes
(potion-base-2M's head in paper mode, the map from potion-base-2M in sealed mode) to keep the attacks fast. (a) the
one-query slot attack recovers the matrix from the old window-sum result (its numpy twin) and must get no more than
the K outputs give from the protocol's real result. (b) they recover the head exactly from logits
and nothing better than a guess from label-only answers; reading the imaginary parts of the output slots (an
earlier leak, closed by the provider returning real parts only) adds nothing beyond the labels.
"""

import numpy as np
import pytest

from securealign.crypto import ClientSession, Layout, Provider, attacks
from securealign.crypto.answers import pairwise_head
from securealign.crypto.layout import simulate_slots
from securealign.experiments import artifacts

TASK = "bbc_news"
MODES = ("paper", "sealed")
SERVED = {
    "wordllama->potion": ("wordllama", "potion"),
    "potion->minilm": ("potion", "minilm"),
}
SMALL_MODEL = {"paper": "wordllama->potion", "sealed": "potion->minilm"}  # 64-d inputs in both modes


@pytest.fixture(scope="module")
def provider():
    provider = Provider()
    for model_id, (source, target) in SERVED.items():
        head, amap = artifacts.load_head(TASK, target), artifacts.load_map(TASK, source, target)
        provider.register_sealed(model_id, amap.W, amap.b, head.V, head.c, head.classes)
    return provider


def _truth(model_id: str, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """The matrix (rows = classes) and bias the provider evaluates: what an attacker is scored against."""
    source, target = SERVED[model_id]
    head, amap = artifacts.load_head(TASK, target), artifacts.load_map(TASK, source, target)
    if mode == "paper":
        return head.V.T, head.c
    W, b = amap.W.astype(np.float64), amap.b.astype(np.float64)
    return (W @ head.V).T, b @ head.V + head.c


def _layout(provider: Provider, model_id: str, mode: str) -> Layout:
    return Layout.from_dict(provider.describe(model_id)["modes"][mode])


@pytest.mark.parametrize("mode", MODES)
def test_slot_attack_recovers_the_matrix_from_a_window_sum_result(mode):
    """The design issue 10 found: one result carrying every slot of a window sum gives the matrix away, all but the
    first and last entry of each row (next to a bias, which they are confounded with when blocks touch)."""
    matrix, bias = _truth(SMALL_MODEL[mode], mode)
    x = np.ones(matrix.shape[1])  # the attacker's chosen query
    stolen = attacks.slot_attack(
        lambda m, b: attacks.window_sum_slots(m, b, x), matrix.shape, attacks.window_sum_slots(matrix, bias, x)
    )
    assert stolen.queries == 1
    assert attacks.recovered_fraction(stolen.matrix, matrix) >= 1 - 2 / matrix.shape[1]
    assert attacks.relative_error(stolen.matrix, matrix) < 0.1


@pytest.mark.parametrize("scale", [1.0, 1e4])
@pytest.mark.parametrize("mode", MODES)
def test_slot_attack_gets_no_more_than_the_outputs_from_the_protocol(provider, mode, scale):
    """Every slot of a real RESULT, real and imaginary parts, decrypted with the client's secret key and solved
    against the public algorithm: no closer to the matrix than the K outputs alone (the head projected on the
    query), which is a guess. ``scale`` 1e4 makes the outputs ~1e4 (a masked design leaked its partial sums
    through the mask's rounding at that size)."""
    model_id = SMALL_MODEL[mode]
    matrix, bias = _truth(model_id, mode)
    layout = _layout(provider, model_id, mode)
    x = scale * np.ones(layout.d_in)
    slots = attacks.decrypted_slots(ClientSession(), provider, model_id, x, mode)
    stolen = attacks.slot_attack(lambda m, b: simulate_slots(layout, m, b, x), matrix.shape, slots)
    outputs = np.real(np.concatenate(slots))[layout.output_indices()]
    truth = matrix @ x + bias
    assert np.max(np.abs(outputs - truth)) < 1e-6 * max(1.0, np.max(np.abs(truth)))  # a genuine answer, no wrap
    bar = attacks.outputs_only(x, outputs)
    assert attacks.relative_error(stolen.matrix, matrix) >= attacks.relative_error(bar.matrix, matrix) - 1e-3
    assert attacks.relative_error(stolen.matrix, matrix) > 0.95


@pytest.mark.parametrize("mode", MODES)
def test_logit_attack_recovers_the_head_from_d_plus_1_queries(provider, mode):
    model_id = SMALL_MODEL[mode]
    matrix, bias = _truth(model_id, mode)
    d = _layout(provider, model_id, mode).d_in
    stolen = attacks.logit_attack(attacks.protocol_oracle(ClientSession(), provider, model_id, mode), d)
    assert stolen.queries == d + 1 == 65
    assert attacks.relative_error(stolen.matrix, matrix) < 1e-4
    assert np.max(np.abs(stolen.bias - bias)) < 1e-4


@pytest.mark.parametrize("mode", MODES)
def test_logit_attack_gets_no_closer_than_a_guess_from_label_only_answers(provider, mode):
    """The same d + 1 queries with label-only answers: the values are the pair margins times fresh secret factors,
    so the solve is meaningless (its error dwarfs the zero guess's 1)."""
    model_id = SMALL_MODEL[mode]
    rows, _ = pairwise_head(*_truth(model_id, mode))  # all that a label answer depends on
    d = _layout(provider, model_id, mode).d_in
    stolen = attacks.logit_attack(attacks.protocol_oracle(ClientSession(), provider, model_id, mode, "label"), d)
    assert stolen.queries == d + 1 and stolen.matrix.shape == rows.shape
    assert attacks.relative_error(stolen.matrix, rows) >= 1.0


@pytest.mark.parametrize("mode", MODES)
def test_imaginary_parts_carry_nothing_beyond_the_label(provider, mode):
    """The leak this attack found: the first output slot's imaginary part was a key-dependent offset times the
    blinding factor, so Re / |Im| cancelled the factor and one query per point gave the margin, and d + 1 queries
    the pair's row (this test was an expected failure then). The provider now returns real parts only: every
    imaginary part is noise, and reading them does no better than a solve on the answers' signs alone, which is
    what a label-only answer means to reveal."""
    model_id = SMALL_MODEL[mode]
    rows, _ = pairwise_head(*_truth(model_id, mode))
    d = _layout(provider, model_id, mode).d_in
    outputs = attacks.output_oracle(ClientSession(), provider, model_id, mode, "label")
    queries = attacks.basis_queries(d)
    values = np.array([outputs(q) for q in queries])
    # noise: the first slot keeps a key-dependent offset from key switching (|offset| up to ~1e-6 over 16 fresh keys,
    # the same for every query of a session), no longer times the blinding factor (which took it up to ~1e-2)
    assert np.max(np.abs(np.imag(values))) < 1e-5
    signs, _ = attacks.solve_affine(queries, np.sign(np.real(values)))
    stolen = attacks.imaginary_attack(
        lambda: attacks.output_oracle(ClientSession(), provider, model_id, mode, "label"), d
    )
    assert attacks.relative_error(stolen.matrix[0], rows[0]) > 0.5
    assert attacks.direction_error(stolen.matrix[0], rows[0]) >= 0.9 * attacks.direction_error(signs[0], rows[0])
