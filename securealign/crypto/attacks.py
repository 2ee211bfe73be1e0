"""Extraction attacks on the provider's head, run by the client, so that what the protocol leaks is measured.

The client is the natural attacker: it holds the secret key, so it sees every decrypted slot of a RESULT, and it
chooses its queries. Three attacks, from one query to many:

(a) ``slot_attack``: one query. The provider's algorithm is public, so every decrypted slot (real and imaginary
    part) is a linear function of the head ``(A, c)`` that the client can write down; the least-squares solution
    of all of them is the most the slots pin down. On the design issue 10 found (a window sum over contiguous
    blocks, every slot returned: ``window_sum_slots``) it is the whole matrix from one query; on the protocol's
    result it must be no more than the K outputs alone give (their minimum-norm solution: the head projected on
    the query).
(b) ``logit_attack``: ``d + 1`` chosen queries (the origin and the unit vectors) and one linear solve recover the
    matrix and bias exactly from exact logits. Against blinded answers (``r * (l_i - l_j)`` with a fresh secret
    ``r`` per pair and per query) the same solve is meaningless; ``averaging_attack`` pays for the magnitudes
    instead by repeating every query and estimating ``|l_i - l_j|`` from the public distribution of ``r``, and
    ``imaginary_attack`` read r off the imaginary part of the output slot (a leak of the first label-only design:
    rotations leave a key-dependent imaginary offset in the first slot, which blinding multiplied too; closed since
    the provider returns real parts only).
(c) label-only copies: ``agreement_curve`` trains a copy on queries labelled by the provider (a logistic
    regression on labels, or a least-squares fit on logits), and ``boundary_attack`` bisects along chosen lines
    to the decision boundary of a two-class head, which blinding cannot hide because it keeps the sign.

Everything here is numpy and scikit-learn on what the client can see: an oracle is any function from one query
vector to the client's answer, so each attack runs against the real protocol (``protocol_oracle``, or
``output_oracle`` for the complex output slots) or against its plaintext twin (``blinded_twin``) for measurements
too long for real encryption.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LinearRegression, LogisticRegression

from securealign.crypto import ckks, wire
from securealign.crypto.answers import BLIND_BITS, pairwise_head
from securealign.crypto.ckks import SLOTS
from securealign.crypto.client import ClientSession
from securealign.crypto.layout import Layout

Oracle = Callable[[np.ndarray], np.ndarray]
ESTIMATORS = ("mean-log", "midrange")


@dataclass
class Extraction:
    """What an attack recovered and what it cost: ``answers = queries @ matrix.T + bias`` is its model."""

    queries: int
    matrix: np.ndarray  # rows = classes (or class pairs for blinded answers), columns = input dimensions
    bias: np.ndarray


def relative_error(estimate: np.ndarray, truth: np.ndarray) -> float:
    """``||estimate - truth||_F / ||truth||_F``: 0 is exact; the zero matrix, a guess, scores exactly 1."""
    truth = np.asarray(truth, dtype=np.float64)
    return float(np.linalg.norm(np.asarray(estimate, dtype=np.float64) - truth) / np.linalg.norm(truth))


def direction_error(estimate: np.ndarray, truth: np.ndarray) -> float:
    """The relative error of the best positive rescaling of ``estimate``: what matters for labels, which a
    positive scale does not change. A guess (zero, or a random matrix in high dimension) scores about 1."""
    est, true = (np.ravel(np.asarray(a, dtype=np.float64)) for a in (estimate, truth))
    norm = np.linalg.norm(est) * np.linalg.norm(true)
    cosine = max(0.0, float(est @ true / norm)) if norm > 0 else 0.0
    return float(np.sqrt(1.0 - cosine**2))


def random_guess_error(truth: np.ndarray, seed: int = 0) -> float:
    """The relative error of a random Gaussian matrix of the truth's shape and norm (about sqrt 2)."""
    truth = np.asarray(truth, dtype=np.float64)
    guess = np.random.default_rng(seed).standard_normal(truth.shape)
    return relative_error(guess * np.linalg.norm(truth) / np.linalg.norm(guess), truth)


def recovered_fraction(estimate: np.ndarray, truth: np.ndarray, tol: float = 1e-3) -> float:
    """The fraction of entries within ``tol`` times the truth's largest entry."""
    truth = np.asarray(truth, dtype=np.float64)
    return float(np.mean(np.abs(np.asarray(estimate) - truth) <= tol * np.max(np.abs(truth))))


# (a) one query: every slot of a RESULT --------------------------------------------------------------------------------
View = Callable[[np.ndarray, np.ndarray], Sequence[np.ndarray]]


@dataclass(frozen=True)
class WindowSum:
    """The first design's summation: blocks of ``d_in`` rounded up to a power of two, each summed into its first
    slot by rotations of 1, 2, ..., block / 2 (every other slot keeps a partial sum); rotate/add are functional, for
    slot arrays or ciphertexts."""

    d_in: int

    @property
    def block(self) -> int:
        return 1 << (self.d_in - 1).bit_length()

    @property
    def steps(self) -> list[int]:
        return [1 << k for k in range(self.block.bit_length() - 1)]

    def window_sum(self, vector, rotate, add):
        for step in self.steps:
            vector = add(vector, rotate(vector, step))
        return vector


def window_sum_slots(matrix: np.ndarray, bias: np.ndarray, x: np.ndarray) -> list[np.ndarray]:
    """The leaky design's RESULT, every slot of it (before issue 10): row k of the matrix times the query in block
    k (``WindowSum``), each block summed into its first slot, bias added, nothing masked, so the other slots hold
    partial sums."""
    n_classes, d = matrix.shape
    layout = WindowSum(d)
    block = layout.block
    per_ct = SLOTS // block
    results = []
    for first in range(0, n_classes, per_ct):
        slots = np.zeros(SLOTS)
        for r, k in enumerate(range(first, min(n_classes, first + per_ct))):
            slots[r * block : r * block + d] = x * matrix[k]
        slots = layout.window_sum(slots, lambda v, k: np.roll(v, -k), np.add)
        offsets = np.zeros(SLOTS)
        offsets[: min(per_ct, n_classes - first) * block : block] = bias[first : first + per_ct]
        results.append(slots + offsets)
    return results


def slot_attack(view: View, shape: tuple[int, int], slots: Sequence[np.ndarray]) -> Extraction:
    """The head from every decrypted slot of ONE result, given the public algorithm ``view(matrix, bias)`` that
    computes those slots for the attacker's own query.

    The slots are affine in ``(matrix, bias)``, so the attacker evaluates ``view`` on each unit matrix and unit
    bias to write the equations down, and solves them all (real and imaginary parts) by least squares. The
    minimum-norm solution is exact when the slots determine the head and the projection on what they do determine
    otherwise. Dense, so meant for heads of a few hundred entries.
    """
    n_classes, d = shape

    def flat(vectors: Sequence[np.ndarray]) -> np.ndarray:
        joined = np.concatenate([np.asarray(v) for v in vectors])
        return np.concatenate([np.real(joined), np.imag(joined)])

    base = flat(view(np.zeros(shape), np.zeros(n_classes)))
    columns = []
    for k in range(n_classes):
        for i in range(d):
            unit = np.zeros(shape)
            unit[k, i] = 1.0
            columns.append(flat(view(unit, np.zeros(n_classes))) - base)
    for k in range(n_classes):
        columns.append(flat(view(np.zeros(shape), np.eye(n_classes)[k])) - base)
    theta, *_ = np.linalg.lstsq(np.column_stack(columns), flat(slots) - base, rcond=None)
    return Extraction(1, theta[: n_classes * d].reshape(shape), theta[n_classes * d :])


def outputs_only(x: np.ndarray, outputs: np.ndarray) -> Extraction:
    """What the K outputs of one query determine: the minimum-norm head with ``matrix @ x + bias = outputs``
    (each row the output times ``[x, 1] / |[x, 1]|^2``). The bar any slot attack on a sound result cannot pass."""
    design = np.append(np.asarray(x, dtype=np.float64), 1.0)
    theta = np.outer(np.asarray(outputs, dtype=np.float64), design) / (design @ design)
    return Extraction(1, theta[:, :-1], theta[:, -1])


# (b) d + 1 chosen queries -----------------------------------------------------------------------------------------
def basis_queries(d: int, scale: float = 1.0) -> np.ndarray:
    """The d + 1 chosen queries: the origin, then ``scale`` times each unit vector."""
    return np.vstack([np.zeros(d), scale * np.eye(d)])


def solve_affine(queries: np.ndarray, answers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(matrix, bias)`` with ``answers ≈ queries @ matrix.T + bias`` by least squares (exact from d + 1
    affinely independent queries and exact answers)."""
    design = np.hstack([queries, np.ones((len(queries), 1))])
    theta, *_ = np.linalg.lstsq(design, np.asarray(answers, dtype=np.float64), rcond=None)
    return theta[:-1].T, theta[-1]


def logit_attack(oracle: Oracle, d: int, scale: float = 1.0) -> Extraction:
    """Ask the d + 1 basis queries and solve: exact logits give the head (the matrix and its bias) exactly;
    blinded answers give a system whose solution is no closer than a guess."""
    queries = basis_queries(d, scale)
    matrix, bias = solve_affine(queries, np.array([oracle(q) for q in queries]))
    return Extraction(len(queries), matrix, bias)


def blinded_twin(matrix: np.ndarray, bias: np.ndarray, rng: np.random.Generator, bits: int = BLIND_BITS) -> Oracle:
    """The plaintext twin of a label answer: per pair ``i < j``, the provider's normalised margin
    (``answers.pairwise_head``) times a fresh ``r`` drawn log-uniformly from ``[1, 2^bits)`` per pair and per
    query, here from a seeded generator so that measurements repeat."""
    pairs, pair_bias = pairwise_head(np.asarray(matrix, dtype=np.float64), np.asarray(bias, dtype=np.float64))

    def answer(x: np.ndarray) -> np.ndarray:
        r = np.exp2(rng.uniform(0.0, bits, size=len(pairs)))
        return r * (pairs @ np.asarray(x, dtype=np.float64) + pair_bias)

    return answer


def margin_magnitude(samples: np.ndarray, bits: int = BLIND_BITS, estimator: str = "mean-log") -> np.ndarray:
    """``|l_i - l_j|`` estimated from k blinded answers to the same query (rows = repeats, columns = pairs).

    ``log|v| = log|m| + u`` with ``u`` uniform on ``[0, bits ln 2]``. ``mean-log`` subtracts the mean of ``u``: its
    error falls as ``bits ln 2 / sqrt(12 k)``. ``midrange`` uses the bounded support (the smallest and largest
    ``log|v|`` sit near ``log|m|`` and ``log|m| + bits ln 2``): its error falls as 1 / k, far faster.
    """
    logs = np.log(np.abs(np.atleast_2d(samples)))
    width = bits * np.log(2.0)
    if estimator == "mean-log":
        return np.exp(logs.mean(axis=0) - width / 2)
    if estimator == "midrange":
        return np.exp((logs.min(axis=0) + logs.max(axis=0) - width) / 2)
    raise ValueError(f"unknown estimator {estimator!r}; choose from {ESTIMATORS}")


def averaging_attack(
    oracle: Oracle, d: int, repeats: int, *, scale: float = 1.0, bits: int = BLIND_BITS, estimator: str = "mean-log"
) -> Extraction:
    """The d + 1 basis queries against blinded answers, each asked ``repeats`` times: the sign of every pair
    margin is exact (r > 0), its magnitude estimated by ``margin_magnitude``; then the same linear solve.
    Recovers the provider's normalised pair margins (``answers.pairwise_head``), all a label answer depends on."""
    queries = basis_queries(d, scale)
    margins = []
    for q in queries:
        samples = np.array([oracle(q) for _ in range(repeats)])
        margins.append(np.sign(samples[0]) * margin_magnitude(samples, bits, estimator))
    matrix, bias = solve_affine(queries, np.array(margins))
    return Extraction(len(queries) * repeats, matrix, bias)


def imaginary_attack(
    new_session: Callable[[], Oracle], d: int, *, scale: float = 1.0, tolerance: float = 0.1, sessions: int = 8
) -> Extraction:
    """The d + 1 basis queries against label-only answers, read with the imaginary parts of their output slots.

    Found on the first label-only design: the key switching of the rotations leaves the first slot of every result
    ciphertext a key-dependent imaginary offset ``e`` (about 1e-6, the same for every query of a session to a few
    percent; the other slots' imaginary parts are zero-mean noise near 3e-8). Blinding multiplied it too, so that
    slot decrypted to ``r (m + i e)`` and
    ``Re / |Im| = m / |e|``: the secret factor cancelled, and one query per point gave the margin up to the common
    factor ``|e|``, which the provider's own normalisation (unit norm of each pair's row and bias) then fixes.
    Since the provider returns real parts only (``ct + conj(ct)``), the offset is no longer blinded and the attack
    fails; it stays here as the test of that.
    ``new_session`` opens a session and returns its complex output oracle (``output_oracle``); a session whose
    offset is too small is recognised by asking one probe twice (the two ratios disagree), and replaced.
    Only the output in each ciphertext's first slot is recovered (for two classes, the whole head).
    """
    queries, probe = basis_queries(d, scale), np.full(d, scale)
    used = 0
    for _ in range(sessions):
        outputs = new_session()
        first, second = (outputs(probe) for _ in range(2))
        used += 2
        ratios = [np.real(v[0]) / np.abs(np.imag(v[0])) for v in (first, second)]
        if abs(ratios[0] / ratios[1] - 1) < tolerance:
            break
    values = np.array([outputs(q) for q in queries])
    matrix, bias = solve_affine(queries, np.real(values) / np.abs(np.imag(values)))
    norms = np.linalg.norm(np.column_stack([matrix, bias]), axis=1)
    return Extraction(used + len(queries), matrix / norms[:, None], bias / norms)


# (c) labels only ----------------------------------------------------------------------------------------------------
def fit_copy(X: np.ndarray, answers: np.ndarray, use_logits: bool, n_classes: int):
    """A thief's copy of the head from labelled queries: least squares on logits (exact once n >= d + 1), or a
    logistic regression on labels (weakly regularised: a linear head's labels are linearly separable). Returns
    a function from queries to per-class scores."""
    if use_logits:
        return LinearRegression().fit(X, answers).predict
    seen = np.unique(answers)
    if len(seen) == 1:  # too few queries to have seen a second class
        return lambda Z: np.tile(np.eye(n_classes)[seen[0]], (len(Z), 1))
    model = LogisticRegression(C=100.0, max_iter=2000).fit(X, answers)

    def scores(Z: np.ndarray) -> np.ndarray:
        out = np.full((len(Z), n_classes), -np.inf)
        decision = model.decision_function(Z)
        out[:, model.classes_] = np.column_stack([-decision, decision]) if decision.ndim == 1 else decision
        return out

    return scores


def _top_two_gap(scores: np.ndarray) -> np.ndarray:
    top = np.sort(scores, axis=1)
    return top[:, -1] - top[:, -2]


def agreement_curve(
    pool: np.ndarray,
    pool_logits: np.ndarray,
    test: np.ndarray,
    test_labels: np.ndarray,
    counts: Sequence[int],
    *,
    use_logits: bool,
    active: bool = False,
    seeds: Sequence[int] = (0, 1, 2),
) -> list[dict]:
    """Agreement of a copy with the provider's labels on a test split, per number of queries from the thief's
    pool (mean, min and max over ``seeds``). ``pool_logits`` are the provider's answers: the copy sees them whole
    (``use_logits``) or only their argmax. Queries are drawn at random, or (``active``) the first ``counts[0]`` at
    random and each later batch where the current copy is least sure (smallest gap between its top two scores),
    the uncertainty sampling of active learning."""
    answers = pool_logits if use_logits else np.argmax(pool_logits, axis=1)
    counts = [n for n in counts if n <= len(pool)]
    scores: dict[int, list[float]] = {n: [] for n in counts}
    for seed in seeds:
        order = list(np.random.default_rng(seed).permutation(len(pool)))
        asked, rest = order[: counts[0]], order[counts[0] :]
        for n in counts:
            if active and len(asked) < n:
                gap = _top_two_gap(fit_copy(pool[asked], answers[asked], use_logits, pool_logits.shape[1])(pool[rest]))
                chosen = set(np.argsort(gap, kind="stable")[: n - len(asked)].tolist())
                asked += [q for i, q in enumerate(rest) if i in chosen]
                rest = [q for i, q in enumerate(rest) if i not in chosen]
            elif len(asked) < n:
                asked, rest = asked + rest[: n - len(asked)], rest[n - len(asked) :]
            copy = fit_copy(pool[asked], answers[asked], use_logits, pool_logits.shape[1])
            scores[n].append(float(np.mean(np.argmax(copy(test), axis=1) == test_labels)))
    return [{"queries": n, "agreement": float(np.mean(s)), "min": min(s), "max": max(s)} for n, s in scores.items()]


def queries_to_reach(curve: list[dict], target: float) -> int | None:
    """The fewest queries in ``curve`` whose mean agreement reaches ``target`` (None if none does)."""
    return next((row["queries"] for row in curve if row["agreement"] >= target), None)


def _bisect(
    is_positive: Callable[[np.ndarray], bool], start: np.ndarray, direction: np.ndarray, steps: int
) -> tuple[float, int]:
    """The t where the label of ``start + t direction`` turns positive (it grows along ``direction``), found by
    doubling a bracket around 0 and then ``steps`` bisections; returns (t, queries used)."""
    low, high, used = -1.0, 1.0, 2
    while is_positive(start + low * direction):
        low, used = 2 * low, used + 1
    while not is_positive(start + high * direction):
        high, used = 2 * high, used + 1
    for _ in range(steps):
        mid = (low + high) / 2
        if is_positive(start + mid * direction):
            high = mid
        else:
            low = mid
        used += 1
    return (low + high) / 2, used


def boundary_attack(
    is_positive: Callable[[np.ndarray], bool], x_neg: np.ndarray, x_pos: np.ndarray, steps: int, delta: float
) -> Extraction:
    """A two-class head's margin direction from labels alone (Lowd and Meek's line search, KDD 2005).

    With ``f(x) = w.x + c`` and ``u = x_pos - x_neg`` (so ``w.u > 0``): bisect to a boundary point ``x_b`` on the
    segment, then for each coordinate i find ``t_i`` with ``f(x_b + delta e_i + t_i u) = 0``, i.e.
    ``w_i / w.u = -t_i / delta``. The result is ``w`` and ``c`` divided by the positive ``w.u``: exactly what
    decides the labels. About ``d (steps + 2)`` queries, whatever the answers' blinding, since r > 0 keeps the
    sign.
    """
    x_neg = np.asarray(x_neg, dtype=np.float64)
    u = np.asarray(x_pos, dtype=np.float64) - x_neg
    t_b, used = _bisect(is_positive, x_neg, u, steps)
    x_b = x_neg + t_b * u
    w = np.empty(len(x_b))
    for i in range(len(x_b)):
        step = np.zeros(len(x_b))
        step[i] = delta
        t_i, n = _bisect(is_positive, x_b + step, u, steps)
        w[i], used = -t_i / delta, used + n
    return Extraction(used, w[None, :], np.array([-(w @ x_b)]))


# the real protocol as an oracle ---------------------------------------------------------------------------------------
def decrypted_slots(
    client: ClientSession, provider, model_id: str, x: np.ndarray, mode: str, answer: str = "logits"
) -> list[np.ndarray]:
    """The attacker's whole view of one answer: every decrypted slot (complex) of every result ciphertext. The
    client holds the secret key, so nothing stops it from reading the slots and the imaginary parts that the
    protocol's ``decrypt_result`` ignores."""
    layout = answer_layout(provider, model_id, mode, answer)
    session = client.sessions.get(provider.endpoint)
    if session is None:
        session = client.sessions[provider.endpoint] = provider.open_session(client.public_context())
    result = provider.evaluate(session, model_id, client.encrypt_query(x, layout, mode, answer))
    return client._keys.decrypt_products(wire.decode(result, wire.MessageType.RESULT).blobs, ckks.SCALE)


def answer_layout(provider, model_id: str, mode: str, answer: str = "logits") -> Layout:
    """The layout of a model's answers: one output per class, or per class pair for label-only answers."""
    return Layout.from_dict(provider.describe(model_id)["label_modes" if answer == "label" else "modes"][mode])


def output_oracle(client: ClientSession, provider, model_id: str, mode: str, answer: str = "logits") -> Oracle:
    """The decrypted output slots of one real encrypted query per call, as complex numbers: the logits, or for
    label-only answers the blinded pair margins (``run_encrypted_query`` returns only the wins they imply)."""
    layout = answer_layout(provider, model_id, mode, answer)

    def outputs(x: np.ndarray) -> np.ndarray:
        return np.concatenate(decrypted_slots(client, provider, model_id, x, mode, answer))[layout.output_indices()]

    return outputs


def protocol_oracle(client: ClientSession, provider, model_id: str, mode: str, answer: str = "logits") -> Oracle:
    """The real parts of ``output_oracle``: the logits, or the blinded pair margins, as the protocol means them."""
    outputs = output_oracle(client, provider, model_id, mode, answer)
    return lambda x: np.real(outputs(x))
