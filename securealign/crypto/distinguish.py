"""Distinguishers (issue 18): can a client tell which of two candidate heads answered, when both give it the same
answer? If it can, one query confirms or refutes any guess of the provider's model (a public head it fine-tuned
from, the version it serves, a stolen copy's fidelity), whatever the answer's values say.

The game. The client knows everything it legitimately holds: its secret key, the seed of its query's random half,
its Galois keys (it made them), the public algorithm (``CompiledHead``), and two candidate heads that agree on its
query. For a query ``x`` the second candidate is the first composed with a reflection ``R = I - 2 u u^T`` whose
mirror ``u`` is orthogonal to ``x`` (``candidate_pair``): ``A R x = A x``, so the logits are identical, and ``A R``
keeps the norm of every row and every difference of rows, so the normalised pairwise margins of a label-only
answer are identical too (their blinding factors then have the same distribution under both candidates). In the
issue's terms ``V2 = V1 + D`` with ``D = -2 u u^T V1`` orthogonal to the query. Each candidate is served by a
provider of its own under the same model id (so the RESULT metadata cannot tell them apart); per trial the
provider's coin picks one, and the client guesses from the RESULT. Coins are balanced (half the trials each, in a
random order), so a distinguisher that learns nothing and falls back to a fixed guess scores exactly 0.5.

The distinguishers (``DISTINGUISHERS``), each from what the client holds:

(a) ``recompute``: run the public algorithm on its own query ciphertext and Galois keys for each candidate and
    compare the result's bytes. Label-only answers carry fresh secret factors, so the client first estimates them
    from the decrypted margins and snaps them to the provider's grid of factors (``answers.blinding_factors``).
(b) ``decrypted-distance``: the distance, over every slot's real and imaginary parts, between the decrypted answer
    and each candidate's recomputed decryption (the exact expected decryption, evaluation being deterministic):
    the Gaussian likelihood test once noise is added. ``noise-template``: the same against a plaintext prediction
    from the client's own decrypted (noisy) query slots, which carries the query's encryption noise through the
    candidate's weights (no HE recomputation; for label-only answers the factors are fitted per candidate).
(c) ``c1-recompute`` and ``c1-distance``: the result's second half, c1, is a function of the query's c1 (from the
    client's seed), the Galois keys' random halves and the weights, with no secret key in it: compare it with each
    candidate's recomputed c1, exactly and by the centred distance of the coefficients mod q. ``c1_uniformity``
    tests whether c1 looks uniform at all.
(a') ``factor-search``: label-only answers with one margin (K = 2): enumerate the provider's factor grid around a
    calibrated estimate until a recomputation equals the answer; with more pairs the windows multiply (it gives up).

Circuit-private answers (``Classification(privacy="flooded")``) are played as the provider requires: flooded
queries, a fresh client key every tau answers; the client recomputes the deterministic part (``CompiledHead``'s
``_compute``, all but the re-randomisation and flood). ``weak_key`` plays a client that sends a public key of its
own choosing (``weak_public_key``), which is outside the semi-honest model and undoes the re-randomisation.

``run`` plays the trials against a real ``Provider`` (in process) and returns per distinguisher the accuracy with
its Wilson 95% interval; ``BlobGame`` (``fit_distinguish``: secure fits' cross-products) and
``generation.head_distinguish.VocabularyGame`` (the vocabulary head) are played by ``run_blobs``.
``benchmarks/distinguish.py`` prints the table; ``tests/test_crypto_distinguish.py`` requires success against
deterministic results and chance against re-randomised, flooded ones.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import tenseal.sealapi as seal

from securealign.crypto import ckks, flooding, wire
from securealign.crypto.answers import pairs, pairwise_head
from securealign.crypto.client import ClientSession
from securealign.crypto.errors import ParameterError
from securealign.crypto.layout import DEPTH, Layout, simulate_packed
from securealign.crypto.provider import CompiledHead, Provider

# the provider's blinding factors are 2^(bits k / 2^52) for a 52-bit integer k (answers.blinding_factors; bits is
# BLIND_BITS, or PRIVATE_BLIND_BITS for circuit-private answers: CompiledHead.blind_bits)
_FACTOR_GRID = 2.0**52


def reflection(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``I - 2 u u^T`` for a random unit ``u`` orthogonal to ``x``: an orthogonal matrix that fixes ``x``."""
    u = orthogonal_unit(x, rng)
    return np.eye(len(x)) - 2.0 * np.outer(u, u)


def orthogonal_unit(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random unit vector orthogonal to ``x``."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or len(x) < 2 or not np.any(x):
        raise ParameterError("a direction orthogonal to x needs a nonzero vector of at least two dimensions")
    u = rng.standard_normal(len(x))
    u -= (u @ x) / (x @ x) * x
    return u / np.linalg.norm(u)


def candidate_pair(
    mode: str, x: np.ndarray, W: np.ndarray, b: np.ndarray, V: np.ndarray, c: np.ndarray, rng: np.random.Generator
) -> tuple[dict, dict]:
    """Two registrations of a served model that agree on the query ``x`` (the client's input in ``mode``): the
    model itself, and the model with its input reflected in a mirror orthogonal to ``x`` (paper mode: ``R V``, on
    the mapped query; sealed mode: ``R W``, on the raw one). Each is a dict of ``Provider.register_sealed``'s
    arguments; the logits and the normalised pair margins on ``x`` are equal (to float rounding)."""
    R = reflection(x, rng)
    first = {"W": W, "b": b, "V": V, "c": c}
    second = {"W": W, "b": b, "V": R @ V, "c": c} if mode == "paper" else {"W": R @ W, "b": b, "V": V, "c": c}
    return first, second


def stretched_pair(
    mode: str, x: np.ndarray, W: np.ndarray, b: np.ndarray, V: np.ndarray, c: np.ndarray, rng: np.random.Generator
) -> tuple[dict, dict]:
    """Two registrations with the same logits on ``x`` whose largest row norms are a power of two apart: the
    second adds ``w u^T`` to the computed matrix (``u`` a random unit vector orthogonal to ``x``), with ``w`` three
    times the largest row norm on that row. The logits agree; the normalised margins do not (label-only answers
    differ in distribution), so this pair is for logits answers and what a flood's size reveals."""
    matrix, _ = computation({"W": W, "b": b, "V": V, "c": c}, mode)
    u = orthogonal_unit(x, rng)
    norms = np.linalg.norm(matrix, axis=1)
    w = np.zeros(len(norms))
    w[np.argmax(norms)] = 3.0 * norms.max()
    first = {"W": W, "b": b, "V": V, "c": c}
    if mode == "paper":  # V^T + w u^T
        return first, {"W": W, "b": b, "V": V + np.outer(u, w), "c": c}
    # (W + u z^T) V = W V + u (V^T z)^T with V^T z = w
    z = np.linalg.lstsq(V.T, w, rcond=None)[0]
    return first, {"W": W + np.outer(u, z), "b": b, "V": V, "c": c}


def computation(registration: dict, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """The (K x d matrix, bias) a provider evaluates for a registration in ``mode``, computed as it computes them."""
    W, b, V, c = (np.asarray(registration[k], dtype=np.float64) for k in ("W", "b", "V", "c"))
    return (V.T, c) if mode == "paper" else ((W @ V).T, b @ V + c)


def aimed_queries(queries: np.ndarray, matrix: np.ndarray, bias: np.ndarray, margin: float, count: int) -> np.ndarray:
    """The client's queries for a factor search: the ``count`` of ``queries`` whose first normalised pair margin is
    largest for their norm, each scaled so that margin is ``margin`` in size (a large margin pins the factor best;
    the provider's headroom holds ``|margin| 2^BLIND_BITS`` below 2^19, so ``margin`` up to about 30)."""
    rows, offsets = pairwise_head(np.asarray(matrix, dtype=np.float64), np.asarray(bias, dtype=np.float64))
    along = queries @ rows[0]
    best = np.argsort(-np.abs(along) / np.linalg.norm(queries, axis=1))[:count]
    return np.array([queries[i] * (margin - np.sign(along[i]) * offsets[0]) / abs(along[i]) for i in best])


def wilson(successes: int, trials: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95% by default)."""
    if trials <= 0:
        raise ParameterError("an interval needs at least one trial")
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


# what the client can read off a ciphertext ----------------------------------------------------------------------------
def polynomials(blob: bytes) -> np.ndarray:
    """The two halves (c0, c1) of a serialized ciphertext in coefficient form, one row per prime of its level
    stacked: shape (2, primes, N), uint64 residues."""
    ct = ckks.load_bytes(seal.Ciphertext, blob)
    if ct.is_ntt_form():
        ckks.evaluator().transform_from_ntt_inplace(ct)
    primes = ct.coeff_modulus_size()
    members = ckks.inflated(ckks.save_bytes(ct), 1 << 26)
    size = 2 * primes * ckks.POLY_DEGREE
    return np.frombuffer(members[-8 * size :], dtype=np.uint64).reshape(2, primes, ckks.POLY_DEGREE)


def centred_distance(a: np.ndarray, b: np.ndarray, moduli: Sequence[int]) -> float:
    """The L2 norm of ``a - b`` with each residue centred in (-q/2, q/2] (rows: primes); ~q / sqrt(12) per
    coefficient for unrelated polynomials, 0 for equal ones."""
    total = 0.0
    for row_a, row_b, q in zip(a, b, moduli, strict=True):
        diff = row_a.astype(np.int64) - row_b.astype(np.int64)  # residues < q < 2^62: no overflow
        diff = np.where(diff < 0, diff + q, diff)
        centred = np.where(diff > q // 2, diff - q, diff).astype(np.float64)
        total += float(centred @ centred)
    return math.sqrt(total)


def c1_uniformity(c1_rows: np.ndarray, moduli: Sequence[int], bins: int = 64) -> float:
    """The chi-square p-value of c1's coefficients against the uniform distribution on [0, q) (per prime, binned
    by their top bits and pooled): tiny for a structured half, uniform on [0, 1] for a uniform one."""
    from scipy.stats import chi2

    counts = np.zeros(bins)
    for row, q in zip(c1_rows, moduli, strict=True):
        counts += np.bincount((row.astype(np.float64) / q * bins).astype(int).clip(0, bins - 1), minlength=bins)
    expected = counts.sum() / bins
    return float(chi2.sf(((counts - expected) ** 2 / expected).sum(), bins - 1))


def _moduli(parms_id) -> list[int]:
    return [q.value() for q in ckks.context().get_context_data(parms_id).parms().coeff_modulus()]


# the client's precomputation per query --------------------------------------------------------------------------------
@dataclass
class Recomputation:
    """A candidate's result by the public algorithm on the client's own query: its bytes, its decryption (every
    slot) and its second halves c1 in coefficient form."""

    blobs: tuple[bytes, ...]
    slots: list[np.ndarray]
    c1: np.ndarray


@dataclass
class Prediction:
    """What the client computes for one candidate before any answer arrives: the public algorithm compiled, and
    (logits) the result it gives. Label-only answers carry fresh factors, so there it is computed per answer."""

    head: CompiledHead
    result: Recomputation | None


class Source(Protocol):
    """What a game gives its distinguishers per candidate: the recomputed result and a plaintext prediction."""

    def recomputed(self, obs: Observation, b: int) -> Recomputation: ...

    def template(self, obs: Observation, b: int) -> list[np.ndarray]: ...


@dataclass
class Observation:
    """One answer as the guessing party sees it (the ciphertexts), decrypted, with per-candidate work cached so
    that every distinguisher judges the same trial."""

    source: Source
    blobs: tuple[bytes, ...]
    slots: list[np.ndarray]
    meta: dict = field(default_factory=dict)  # the RESULT's metadata, where there is one
    notes: dict[str, int] = field(default_factory=dict)  # what the expensive distinguishers spent
    _cache: dict = field(default_factory=dict)

    def _once(self, key, compute: Callable):
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def c1(self) -> np.ndarray:
        return self._once("c1", lambda: np.stack([polynomials(blob)[1] for blob in self.blobs]))

    def recomputed(self, b: int) -> Recomputation:
        return self._once(("recomputed", b), lambda: self.source.recomputed(self, b))

    def template(self, b: int) -> list[np.ndarray]:
        return self._once(("template", b), lambda: self.source.template(self, b))


@dataclass
class Instance:
    """One query of the client: its QUERY message and ciphertext, its decrypted (noisy) slots, and per candidate
    the public algorithm compiled and, for logits, the recomputed result."""

    client: Client
    mode: str
    answer: str
    layout: Layout
    query: bytes
    ciphertext: seal.Ciphertext
    query_slots: np.ndarray
    predictions: tuple[Prediction, Prediction]

    def template(self, obs: Observation, b: int) -> list[np.ndarray]:
        """Candidate b's plaintext prediction of every slot from the client's noisy query slots; for label-only
        answers with each pair's factor fitted to this answer's margins."""
        head = self.predictions[b].head
        factors = self.factors(obs, b) if head.blind else np.ones(len(head.bias))
        return simulate_packed(self.layout, head.matrix * factors[:, None], head.bias * factors, self.query_slots)

    def template_unit(self, b: int) -> list[np.ndarray]:
        """Candidate b's plaintext prediction from the noisy query slots with every factor 1."""
        head = self.predictions[b].head
        return simulate_packed(self.layout, head.matrix, head.bias, self.query_slots)

    def factors(self, obs: Observation, b: int) -> np.ndarray:
        """Candidate b's blinding factors as the client estimates them: answer margins over unit-factor ones."""
        return self.factor_estimate(obs, b)[0]

    def factor_estimate(self, obs: Observation, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Per pair, candidate b's factor estimated from this answer, and its relative error bound (six standard
        errors): each output's copies but the first (slot 0 of a result carries a key-switching offset) averaged,
        over the unit-factor prediction from the client's noisy query; the error from the copies' spread."""
        unit = _copy_means(self.layout, self.template_unit(b))
        means = _copy_means(self.layout, obs.slots)
        spread = np.concatenate(
            [
                (np.real(v).reshape(self.layout.span, -1)[1:] - row).ravel()
                for v, row in zip(obs.slots, _coset_rows(self.layout, obs.slots), strict=True)
            ]
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            estimate = means / unit
            error = 6 * float(np.std(spread)) / np.sqrt(self.layout.span - 1) / np.abs(means)
        valid = np.isfinite(estimate) & np.isfinite(error)
        top = 2.0 ** self.predictions[b].head.blind_bits
        return np.where(valid, np.clip(estimate, 1.0, top), 1.0), np.where(valid, error, np.inf)

    def recomputed(self, obs: Observation, b: int) -> Recomputation:
        """Candidate b's result by the public algorithm: precomputed for logits; for label-only answers computed
        now with the estimated factors snapped to the provider's grid."""
        prediction = self.predictions[b]
        if prediction.result is not None:
            return prediction.result
        head = prediction.head
        return self.client.recompute(head, self.ciphertext, _snap(self.factors(obs, b), head.blind_bits))


class Client:
    """The distinguishing client: a real ``ClientSession`` plus what it holds besides (its loaded Galois keys)."""

    def __init__(self, session: ClientSession) -> None:
        self.session = session

    @functools.cached_property
    def galois_keys(self) -> seal.GaloisKeys:
        """The client's own Galois keys, loaded from the context it sent (only the recomputing distinguishers need
        them)."""
        message = wire.decode(self.session.public_context(), wire.MessageType.CONTEXT)
        galois = message.blobs[message.meta["blobs"].index("galois_keys")]
        return ckks.load_galois_keys(galois, self.session.steps)[0]

    def decrypt(self, blobs: Sequence[bytes], scale: float = ckks.SCALE) -> list[np.ndarray]:
        return self.session._keys.decrypt_products(tuple(blobs), scale)

    def evaluate(
        self, head: CompiledHead, ciphertext: seal.Ciphertext, factors: np.ndarray | None = None
    ) -> tuple[bytes, ...]:
        """The public algorithm, run by the client on its own ciphertext and keys exactly as the provider runs it,
        up to the re-randomisation and flood of a circuit-private head, which come from the provider's randomness:
        for a blinded head with the given factors (1 for logits)."""
        factors = np.ones(head.layout.n_classes) if factors is None else factors
        return tuple(ckks.save_bytes(ct) for ct in head._compute(ciphertext, self.galois_keys, factors))

    def recompute(
        self, head: CompiledHead, ciphertext: seal.Ciphertext, factors: np.ndarray | None = None
    ) -> Recomputation:
        blobs = self.evaluate(head, ciphertext, factors)
        slots = self.decrypt(blobs, result_scale(head))
        return Recomputation(blobs, slots, np.stack([polynomials(blob)[1] for blob in blobs]))

    def prepare(self, mode: str, answer: str, x: np.ndarray, heads: Sequence[CompiledHead], privacy: str) -> Instance:
        """Encrypt the query once and precompute, per candidate (its head compiled as the provider compiles it),
        what the client can before any answer arrives."""
        layout = heads[0].layout
        query = self.session.encrypt_query(x, layout, mode, answer, privacy)
        scale = flooding.PRIVATE_QUERY_SCALE if privacy == "flooded" else ckks.SCALE
        ciphertext = ckks.load_fresh(wire.decode(query, wire.MessageType.QUERY).blobs[0], DEPTH, scale)
        plain = seal.Plaintext()
        self.session._keys.decryptor.decrypt(ciphertext, plain)
        query_slots = np.asarray(ckks.encoder().decode_complex(plain))
        predictions = [Prediction(head, None if head.blind else self.recompute(head, ciphertext)) for head in heads]
        return Instance(self, mode, answer, layout, query, ciphertext, query_slots, (predictions[0], predictions[1]))


def weak_public_key(session: ClientSession) -> bytes:
    """A public key the client chose rather than generated: ``(-s, 1)`` in NTT form at the key level (the constant
    polynomial 1 as its random half, no error), serialized like a genuine one (same size, two parts, not
    transparent). A semi-honest client does not do this; it shows what circuit privacy rests on. SEAL encrypts zero
    for the result's level one level up and divides by the dropped prime, so ``(u + e1) / q1`` and
    ``(-s u + e0) / q1`` round to zero: the provider's encryption of zero is (0, 0), and the result's second half is
    the deterministic one again."""
    keys = session._keys
    genuine = seal.PublicKey()
    keys.keygen.create_public_key(genuine)
    data = ckks.save_bytes(genuine)
    members = ckks.inflated(data, 1 << 28)
    secret = ckks.inflated(ckks.save_bytes(keys.secret_key), 1 << 28)
    moduli = [q.value() for q in ckks.context().key_context_data().parms().coeff_modulus()]
    size = len(moduli) * ckks.POLY_DEGREE
    s_ntt = np.frombuffer(secret[-8 * size :], dtype=np.uint64).reshape(len(moduli), -1)
    chosen = np.zeros((2, len(moduli), ckks.POLY_DEGREE), dtype=np.uint64)
    for i, q in enumerate(moduli):
        chosen[0, i] = (np.uint64(q) - s_ntt[i]) % np.uint64(q)
        chosen[1, i] = 1
    body = members[: -8 * 2 * size] + chosen.tobytes()
    magic, header_size, major, minor, _, reserved, _ = ckks._SEAL_HEADER.unpack_from(data)
    none = int(seal.COMPR_MODE_TYPE.NONE)
    return ckks._SEAL_HEADER.pack(magic, header_size, major, minor, none, reserved, header_size + len(body)) + body


def with_public_key(session: ClientSession, public_key: bytes) -> ClientSession:
    """The session with its context's public key replaced (the client's own choice of what it sends)."""
    message = wire.decode(session.public_context(), wire.MessageType.CONTEXT)
    blobs = list(message.blobs)
    blobs[message.meta["blobs"].index("public_key")] = public_key
    session._context = wire.encode(wire.MessageType.CONTEXT, message.meta, blobs)
    return session


def result_scale(head: CompiledHead) -> float:
    """The scale a head's results decrypt at: ``SCALE``, or a circuit-private head's own result scale."""
    return head.private.result_scale if head.private is not None else ckks.SCALE


def _coset_rows(layout: Layout, slot_vectors: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Per result ciphertext, the mean of every coset's copies but the first (one row of ``stride`` values)."""
    return [np.real(v).reshape(layout.span, layout.stride)[1:].mean(axis=0) for v in slot_vectors]


def _copy_means(layout: Layout, slot_vectors: Sequence[np.ndarray]) -> np.ndarray:
    """The outputs as ``Layout.unpack_result`` reads them, but without each coset's first copy."""
    rows = _coset_rows(layout, slot_vectors)
    return np.concatenate([row[: layout.classes_in(t)] for t, row in enumerate(rows)])


def _grid(factors: np.ndarray, bits: int) -> np.ndarray:
    """Each factor's position on the provider's grid, ``k`` with ``factor = 2^(bits k / 2^52)``."""
    return np.log2(np.clip(factors, 1.0, None)) / bits * _FACTOR_GRID


def _factor(k: int, bits: int) -> float:
    return 2.0 ** (bits * k / _FACTOR_GRID)


def _snap(factors: np.ndarray, bits: int) -> np.ndarray:
    """The provider's grid point nearest to each estimated factor (``answers.blinding_factors``'s expression)."""
    return np.array([_factor(int(k), bits) for k in np.clip(np.round(_grid(factors, bits)), 0, _FACTOR_GRID - 1)])


Distinguisher = Callable[[Observation], int]


def _argmin(scores: Sequence[float]) -> int:
    """The candidate with the smaller score; 0 on a tie (no information)."""
    return int(scores[1] < scores[0])


def _equal(observed, expected: Sequence) -> int:
    """The candidate whose recomputation equals the observation, if exactly one does; else 0 (no information)."""
    matches = [
        bool(np.array_equal(observed, e)) if isinstance(observed, np.ndarray) else observed == e for e in expected
    ]
    return 1 if matches == [False, True] else 0


def _slot_distance(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    return float(sum(np.sum(np.abs(np.asarray(x) - np.asarray(y)) ** 2) for x, y in zip(a, b, strict=True)))


def recompute(obs: Observation) -> int:
    return _equal(obs.blobs, [obs.recomputed(b).blobs for b in (0, 1)])


def decrypted_distance(obs: Observation) -> int:
    return _argmin([_slot_distance(obs.slots, obs.recomputed(b).slots) for b in (0, 1)])


def noise_template(obs: Observation) -> int:
    return _argmin([_slot_distance(obs.slots, obs.template(b)) for b in (0, 1)])


def c1_recompute(obs: Observation) -> int:
    return _equal(obs.c1(), [obs.recomputed(b).c1 for b in (0, 1)])


def c1_distance(obs: Observation) -> int:
    moduli = _moduli(ckks.bottom_parms_id())
    distances = [
        sum(
            (centred_distance(row, ref, moduli) for row, ref in zip(obs.c1(), obs.recomputed(b).c1, strict=True)),
            0.0,
        )
        for b in (0, 1)
    ]
    return _argmin(distances)


def flood_size(obs: Observation) -> int:
    """The flood's size, which every flooded RESULT declares (``max_residual``, ten iid flood stds) and which the
    client could also estimate from thousands of slots, against what each candidate's flood would be (the client
    compiles both heads as the provider does, flood sizing included): equal sizes give nothing (0)."""
    instance = obs.source
    declared = obs.meta.get("max_residual")
    if not isinstance(instance, Instance) or declared is None:
        return 0
    expected = [p.head.max_residual() if p.head.private is not None else math.inf for p in instance.predictions]
    return _argmin([abs(declared - e) for e in expected])


# evaluations a factor search may spend per candidate before it gives up (about 8 ms each for a 64-d input)
SEARCH_BUDGET = 4000


def factor_search(obs: Observation, budget: int = SEARCH_BUDGET) -> int:
    """Label-only answers: enumerate the provider's grid of factors around the estimate, nearest first, and
    recompute each candidate until one equals the answer byte for byte; logits answers: the plain recomputation.

    The estimate is refined by calibration: the decryptions of two recomputations near the first estimate (3,000
    grid steps apart, the same factor to 1e-11) show the offset the evaluation noise adds to each output (about
    4e-7), which is taken off the answer's outputs, and how much that offset moves with the factor. The window is
    the larger of eight standard errors of the copies' mean and twice that movement (measured on known factors:
    it covers the true one). The K (K - 1) / 2 factors must be guessed jointly, so beyond one pair the windows
    multiply, and the search gives up (0) when their product exceeds the budget."""
    instance = obs.source
    if not isinstance(instance, Instance) or not instance.predictions[0].head.blind:
        return recompute(obs)
    layout = instance.layout
    for b in (0, 1):
        head = instance.predictions[b].head
        bits = head.blind_bits
        steps = _FACTOR_GRID / (bits * math.log(2))  # grid steps per unit of relative error
        estimate, error = instance.factor_estimate(obs, b)
        if not np.all(np.isfinite(error)) or float(np.prod(2 * np.ceil(error * steps * 4 / 3) + 1)) > budget:
            continue
        obs.notes["searched"] = 1
        unit, means = _copy_means(layout, instance.template_unit(b)), _copy_means(layout, obs.slots)
        offsets = []
        for shift in (0, 3000):
            factors = np.array([_factor(int(k) + shift, bits) for k in np.round(_grid(estimate, bits))])
            calibration = instance.client.recompute(head, instance.ciphertext, factors)
            obs.notes["evaluations"] = obs.notes.get("evaluations", 0) + 1
            if calibration.blobs == obs.blobs:
                obs.notes["found"] = 1
                return b
            offsets.append(_copy_means(layout, calibration.slots) - factors * unit)
        moved = np.abs(offsets[0] - offsets[1]) / np.abs(means)
        half = np.ceil(np.maximum(error * 4 / 3, 2 * moved) * steps)
        if float(np.prod(2 * half + 1)) > budget:
            continue
        centre = np.round(_grid((means - offsets[0]) / unit, bits))
        window = itertools.product(*(range(-int(h), int(h) + 1) for h in half))
        for step in sorted(window, key=lambda o: sum(map(abs, o))):
            factors = np.array([_factor(int(c) + o, bits) for c, o in zip(centre, step, strict=True)])
            obs.notes["evaluations"] += 1
            if instance.client.evaluate(head, instance.ciphertext, factors) == obs.blobs:
                obs.notes["found"] = 1
                return b
    return 0


DISTINGUISHERS: dict[str, Distinguisher] = {
    "recompute": recompute,
    "decrypted-distance": decrypted_distance,
    "noise-template": noise_template,
    "c1-recompute": c1_recompute,
    "c1-distance": c1_distance,
    "factor-search": factor_search,
    "flood-size": flood_size,
}


Game = tuple[Provider, Provider]


@dataclass
class Tally:
    """One distinguisher's record over the trials."""

    name: str
    correct: int = 0
    trials: int = 0

    @property
    def accuracy(self) -> float:
        return self.correct / self.trials

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.correct, self.trials)


@dataclass
class Report:
    """Accuracy per distinguisher over a run, plus how often c1 equalled a recomputation and c1's uniformity."""

    mode: str
    answer: str
    tallies: dict[str, Tally]
    privacy: str = ""
    c1_matches: int = 0
    c1_pvalues: list[float] = field(default_factory=list)
    notes: dict[str, int] = field(default_factory=dict)  # summed over trials: factor searches and evaluations

    @property
    def trials(self) -> int:
        return next(iter(self.tallies.values())).trials


Register = Callable[[Provider, str, dict], None]


def register_sealed(provider: Provider, model: str, registration: dict) -> None:
    """The default registration: a sealed model (served in both modes), logits and label-only answers."""
    provider.register_sealed(model, registration["W"], registration["b"], registration["V"], registration["c"])


def serving(
    pairs: Sequence[Sequence[dict]],
    register: Register = register_sealed,
    make_provider: Callable[[], Provider] = Provider,
) -> Game:
    """One provider per candidate: pair i's first registration is served by the first provider and its second by
    the second, both under the model id ``model_id(i)``, so the RESULT metadata names the same model either way."""
    providers = (make_provider(), make_provider())
    for i, pair in enumerate(pairs):
        for provider, reg in zip(providers, pair, strict=True):
            register(provider, model_id(i), reg)
    return providers


@dataclass
class Classification:
    """A classification game: the client's queries, per query the two candidates' computations, and the two
    providers serving them (``serving``); clients (keys) are made from it afresh as the game needs."""

    mode: str
    answer: str
    queries: np.ndarray
    computations: list[list[tuple[np.ndarray, np.ndarray]]]
    providers: Game
    privacy: str = "none"
    weak_key: bool = False
    heads: list[list[CompiledHead]] = field(default_factory=list)

    def __post_init__(self) -> None:
        """The candidates' heads compiled once, as the provider compiles them (a circuit-private one measures its
        noise bound; only its flood depends on that, never the deterministic part the client recomputes)."""
        policy = self.providers[0].flood_policy if self.privacy == "flooded" else None
        blind = self.answer == "label"
        self.heads = [
            [
                CompiledHead.compile(*(pairwise_head(m, c) if blind else (m, c)), blind=blind, policy=policy)
                for m, c in pair
            ]
            for pair in self.computations
        ]

    @property
    def answers_per_key(self) -> int | None:
        """How many answers one key may decrypt: a provider's tau for circuit-private ones, else unbounded."""
        policy = self.providers[0].flood_policy
        return policy.tau if self.privacy == "flooded" and policy is not None else None

    @classmethod
    def build(
        cls,
        mode: str,
        answer: str,
        queries: np.ndarray,
        served: dict,
        rng: np.random.Generator,
        register: Register = register_sealed,
        make_provider: Callable[[], Provider] = Provider,
        privacy: str = "none",
        pair: Callable[..., tuple[dict, dict]] = candidate_pair,
    ) -> Classification:
        """Per query a candidate pair built from the served model (``served``: ``W``, ``b``, ``V``, ``c``) by
        ``pair`` (``candidate_pair`` or ``stretched_pair``), served by two providers; ``privacy="flooded"`` asks for
        circuit-private answers."""
        pairs = [pair(mode, x, served["W"], served["b"], served["V"], served["c"], rng) for x in queries]
        computations = [[computation(r, mode) for r in pair] for pair in pairs]
        providers = serving(pairs, register, make_provider)
        return cls(mode, answer, np.asarray(queries), computations, providers, privacy)

    @property
    def layout(self) -> Layout:
        matrix = self.computations[0][0][0]
        outputs = len(pairs(matrix.shape[0])) if self.answer == "label" else matrix.shape[0]
        return Layout.plan(matrix.shape[1], outputs)

    def client(self) -> Client:
        """A fresh client (new keys) with the rotation keys this game's layout needs; with ``weak_key``, one that
        sends a public key of its choosing (``weak_public_key``)."""
        session = ClientSession([self.layout])
        return Client(with_public_key(session, weak_public_key(session)) if self.weak_key else session)

    def instance(self, client: Client, index: int) -> Instance:
        """Query ``index`` encrypted afresh by ``client``, with its precomputation."""
        return client.prepare(self.mode, self.answer, self.queries[index], self.heads[index], self.privacy)


def model_id(index: int) -> str:
    return f"candidate-{index}"


Ask = Callable[[int, int], Observation]


def play(
    trials: int,
    rng: np.random.Generator,
    names: Sequence[str],
    ask: Ask,
    mode: str,
    answer: str,
    until: Callable[[Report], bool] | None = None,
) -> Report:
    """``trials`` rounds (or fewer, once ``until`` holds for the report so far): a balanced random coin picks the
    candidate, ``ask(trial, coin)`` returns the answer as the guessing party observes it, and every named
    distinguisher guesses."""
    tallies = {name: Tally(name) for name in names}
    report = Report(mode, answer, tallies)
    for t, coin in enumerate(rng.permutation(np.arange(trials) % 2)):
        obs = ask(t, int(coin))
        for name in names:
            tally = tallies[name]
            tally.correct += DISTINGUISHERS[name](obs) == coin
            tally.trials += 1
        for key, value in obs.notes.items():
            report.notes[key] = report.notes.get(key, 0) + value
        if "c1-recompute" in names:
            report.c1_matches += any(np.array_equal(obs.c1(), obs.recomputed(b).c1) for b in (0, 1))
        if t < 16:  # a few p-values: is c1 uniform?
            report.c1_pvalues.append(c1_uniformity(obs.c1()[0], _moduli(ckks.bottom_parms_id())))
        if until is not None and until(report):
            break
    return report


def run(
    game: Classification,
    trials: int,
    rng: np.random.Generator,
    names: Sequence[str] = tuple(DISTINGUISHERS),
    until: Callable[[Report], bool] | None = None,
    requery: bool = True,
) -> Report:
    """Play ``trials`` rounds over the game's queries (query i against model ``model_id(i)``, in turn): the coin
    picks the provider, the client sees the RESULT. With ``requery`` every query is encrypted afresh each time it
    is asked, so that the rounds are independent even for deterministic results (their noise follows the query's);
    without it each query is encrypted once per key (enough when every answer carries fresh randomness of its
    own). One client key serves all rounds, or as many as the provider lets one key decrypt
    (``Classification.answers_per_key``): then a fresh key, with its sessions."""
    if not len(game.queries):
        raise ParameterError("no queries to play")
    state: dict = {}
    answers_per_key = game.answers_per_key

    def ask(t: int, coin: int) -> Observation:
        if not state or (answers_per_key is not None and t % answers_per_key == 0):
            for provider, session in zip(game.providers, state.get("sessions", ()), strict=False):
                provider.close_session(session)
            client = game.client()
            sessions = [p.open_session(client.session.public_context()) for p in game.providers]
            state.update(client=client, sessions=sessions, instances={})
        index = t % len(game.queries)
        if requery or index not in state["instances"]:
            state["instances"][index] = game.instance(state["client"], index)
        instance = state["instances"][index]
        reply = game.providers[coin].evaluate(state["sessions"][coin], model_id(index), instance.query)
        result = wire.decode(reply, wire.MessageType.RESULT)
        scale = result_scale(instance.predictions[coin].head)
        return Observation(instance, result.blobs, state["client"].decrypt(result.blobs, scale), result.meta)

    report = play(trials, rng, names, ask, game.mode, game.answer, until)
    report.privacy = game.privacy
    return report


# the other paths where one party decrypts what the other computed ---------------------------------------------------
BLOB_NAMES = ("recompute", "decrypted-distance", "c1-recompute", "c1-distance")


@dataclass
class BlobGame:
    """One party decrypts what the other computed on its ciphertexts with one of two candidate plaintexts (a
    secure fit's cross-product, the vocabulary head): ``answer(b)`` is the other party's answer with candidate
    ``b`` (computed afresh per call), ``predictions`` the guessing party's recomputation of each candidate with the
    public algorithm on its own ciphertexts, ``candidates`` the plaintexts themselves (for the record)."""

    answer: Callable[[int], tuple[bytes, ...]]
    decrypt: Callable[[Sequence[bytes]], list[np.ndarray]]
    predictions: tuple[Recomputation, Recomputation]
    candidates: tuple

    @classmethod
    def prepare(
        cls,
        answer: Callable[[int], tuple[bytes, ...]],
        recompute: Callable[[int], tuple[bytes, ...]],
        decrypt: Callable[[Sequence[bytes]], list[np.ndarray]],
        candidates: tuple,
    ) -> BlobGame:
        predictions = []
        for b in (0, 1):
            blobs = recompute(b)
            predictions.append(Recomputation(blobs, decrypt(blobs), np.stack([polynomials(x)[1] for x in blobs])))
        return cls(answer, decrypt, (predictions[0], predictions[1]), candidates)

    def recomputed(self, obs: Observation, b: int) -> Recomputation:
        return self.predictions[b]

    def template(self, obs: Observation, b: int) -> list[np.ndarray]:
        raise ParameterError("this game has no plaintext template")

    def observe(self, coin: int) -> Observation:
        """The other party's answer with candidate ``coin``, as the guessing party sees it."""
        blobs = self.answer(coin)
        return Observation(self, blobs, self.decrypt(blobs))


class Observable(Protocol):
    def observe(self, coin: int) -> Observation: ...


def run_blobs(games: Sequence[Observable], trials: int, rng: np.random.Generator, mode: str, answer: str) -> Report:
    """Play ``trials`` rounds over the games in turn: the coin picks the candidate, the decrypting party guesses."""
    return play(trials, rng, BLOB_NAMES, lambda t, coin: games[t % len(games)].observe(coin), mode, answer)
