"""The client's side: it alone holds the secret key, encrypts queries and decrypts (and checks) results."""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterable

import numpy as np

from securealign.crypto import ckks, flooding, wire
from securealign.crypto.answers import ANSWERS, PRIVACY, private_output_bits, wins
from securealign.crypto.errors import KeyMismatchError, ParameterError, ProtocolError
from securealign.crypto.layout import DEPTH, Layout

MODES = ("paper", "sealed")
# Largest residue accepted in a decrypted result. A genuine result has one shape in every slot, up to CKKS noise
# (~1e-6 here): real, each output's coset holding copies of that output, unused cosets zero (``Layout.deviation``).
# A ciphertext under another key, or one computed from tampered bytes, decrypts to values near 1e7 in every slot.
# The residue over all 4096 slots of every result ciphertext therefore certifies both the key and the precision of
# the outputs. (The one-multiplication paths, vocabulary head and secure fit, keep the imaginary check alone.)
MAX_NOISE = 1e-3
# A circuit-private result's slots carry its flood (``flooding``), so its shape check takes the provider's declared
# bound (ten flood stds), never beyond this: a foreign key decrypts to values near 1e4 at these scales, so a
# provider cannot switch the check off by declaring a huge flood.
MAX_FLOOD_RESIDUAL = 0.5
_MAX_PENDING = 4096


def _all_steps() -> list[int]:
    return [1 << k for k in range(ckks.SLOTS.bit_length() - 1)]


class ClientSession:
    """Per-session CKKS keys: a secret key that never leaves this object, and Galois keys for the given layouts.

    ``layouts`` limits the rotation keys to the steps those layouts use (a 768-dim input needs 9 keys and the
    conjugation); without layouts every power-of-two step is covered (12 keys and the conjugation), enough for any
    layout.
    """

    def __init__(self, layouts: Iterable[Layout] = ()) -> None:
        layouts = list(layouts)
        # at least one key even for layouts without rotations: the key id (hash of the Galois keys) must be unique
        self.steps = (sorted({s for lay in layouts for s in lay.steps}) or [1]) if layouts else _all_steps()
        self._keys = ckks.KeyPair.generate()
        galois = self._keys.galois_keys_bytes(self.steps)
        self.key_id = ckks.key_id(galois)
        meta = {"key": self.key_id, "steps": self.steps, "blobs": list(wire.CONTEXT_BLOBS)}
        blobs = [ckks.parameters_bytes(), galois, self._keys.public_key_bytes()]
        self._context = wire.encode(wire.MessageType.CONTEXT, meta, blobs)
        # query digest -> (layout, answer, privacy)
        self._pending: OrderedDict[str, tuple[Layout, str, str]] = OrderedDict()
        self.private_answers = 0  # circuit-private answers decrypted with this key (a provider allows tau of them)
        self._lock = threading.Lock()
        # provider endpoint -> session id, so one client reuses its session with each provider
        self.sessions: dict[str, str] = {}
        # (provider endpoint, model id) -> the provider's description of the model (classes, answers, layouts)
        self.descriptions: dict[tuple[str, str], dict] = {}

    def public_context(self) -> bytes:
        """The CONTEXT message for the provider: parameters, Galois keys and the public key, never the secret key."""
        return self._context

    def supports(self, layout: Layout) -> bool:
        return set(layout.steps) <= set(self.steps)

    def encrypt_query(
        self, vec: np.ndarray, layout: Layout, mode: str = "paper", answer: str = "logits", privacy: str = "none"
    ) -> bytes:
        """A QUERY message: ``vec`` packed for ``layout`` and encrypted under this session's secret key.

        ``answer`` asks for the K logits or for a label-only answer (``layout`` is then the model's label layout);
        ``privacy="flooded"`` for a circuit-private one (encrypted at ``flooding.PRIVATE_QUERY_SCALE``).
        """
        if mode not in MODES:
            raise ParameterError(f"unknown mode {mode!r}; choose from {MODES}")
        if answer not in ANSWERS:
            raise ParameterError(f"unknown answer kind {answer!r}; choose from {ANSWERS}")
        if privacy not in PRIVACY:
            raise ParameterError(f"unknown privacy kind {privacy!r}; choose from {PRIVACY}")
        if not self.supports(layout):
            missing = sorted(set(layout.steps) - set(self.steps))
            raise ParameterError(f"this session has no rotation keys for steps {missing}")
        scale = flooding.PRIVATE_QUERY_SCALE if privacy == "flooded" else ckks.SCALE
        blob = self._keys.encrypt(layout.pack_query(vec), DEPTH, scale)
        meta = {
            "key": self.key_id,
            "mode": mode,
            "answer": answer,
            "layout": layout.to_dict(),
            "nonce": secrets.token_hex(8),
        }
        if privacy != "none":
            meta["privacy"] = privacy
        message = wire.encode(wire.MessageType.QUERY, meta, [blob])
        with self._lock:
            self._pending[wire.digest_hex(message)] = (layout, answer, privacy)
            while len(self._pending) > _MAX_PENDING:
                self._pending.popitem(last=False)
        return message

    def decrypt_result(self, data: bytes) -> np.ndarray:
        """The scores of a RESULT message (logits, or pairwise wins per class for a label-only answer), after
        checking it answers one of our queries under our key."""
        return self.decrypt_checked(data)[0]

    def decrypt_checked(self, data: bytes) -> tuple[np.ndarray, float]:
        """(scores, imaginary residue): the residue bounds the CKKS error of the outputs (see ``MAX_NOISE``).

        Scores are the K logits, or for a label-only answer the pairwise wins per class (argmax = label): the
        blinded margins themselves are not returned, since only their signs mean anything.
        """
        message = wire.decode(data, wire.MessageType.RESULT)
        if message.meta["key"] != self.key_id:
            raise KeyMismatchError("the result was computed under another session's keys")
        with self._lock:
            pending = self._pending.get(message.meta["query"])
        if pending is None:
            raise ProtocolError("the result answers no pending query of this session (stale, replayed or foreign)")
        layout, answer, privacy = pending
        if Layout.from_dict(message.meta["layout"]) != layout or len(message.blobs) != layout.n_ciphertexts:
            raise ParameterError("the result's layout differs from the query's")
        if message.meta["answer"] != answer:
            raise ParameterError(f"the result is a {message.meta['answer']!r} answer; the query asked for {answer!r}")
        if message.meta.get("privacy", "none") != privacy:
            raise ParameterError(f"the result is not the {privacy!r} answer the query asked for")
        if privacy == "flooded":
            max_residual = float(message.meta.get("max_residual", MAX_NOISE))
            if not 0 < max_residual <= MAX_FLOOD_RESIDUAL:
                raise ParameterError(f"the result declares a flood residual of {max_residual:g}: no genuine one does")
            scale = flooding.private_result_scale(private_output_bits(answer))
            slots = self._keys.decrypt_products(message.blobs, scale)
            residue = check_shape(slots, layout, max(MAX_NOISE, max_residual))
        else:
            slots = self._keys.decrypt_products(message.blobs, ckks.SCALE)
            residue = check_shape(slots, layout)
        with self._lock:  # answered only once it checked out, so a forged result cannot use up the genuine one's slot
            if self._pending.pop(message.meta["query"], None) is None:
                raise ProtocolError("the result answers no pending query of this session (stale, replayed or foreign)")
            self.private_answers += privacy == "flooded"
        outputs = layout.unpack_result(slots)
        return (wins(outputs) if answer == "label" else outputs), residue


def check_shape(slot_vectors: list[np.ndarray], layout: Layout, max_noise: float = MAX_NOISE) -> float:
    """The largest distance from a genuine result's shape (``Layout.deviation``); raises ``KeyMismatchError`` when
    it shows a foreign key or tampering."""
    residue = layout.deviation(slot_vectors)
    if not np.isfinite(residue) or residue > max_noise:
        raise KeyMismatchError(
            f"decrypted result does not have the shape of a genuine answer (residue {residue:.3g} > {max_noise:g}):"
            " it was encrypted under another key or altered, so no prediction is shown"
        )
    return residue


def check_real(slot_vectors: list[np.ndarray], max_noise: float = MAX_NOISE) -> float:
    """The largest imaginary residue; raises ``KeyMismatchError`` when it shows a foreign key or tampering."""
    residue = max(float(np.max(np.abs(np.imag(v)))) for v in slot_vectors)
    if not np.isfinite(residue) or residue > max_noise:
        raise KeyMismatchError(
            f"decrypted result is not real (imaginary residue {residue:.3g} > {max_noise:g}): it was encrypted "
            "under another key or altered, so no prediction is shown"
        )
    return residue
