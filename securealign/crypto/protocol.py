"""One encrypted query end to end, with a trace of its numbered steps, the threat model of each mode, and the
plaintext reference every encrypted result is compared with.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from securealign.crypto.answers import ANSWERS
from securealign.crypto.client import MODES, ClientSession
from securealign.crypto.errors import (
    AnswerRefusedError,
    DimensionError,
    ParameterError,
    ProtocolError,
    UnknownSessionError,
)
from securealign.crypto.layout import Layout

# Who learns what, per mode (semi-honest parties; both modes reveal the dimensions, the model id, the answer kind
# and the message sizes and timing to the provider). What the client decrypts depends on the answer kind too:
# ANSWER_REVEALS. docs/protocol.md has the full account, with the tests and measured attack costs behind it.
THREAT_MODELS: dict[str, dict[str, str]] = {
    "paper": {
        "title": "Paper mode: client maps in plaintext, provider evaluates the head on a ciphertext",
        "client_learns": "the map (W, b) and hence the geometry of the provider's embedding space, and the answer "
        "(K logits, or the label only); every other slot of the result decrypts to zero",
        "provider_learns": "nothing about the query: it sees one CKKS ciphertext of the mapped embedding",
        "provider_holds": "the head (V, c) and the session's public Galois keys, never a secret key",
        "limits": "W leaks structure of the provider's space (the paper's stated limitation); with logits, d + 1 "
        "chosen queries determine the head, so a careful provider serves labels only and bounds queries",
    },
    "sealed": {
        "title": "Sealed mode: alignment and classification both encrypted (pre-composed on the provider)",
        "client_learns": "only the answer (K logits, or the label only); it never sees W, b, V or c, and every "
        "other slot of the result decrypts to zero",
        "provider_learns": "nothing about the query: it sees one CKKS ciphertext of the raw source embedding",
        "provider_holds": "the pre-composed (W V, b V + c) and the session's public Galois keys, never a secret key",
        "limits": "the provider knows W, so it learns how the client's model relates to its own; W was obtained "
        "by the sealed fitting protocol (the provider decrypts only W, see docs/protocol.md); with "
        "logits, d + 1 chosen queries determine the composed head",
    },
}

ANSWER_REVEALS: dict[str, str] = {
    "logits": "the K logits: exact linear functions of the query, so d + 1 chosen queries determine the head",
    "label": "the sign of every pairwise margin (the ranking of the classes), each multiplied by a fresh secret "
    "factor: no linear system to solve; repeated queries and label-trained copies cost many queries",
}


def plaintext_logits(
    z: np.ndarray, V: np.ndarray, c: np.ndarray, W: np.ndarray | None = None, b: np.ndarray | None = None
) -> np.ndarray:
    """The reference: ``(z W + b) V + c`` (or ``z V + c`` without a map), in float64 numpy."""
    z = np.asarray(z, dtype=np.float64)
    if W is not None:
        z = z @ np.asarray(W, dtype=np.float64) + np.asarray(b, dtype=np.float64)
    return z @ np.asarray(V, dtype=np.float64) + np.asarray(c, dtype=np.float64)


PRIVACY_REVEALS: dict[str, str] = {
    "none": "not circuit-private: the result is a deterministic function of the query, the keys and the head, so a "
    "client can test a guessed head against it",
    "flooded": "circuit-private: re-randomised and noise-flooded by the provider, so the result says nothing of "
    "the head beyond the answer (statistically, for a semi-honest client; see docs/protocol.md)",
}


STEP_KINDS = ("keys", "map", "encrypt", "provider", "decrypt")


@dataclass
class TraceStep:
    number: int
    party: str  # "client" | "provider"
    kind: str  # one of STEP_KINDS: what the step does, for charts and sums that must not parse ``what``
    what: str
    ms: float
    bytes: int = 0
    preview: str = ""  # a few hex bytes of the message, to show that what travels is opaque


@dataclass
class Trace:
    """The protocol's steps for one query, for display (the app) and for the benchmark."""

    mode: str
    model_id: str
    steps: list[TraceStep] = field(default_factory=list)
    residue: float = float("nan")  # imaginary residue of the decrypted result: the CKKS error certificate
    privacy: str = "none"  # the kind of answer that arrived: "flooded" (circuit-private) or "none"

    def add(self, party: str, kind: str, what: str, ms: float, data: bytes | None = None) -> None:
        if kind not in STEP_KINDS:
            raise ValueError(f"unknown step kind {kind!r}; valid: {', '.join(STEP_KINDS)}")
        self.steps.append(
            TraceStep(
                len(self.steps) + 1, party, kind, what, round(ms, 3), len(data or b""), preview(data) if data else ""
            )
        )


def preview(data: bytes, n: int = 12) -> str:
    """Hex of ``n`` bytes from the middle of a message (the header is constant; the body looks random)."""
    mid = max(0, len(data) // 2 - n // 2)
    return data[mid : mid + n].hex() + "…"


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1e3


def run_encrypted_query(
    client: ClientSession,
    provider,
    model_id: str,
    z: np.ndarray,
    mode: str,
    *,
    affine_map=None,
    answer: str = "logits",
    privacy: str | None = None,
) -> tuple[np.ndarray, Trace]:
    """Classify the client's embedding ``z`` with the provider's model under encryption.

    Paper mode: ``affine_map`` (an object with ``W``, ``b``) maps ``z`` in plaintext first; without it ``z`` must
    already be in the provider's space. Sealed mode: ``z`` is the raw source embedding. The client's session with
    this provider is opened on first use (the public context travels once) and re-opened if it expired.
    Returns the K logits, or with ``answer="label"`` the pairwise wins per class (its argmax is the label).
    ``privacy``: "flooded" for a circuit-private answer, "none" for a plain one; None takes the plain one unless
    the model gives only circuit-private answers. ``trace.privacy`` says which kind arrived.
    """
    if mode not in MODES:
        raise ParameterError(f"unknown mode {mode!r}; choose from {MODES}")
    if answer not in ANSWERS:
        raise ParameterError(f"unknown answer kind {answer!r}; choose from {ANSWERS}")
    trace = Trace(mode, model_id)
    described = (provider.endpoint, model_id)
    info = client.descriptions.get(described)
    if info is None:  # one describe round trip per model and provider, not per query
        info = client.descriptions[described] = provider.describe(model_id)
    if answer not in info["answers"]:
        raise AnswerRefusedError(f"model {model_id!r} answers only with {' or '.join(info['answers'])}")
    served = info.get("privacy", ["none"])
    privacy = privacy or served[0]
    if privacy not in served:
        raise AnswerRefusedError(f"model {model_id!r} gives only {' or '.join(served)} answers, not {privacy!r}")
    layouts = info["modes"] if answer == "logits" else info["label_modes"]
    if mode not in layouts:
        raise ParameterError(
            f"model {model_id!r} is not served in {mode} mode with {answer} answers (available: {list(layouts)})"
        )
    layout = Layout.from_dict(layouts[mode])
    x = np.asarray(z, dtype=np.float64)
    if mode == "paper" and affine_map is not None:
        start = time.perf_counter()
        W, b = np.asarray(affine_map.W, dtype=np.float64), np.asarray(affine_map.b, dtype=np.float64)
        if x.shape != (W.shape[0],):
            raise DimensionError(f"embedding of shape {x.shape} does not fit the map's input dimension {W.shape[0]}")
        x = x @ W + b
        trace.add(
            "client", "map", f"map z ({W.shape[0]}-d) into the provider's space with (W, b), in plaintext", _ms(start)
        )
    if x.shape != (layout.d_in,):
        raise DimensionError(f"{mode} mode of {model_id!r} takes a {layout.d_in}-d vector, got shape {x.shape}")
    session_id = _ensure_session(client, provider, trace)
    start = time.perf_counter()
    query = client.encrypt_query(x, layout, mode, answer, privacy)
    trace.add(
        "client",
        "encrypt",
        f"encrypt the {layout.d_in}-d vector (CKKS, two inputs per slot, repeated {layout.stride}x)",
        _ms(start),
        query,
    )
    start = time.perf_counter()
    try:
        result = provider.evaluate(session_id, model_id, query)
    except UnknownSessionError:  # expired or evicted: open a fresh session once and retry
        client.sessions.pop(provider.endpoint, None)
        session_id = _ensure_session(client, provider, trace)
        result = provider.evaluate(session_id, model_id, query)
    except ProtocolError:  # the model may have changed under the cached description: describe it again next time
        client.descriptions.pop(described, None)
        raise
    what = "apply the pre-composed map and head (W V)^T, b V + c" if mode == "sealed" else "apply the head V, c"
    if answer == "label":
        what += ", take the pairwise margins and blind each with a fresh secret factor"
    if privacy == "flooded":
        what += ", re-randomise with a fresh encryption of zero and flood with fresh Gaussian noise"
    trace.add(
        "provider",
        "provider",
        f"{what} to the ciphertext, sum each output into every slot of its own, return real parts only "
        f"({layout.n_classes} outputs, {layout.n_ciphertexts} result ciphertext(s))",
        _ms(start),
        result,
    )
    start = time.perf_counter()
    scores, trace.residue = client.decrypt_checked(result)
    trace.privacy = privacy
    got = f"{len(scores)} logits" if answer == "logits" else f"the signs of {layout.n_classes} blinded margins"
    trace.add("client", "decrypt", f"decrypt {got} and check the key (residue {trace.residue:.1e})", _ms(start))
    return scores, trace


def _ensure_session(client: ClientSession, provider, trace: Trace) -> str:
    session_id = client.sessions.get(provider.endpoint)
    if session_id is None:
        context = client.public_context()
        start = time.perf_counter()
        session_id = provider.open_session(context)
        client.sessions[provider.endpoint] = session_id
        trace.add(
            "client",
            "keys",
            "send the public context once (parameters + Galois keys, no secret key)",
            _ms(start),
            context,
        )
    return session_id
