"""The provider's side: it serves linear heads on ciphertexts and never holds a secret key.

A model is registered once and compiled into the matrix the protocol evaluates: in paper mode the head itself
(``V^T``, ``c``), in sealed mode the map and head pre-composed into one K x d_B matrix ``(W V)^T`` and bias
``b V + c`` (one multiplication instead of two chained products, and no intermediate rescale error). Its slot
vectors are encoded once at registration; each query then costs one plaintext multiplication, one rescale and
about log2(d) rotations per result ciphertext.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import tenseal.sealapi as seal

from securealign.crypto import ckks, flooding, wire
from securealign.crypto.answers import (
    ANSWERS,
    BLIND_BITS,
    PRIVACY,
    PRIVATE_BLIND_BITS,
    blinding_factors,
    pairwise_head,
    private_output_bits,
)
from securealign.crypto.errors import (
    AnswerRefusedError,
    DimensionError,
    KeyMismatchError,
    LimitExceededError,
    ParameterError,
    QueryBudgetError,
    UnknownModelError,
    UnknownSessionError,
)
from securealign.crypto.expiring import ExpiringStore, new_id
from securealign.crypto.fit_jobs import FitJobs
from securealign.crypto.layout import DEPTH, Layout, simulate_slots

# maps from sealed secure fits the provider keeps for its own records (each at most ~5 MB)
_KEPT_FITTED_MAPS = 16
# per-key query counts are remembered for this many keys (least recently used forgotten first)
_REMEMBERED_KEYS = 65536
# noise calibration of a circuit-private head: random queries of this norm (every real query's is below 5.1)
CALIBRATION_TRIALS = 3
CALIBRATION_NORM = 8.0


@dataclass(frozen=True)
class PrivateEncoding:
    """How a circuit-private head is encoded and flooded: its scales, the factors' range and its noise bound."""

    weight_scale: float
    result_scale: float
    blind_bits: int  # 0 for logits
    bound: flooding.NoiseBound
    policy: flooding.FloodPolicy

    @property
    def sigmas(self) -> tuple[float, float]:
        return self.bound.sigmas(self.policy)


@dataclass
class CompiledHead:
    """One servable computation: outputs = matrix @ x + bias, encoded for its layout.

    ``blind`` heads (label-only answers) scale each output's row and bias by a fresh secret factor per query, so
    their weights are encoded per query; their outputs are pairwise margins, so the client learns signs, not logits.
    ``private`` heads (circuit-private answers) run the all-reduce before the rescale, at a larger scale, and
    re-randomise and flood every result (``flooding``).
    """

    matrix: np.ndarray
    bias: np.ndarray
    layout: Layout
    weights: list[seal.Plaintext]
    offsets: list[seal.Plaintext]
    blind: bool = False
    private: PrivateEncoding | None = None

    @classmethod
    def compile(
        cls,
        matrix: np.ndarray,
        bias: np.ndarray,
        *,
        blind: bool = False,
        policy: flooding.FloodPolicy | None = None,
        bound: flooding.NoiseBound | None = None,
    ) -> CompiledHead:
        """``policy``: compile a flooded head, its flood sized from ``bound`` or, by default, from the bound of a
        public stand-in (``_stand_in_bound``), so that the flood's size says nothing of these weights."""
        layout = Layout.plan(matrix.shape[1], matrix.shape[0])
        max_results = wire.LIMITS[wire.MessageType.RESULT].max_blobs
        if layout.n_ciphertexts > max_results:  # refused now rather than after every query's full computation
            raise LimitExceededError(
                f"{matrix.shape[0]} outputs of {matrix.shape[1]}-d input need "
                f"{layout.n_ciphertexts} result ciphertexts; a result carries at most "
                f"{max_results}"
            )
        head = cls(matrix, bias, layout, [], [], blind)
        if policy is not None:
            bits = PRIVATE_BLIND_BITS if blind else 0
            output_bits = private_output_bits("label" if blind else "logits")
            scales = flooding.private_weight_scale(output_bits), flooding.private_result_scale(output_bits)
            if bound is None:
                bound = _stand_in_bound(layout.d_in, layout.n_classes, blind, flooding.public_row_norm(matrix), policy)
            head.private = PrivateEncoding(*scales, bits, bound, policy)
        if not blind:
            head.weights, head.offsets = head._encode(np.ones(layout.n_classes))
        return head

    @property
    def blind_bits(self) -> int:
        return self.private.blind_bits if self.private is not None else BLIND_BITS

    def _encode(self, factors: np.ndarray) -> tuple[list[seal.Plaintext], list[seal.Plaintext]]:
        """Weights and bias with each output scaled by its factor. The weights carry half of it, because the result
        is doubled when its real part is taken. They sit at the scale of the prime their rescale drops, so the sums
        come out at exactly SCALE, where the bias is added (a private head: at its own weight and result scales)."""
        top = ckks.fresh_parms_id(DEPTH)
        weight_scale, result_scale = (
            (self.private.weight_scale, self.private.result_scale)
            if self.private is not None
            else (ckks.last_prime(top), ckks.SCALE)
        )
        weights = [
            ckks.encode(w, top, weight_scale) for w in self.layout.pack_matrix(self.matrix * factors[:, None] / 2)
        ]
        offsets = [
            ckks.encode(o, ckks.bottom_parms_id(), result_scale) for o in self.layout.place_outputs(self.bias * factors)
        ]
        return weights, offsets

    def _compute(
        self, query: seal.Ciphertext, galois_keys: seal.GaloisKeys, factors: np.ndarray
    ) -> list[seal.Ciphertext]:
        """Per result ciphertext: multiply, rescale, all-reduce, take the real part and add the bias (a private
        head rescales last: its rotations' key-switching noise is then divided by the dropped prime)."""
        ev, out = ckks.evaluator(), []
        weights, offsets = self._encode(factors) if self.blind else (self.weights, self.offsets)
        for weight, offset in zip(weights, offsets, strict=True):
            result = seal.Ciphertext()
            ev.multiply_plain(query, weight, result)
            if self.private is None:
                ev.rescale_to_next_inplace(result)
            summed = self.layout.all_reduce(result, lambda c, k: ckks.rotate(c, k, galois_keys), ckks.add)
            result = ckks.real_part_doubled(summed, galois_keys)
            if self.private is not None:
                ev.rescale_to_next_inplace(result)
            ev.add_plain_inplace(result, offset)
            out.append(result)
        return out

    def evaluate(
        self, query: seal.Ciphertext, galois_keys: seal.GaloisKeys, encryptor: seal.Encryptor | None = None
    ) -> list[bytes]:
        """The encrypted outputs. Every slot holds its coset's output or zero, and every imaginary part decrypts to
        noise, whatever the client put in its query's slots; a private head's results are then re-randomised with
        ``encryptor`` (the client's public key) and flooded."""
        n = self.layout.n_classes
        factors = blinding_factors(n, self.blind_bits) if self.blind else np.ones(n)
        results = self._compute(query, galois_keys, factors)
        if self.private is not None:
            if encryptor is None:
                raise ParameterError("a circuit-private answer needs the session's public key")
            for result, noise in zip(results, self.flood_slots(factors), strict=True):
                flooding.rerandomise_and_flood(result, encryptor, noise)
        return [ckks.save_bytes(result) for result in results]

    def flood_slots(self, factors: np.ndarray) -> list[np.ndarray]:
        """Fresh flood noise per result ciphertext: one Gaussian per output (times its factor) in every slot of its
        coset, plus iid Gaussian real and imaginary parts in every slot (``flooding``)."""
        assert self.private is not None
        coset, iid = self.private.sigmas
        per_output = self.layout.place_outputs(factors * coset * flooding.gaussian(self.layout.n_classes))
        return [p + flooding.complex_gaussian(ckks.SLOTS, iid) for p in per_output]

    def max_residual(self) -> float:
        """How far a genuine flooded result may deviate from a genuine result's shape (``Layout.deviation``)."""
        assert self.private is not None
        return flooding.max_flood_deviation(self.private.sigmas[1])

    def noise_norms(self, keys: ckks.KeyPair, galois_keys: seal.GaloisKeys, x: np.ndarray, factors: np.ndarray):
        """(coset, residual) L2 norms of the evaluation noise of this head on the slot vector of ``x`` before any
        flood, decrypted with ``keys`` against the exact plaintext twin of the algorithm (``NoiseBound`` units)."""
        assert self.private is not None
        query = ckks.load_fresh(
            keys.encrypt(self.layout.pack_query(x), DEPTH, flooding.PRIVATE_QUERY_SCALE),
            DEPTH,
            flooding.PRIVATE_QUERY_SCALE,
        )
        results = self._compute(query, galois_keys, factors)
        slots = keys.decrypt_products(tuple(ckks.save_bytes(r) for r in results), self.private.result_scale)
        exact = simulate_slots(self.layout, self.matrix * factors[:, None], self.bias * factors, x)
        errors = [got - want for got, want in zip(slots, exact, strict=True)]
        means = self.layout.unpack_result(errors)
        residual = flooding.iid_bound([e - p for e, p in zip(errors, self.layout.place_outputs(means), strict=True)])
        return float(np.linalg.norm(means / factors)), residual

    def measure_bound(self, trials: int = CALIBRATION_TRIALS) -> flooding.NoiseBound:
        """This head's noise bound, measured with the provider's own fresh keys: the largest norms over ``trials``
        random queries of norm ``CALIBRATION_NORM`` (and, for blinded heads, at the smallest and largest factor),
        times ``flooding.SAFETY`` (run on the public stand-in of a head, see ``_stand_in_bound``)."""
        assert self.private is not None
        keys, galois = _calibration_keys(tuple(self.layout.steps))
        rng = np.random.default_rng()
        n = self.layout.n_classes
        settings = [np.ones(n)] + ([np.full(n, 2.0**self.private.blind_bits)] if self.blind else [])
        coset = residual = 0.0
        for _ in range(trials):
            x = rng.normal(size=self.layout.d_in)
            x *= CALIBRATION_NORM / np.linalg.norm(x)
            for factors in settings:
                c, r = self.noise_norms(keys, galois, x, factors)
                coset, residual = max(coset, c), max(residual, r)
        return flooding.NoiseBound(flooding.SAFETY * coset, flooding.SAFETY * residual)


@functools.lru_cache(maxsize=64)
def _stand_in_bound(
    d_in: int, n_classes: int, blind: bool, row_norm: float, policy: flooding.FloodPolicy
) -> flooding.NoiseBound:
    """The noise bound of a random head of the same layout whose rows all have norm ``row_norm`` (random
    directions, bias of that size). The evaluation noise grows with the rows' norms (the query's noise times the
    weights), so it bounds every head whose rows are no longer, and the flood sized from it reveals only the layout
    and ``row_norm``: sized from the head's own noise, its std (which a client estimates from thousands of slots)
    would tell two heads apart. The tests check real heads' noise on real queries against it."""
    matrix, bias = flooding.stand_in((n_classes, d_in), row_norm)
    stand_in = CompiledHead.compile(matrix, bias, blind=blind, policy=policy, bound=flooding.NoiseBound(0.0, 0.0))
    return stand_in.measure_bound()


@functools.lru_cache(maxsize=8)
def _calibration_keys(steps: tuple[int, ...]) -> tuple[ckks.KeyPair, seal.GaloisKeys]:
    """A key pair of the provider's own, for measuring noise bounds (it never decrypts anything of a client's)."""
    keys = ckks.KeyPair.generate()
    galois, _ = ckks.load_galois_keys(keys.galois_keys_bytes(list(steps) or [1]), list(steps) or [1])
    return keys, galois


@dataclass
class ServedModel:
    classes: list[str]
    heads: dict[str, CompiledHead]  # mode -> the logits computation
    label_heads: dict[str, CompiledHead]  # mode -> the blinded pairwise-margin computation (none for one class)
    answers: tuple[str, ...]  # the answer kinds this model is served with ("label" only, if the provider says so)
    privacy: tuple[str, ...] = PRIVACY  # ("flooded",) once the provider requires circuit-private answers
    # (mode, answer) -> the circuit-private computation, compiled (and its noise measured) on first use
    private_heads: dict[tuple[str, str], CompiledHead] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def head(self, mode: str, answer: str, privacy: str = "none", policy: flooding.FloodPolicy | None = None):
        if answer not in self.answers:
            raise AnswerRefusedError(
                f"this model answers only with {' or '.join(self.answers)}; {answer!r} answers are refused"
            )
        if privacy not in self.privacy:
            raise AnswerRefusedError(
                f"this model gives only circuit-private ({' or '.join(self.privacy)}) answers; "
                f"a {privacy!r} answer is refused"
            )
        heads = self.heads if answer == "logits" else self.label_heads
        if mode not in heads:
            raise ParameterError(
                f"this model does not serve mode {mode!r} with {answer} answers; it serves {list(heads)}"
            )
        if privacy == "none":
            return heads[mode]
        if policy is None:
            raise AnswerRefusedError("this provider gives no circuit-private answers")
        with self.lock:
            if (mode, answer) not in self.private_heads:
                plain = heads[mode]
                self.private_heads[mode, answer] = CompiledHead.compile(
                    plain.matrix, plain.bias, blind=plain.blind, policy=policy
                )
            return self.private_heads[mode, answer]


@dataclass
class Session:
    """What the provider keeps per client session: its key id, rotation steps and Galois keys (all public)."""

    session_id: str
    key_id: str
    steps: frozenset[int]
    galois_keys: seal.GaloisKeys
    memory_bytes: int  # what its loaded Galois keys occupy
    encryptor: seal.Encryptor  # under the client's public key: re-randomises circuit-private answers
    queries: int = 0


def _matrix(name: str, value, ndim: int) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != ndim or 0 in array.shape:
        raise DimensionError(f"{name} must be a non-empty {ndim}-d array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise DimensionError(f"{name} contains NaN or infinite values")
    return array


class SessionStore:
    """Sessions by id with an expiry and a memory bound: expired sessions go first, then the least recently used."""

    def __init__(self, ttl_seconds: float, max_sessions: int, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._sessions: ExpiringStore[Session] = ExpiringStore(
            ttl_seconds, max_sessions, _unknown_session, max_cost=max_bytes
        )

    @property
    def ttl(self) -> float:
        return self._sessions.ttl

    def add(
        self,
        key_id: str,
        steps: frozenset[int],
        galois_keys: seal.GaloisKeys,
        memory_bytes: int,
        encryptor: seal.Encryptor,
    ) -> Session:
        if memory_bytes > self.max_bytes:
            raise LimitExceededError(f"a context of {memory_bytes:,} bytes exceeds the session memory bound")
        session = Session(new_id(), key_id, steps, galois_keys, memory_bytes, encryptor)
        self._sessions.add(session.session_id, session, cost=memory_bytes)
        return session

    def get(self, session_id: str) -> Session:
        return self._sessions.get(session_id)

    def close(self, session_id: str) -> None:
        self._sessions.close(session_id)

    @property
    def memory_bytes(self) -> int:
        return self._sessions.cost

    def __len__(self) -> int:
        return len(self._sessions)


def _unknown_session(session_id: str) -> UnknownSessionError:
    return UnknownSessionError(f"no session {session_id!r} (never opened, expired or evicted); open a new one")


class QueryBudget:
    """How many queries a session, and all sessions of one key, may make (``None``: no bound).

    Every answer tells the client something about the head (exact logits: d + 1 queries give it away; labels:
    more), so a provider bounds what one client can extract. A client can mint new keys, so this bounds each
    identity, not an adversary with unlimited keys; per-key counts outlive sessions (re-opening does not reset).
    """

    def __init__(self, per_session: int | None, per_key: int | None, private_per_key: int | None = None) -> None:
        self.per_session, self.per_key, self.private_per_key = per_session, per_key, private_per_key
        self._per_key: OrderedDict[str, list[int]] = OrderedDict()  # key id -> [queries, circuit-private answers]
        self._lock = threading.Lock()

    def charge(self, session: Session, private: bool = False) -> None:
        """Count one query against the session and its key, or refuse it once a budget is spent. Circuit-private
        answers count against ``private_per_key`` too: the flood is sized for tau answers per key."""
        with self._lock:
            used = self._per_key.get(session.key_id, [0, 0])
            if self.per_session is not None and session.queries >= self.per_session:
                raise QueryBudgetError(f"this session has used its {self.per_session:,} queries")
            if self.per_key is not None and used[0] >= self.per_key:
                raise QueryBudgetError(f"this key has used its {self.per_key:,} queries")
            if private and self.private_per_key is not None and used[1] >= self.private_per_key:
                raise QueryBudgetError(
                    f"this key has decrypted its {self.private_per_key:,} circuit-private answers (the flood is "
                    "sized for that many per key): open a session with fresh keys"
                )
            session.queries += 1
            self._per_key[session.key_id] = [used[0] + 1, used[1] + private]
            self._per_key.move_to_end(session.key_id)
            while len(self._per_key) > _REMEMBERED_KEYS:
                self._per_key.popitem(last=False)


class Provider:
    """The model owner, in-process. ``RemoteProvider`` offers the same methods over HTTP.

    In process, queries are unbounded by default (the caller is the provider's own code); ``serve`` sets budgets.
    """

    endpoint = "in-process"

    def __init__(
        self,
        *,
        session_ttl: float = 900.0,
        max_sessions: int = 64,
        max_session_bytes: int = 512 << 20,
        max_fits: int = 4,
        max_fits_per_key: int = 1,
        fit_idle_ttl: float = 60.0,
        max_queries_per_session: int | None = None,
        max_queries_per_key: int | None = None,
        circuit_privacy: flooding.FloodPolicy | None = flooding.DEFAULT_POLICY,
    ) -> None:
        self.sessions = SessionStore(session_ttl, max_sessions, max_session_bytes)
        self.fits = FitJobs(fit_idle_ttl, max_fits, max_fits_per_key)
        self.flood_policy = circuit_privacy  # None: no circuit-private answers at all
        tau = circuit_privacy.tau if circuit_privacy is not None else None
        self.budget = QueryBudget(max_queries_per_session, max_queries_per_key, tau)
        # sealed secure fits: fit id -> (W, b), decrypted here and never sent back to the client
        self.fitted_maps: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._models: dict[str, ServedModel] = {}

    # models ---------------------------------------------------------------------------------------------------
    def register(self, model_id: str, head, affine_map=None, *, label_only: bool = False) -> None:
        """Register the project's ``LinearHead`` (``V``, ``c``, ``classes``) and, for sealed mode, an ``AffineMap``
        (``W``, ``b``): any objects with these attributes. ``label_only`` refuses logits answers for this model."""
        classes = getattr(head, "classes", None)
        if affine_map is None:
            self.register_head(model_id, head.V, head.c, classes, label_only=label_only)
        else:
            self.register_sealed(model_id, affine_map.W, affine_map.b, head.V, head.c, classes, label_only=label_only)

    def register_head(self, model_id: str, V, c, classes: list[str] | None = None, *, label_only: bool = False) -> None:
        """Serve a linear head (``V``: d_A x K, ``c``: K) in paper mode: the client sends mapped embeddings."""
        V, c = _matrix("V", V, 2), _matrix("c", c, 1)
        self._add(model_id, {"paper": (V.T, c)}, classes, label_only)

    def register_sealed(
        self, model_id: str, W, b, V, c, classes: list[str] | None = None, *, label_only: bool = False
    ) -> None:
        """Serve map + head: paper mode on ``(V, c)`` and sealed mode on the pre-composed ``(W V)^T``, ``b V + c``."""
        W, b, V, c = _matrix("W", W, 2), _matrix("b", b, 1), _matrix("V", V, 2), _matrix("c", c, 1)
        if W.shape[1] != V.shape[0] or b.shape[0] != W.shape[1]:
            raise DimensionError(f"map W {W.shape}, b {b.shape} does not feed head V {V.shape}")
        self._add(model_id, {"paper": (V.T, c), "sealed": ((W @ V).T, b @ V + c)}, classes, label_only)

    def _add(
        self,
        model_id: str,
        computations: dict[str, tuple[np.ndarray, np.ndarray]],
        classes: list[str] | None,
        label_only: bool,
    ) -> None:
        """Compile each mode's (K x d matrix, bias) for logits answers and, for K >= 2, for label-only answers."""
        if not isinstance(model_id, str) or not model_id.strip():
            raise ParameterError("model id must be a non-empty string")
        n_classes = next(iter(computations.values()))[0].shape[0]
        for _, bias in computations.values():
            if bias.shape != (n_classes,):
                raise DimensionError(f"bias has shape {bias.shape}; the head has {n_classes} classes")
        classes = list(classes) if classes is not None else [str(k) for k in range(n_classes)]
        if len(classes) != n_classes:
            raise DimensionError(f"{len(classes)} class names for {n_classes} classes")
        if label_only and n_classes < 2:
            raise ParameterError("a label-only answer needs at least two classes")
        heads = {mode: CompiledHead.compile(m, c) for mode, (m, c) in computations.items()}
        label_heads = {}
        if n_classes >= 2:
            label_heads = {
                mode: CompiledHead.compile(*pairwise_head(m, c), blind=True) for mode, (m, c) in computations.items()
            }
        answers = ("label",) if label_only else (ANSWERS if label_heads else ("logits",))
        self._models[model_id] = ServedModel(classes, heads, label_heads, answers)

    def models(self) -> list[str]:
        return sorted(self._models)

    def require_labels(self, model_ids: list[str] | None = None) -> None:
        """From now on answer these models (every model when None) with labels only, refusing logits."""
        for model_id in self.models() if model_ids is None else model_ids:
            model = self._model(model_id)
            if not model.label_heads:
                raise ParameterError(f"model {model_id!r} has one class, so it has no label-only answer")
            model.answers = ("label",)

    def require_private(self, model_ids: list[str] | None = None) -> None:
        """From now on answer these models (every model when None) only with circuit-private answers."""
        if self.flood_policy is None:
            raise ParameterError("this provider was built without circuit privacy (circuit_privacy=None)")
        for model_id in self.models() if model_ids is None else model_ids:
            self._model(model_id).privacy = ("flooded",)

    def _model(self, model_id: str) -> ServedModel:
        if model_id not in self._models:
            raise UnknownModelError(f"unknown model {model_id!r}; served: {', '.join(self.models()) or 'none'}")
        return self._models[model_id]

    def describe(self, model_id: str) -> dict:
        """What a client needs to query a model: classes and, per mode, the input dimension and slot layout."""
        model = self._model(model_id)
        return {
            "model_id": model_id,
            "classes": model.classes,
            "answers": list(model.answers),
            "privacy": list(model.privacy) if self.flood_policy is not None else ["none"],
            "flooding": self.flood_policy.to_dict() if self.flood_policy is not None else None,
            "modes": {mode: head.layout.to_dict() for mode, head in model.heads.items()},
            "label_modes": {mode: head.layout.to_dict() for mode, head in model.label_heads.items()},
        }

    # sessions -------------------------------------------------------------------------------------------------
    def open_session(self, public_context: bytes) -> str:
        """Validate and cache a client's public context; returns the session id to use with ``evaluate``."""
        message = wire.decode(public_context, wire.MessageType.CONTEXT)  # refuses a secret key before parsing
        parameters, galois, public_key = message.blobs
        if parameters != ckks.parameters_bytes():
            raise ParameterError(
                f"the context's CKKS parameters differ from the protocol's "
                f"(N={ckks.POLY_DEGREE}, {list(ckks.COEFF_BITS)})"
            )
        steps = message.meta["steps"]
        if (
            not all(type(s) is int and 0 < s < ckks.SLOTS for s in steps)
            or len(set(steps)) != len(steps)
            or not 1 <= len(steps) <= ckks.MAX_ROTATION_KEYS
        ):
            raise ParameterError(
                f"context metadata must list 1 to {ckks.MAX_ROTATION_KEYS} distinct rotation steps "
                f"in 1..{ckks.SLOTS - 1}"
            )
        keys, memory = ckks.load_galois_keys(galois, steps)  # exactly these keys, inflation bounded before loading
        if ckks.key_id(galois) != message.meta["key"]:
            raise KeyMismatchError("the context's key id does not match its Galois keys")
        encryptor = ckks.load_public_key(public_key)
        memory += ckks.public_key_size()
        return self.sessions.add(message.meta["key"], frozenset(steps), keys, memory, encryptor).session_id

    def close_session(self, session_id: str) -> None:
        self.sessions.close(session_id)

    # inference ------------------------------------------------------------------------------------------------
    def evaluate(self, session_id: str, model_id: str, query: bytes) -> bytes:
        """Apply a model to an encrypted QUERY; returns the RESULT message with the encrypted logits."""
        started = time.perf_counter()
        session = self.sessions.get(session_id)
        model = self._model(model_id)
        message = wire.decode(query, wire.MessageType.QUERY)
        meta = message.meta
        if meta["key"] != session.key_id:
            raise KeyMismatchError("the query was encrypted under another session's keys than this session's")
        if meta["answer"] not in ANSWERS:
            raise ParameterError(f"unknown answer kind {meta['answer']!r}; valid: {', '.join(ANSWERS)}")
        privacy = meta.get("privacy", "none")
        if privacy not in PRIVACY:
            raise ParameterError(f"unknown privacy kind {privacy!r}; valid: {', '.join(PRIVACY)}")
        head = model.head(meta["mode"], meta["answer"], privacy, self.flood_policy)
        if Layout.from_dict(meta["layout"]) != head.layout:
            raise DimensionError(
                f"query layout {meta['layout']} does not match model {model_id!r} in "
                f"{meta['mode']} mode (input dimension {head.layout.d_in})"
            )
        if not set(head.layout.steps) <= session.steps:
            raise ParameterError("the session's Galois keys lack rotations this model needs")
        scale = flooding.PRIVATE_QUERY_SCALE if head.private is not None else ckks.SCALE
        ciphertext = ckks.load_fresh(message.blobs[0], DEPTH, scale)
        self.budget.charge(session, head.private is not None)  # only a query that would be answered counts
        blobs = head.evaluate(ciphertext, session.galois_keys, session.encryptor)
        reply = {
            "key": session.key_id,
            "query": message.digest_hex,
            "model": model_id,
            "mode": meta["mode"],
            "answer": meta["answer"],
            "layout": head.layout.to_dict(),
            "compute_ms": round((time.perf_counter() - started) * 1e3, 3),
        }
        if head.private is not None:
            reply |= {"privacy": privacy, "max_residual": head.max_residual()}
        return wire.encode(wire.MessageType.RESULT, reply, blobs)

    # secure fitting of the map (the provider's half; see fit_jobs.py) --------------------------------------------
    def add_public_set(self, name: str, texts: list[str], Z) -> None:
        """Offer secure fits on ``texts``, which the provider has embedded as ``Z`` (one row per text)."""
        self.fits.add_set(name, texts, Z)

    def public_sets(self) -> dict[str, dict]:
        return self.fits.sets()

    def open_fit(self, session_id: str, public_set: str, mode: str, width: int, model: str | None = None) -> dict:
        """Start a secure fit of a client's map of row width ``width`` (its dimension + 1) for the key of an open
        session (which bounds the fits one key holds). In sealed mode, ``model`` names a served head that the fitted
        map will be composed with and served as a new model."""
        owner = self.sessions.get(session_id).key_id
        if model is not None:
            if mode != "sealed":
                raise ParameterError("only a sealed fit serves its map with a head; a paper fit gives the client W")
            head = self._model(model).heads["paper"]
            dim = self.fits.sets().get(public_set, {}).get("provider_dim")
            if dim is not None and head.layout.d_in != dim:
                raise DimensionError(
                    f"model {model!r} takes {head.layout.d_in}-d input, but public set "
                    f"{public_set!r} holds {dim}-d embeddings"
                )
        return self.fits.open(public_set, mode, width, model, owner).info()

    def close_fit(self, fit_id: str) -> None:
        self.fits.close(fit_id)

    def add_fit_rows(self, fit_id: str, batch: bytes) -> int:
        """Paper mode: a batch of the client's encrypted rows of ``[Z_B, 1]``; returns the rows received so far."""
        return self.fits.add_rows(fit_id, batch)

    def fit_product(self, fit_id: str) -> bytes:
        """Paper mode: ``Enc(Z_A^T [Z_B, 1])`` for the client to decrypt."""
        return self.fits.product(fit_id)

    def fit_rows(self, fit_id: str, start: int) -> bytes:
        """Sealed mode: the provider's encrypted rows of ``Z_A`` from row ``start``."""
        return self.fits.rows(fit_id, start)

    def finish_fit(self, fit_id: str, product: bytes) -> dict:
        """Sealed mode: decrypt ``[W; b]`` and, if the fit named a head, serve map + head as a new model."""
        job, W, b = self.fits.finish(fit_id, product)
        self.fitted_maps[fit_id] = (W, b)
        while len(self.fitted_maps) > _KEPT_FITTED_MAPS:
            self.fitted_maps.popitem(last=False)
        served = None
        if job.model_id is not None:
            model = self._model(job.model_id)
            head = model.heads["paper"]
            served = f"{job.model_id}@fit-{fit_id[:8]}"
            self.register_sealed(
                served, W, b, head.matrix.T, head.bias, model.classes, label_only=model.answers == ("label",)
            )
            self._model(served).privacy = model.privacy  # a head that gives only flooded answers stays so
        return {"fit_id": fit_id, "model": served, "map_shape": [int(W.shape[0]), int(W.shape[1])]}
