"""Encrypted inference across models under CKKS: a client/provider protocol exchanging bytes only.

    client = ClientSession()                        # secret key stays here
    provider = Provider()                           # or RemoteProvider("http://127.0.0.1:8765")
    provider.register_sealed("bbc", W, b, V, c)     # provider side
    logits, trace = run_encrypted_query(client, provider, "bbc", z_b, "sealed")
    wins, trace = run_encrypted_query(client, provider, "bbc", z_b, "sealed", answer="label")  # argmax = label

See docs/protocol.md for the threat model of each mode and the wire format.
"""

from securealign.crypto.client import MODES, ClientSession
from securealign.crypto.errors import ProtocolError
from securealign.crypto.layout import Layout
from securealign.crypto.protocol import (
    ANSWER_REVEALS,
    PRIVACY_REVEALS,
    THREAT_MODELS,
    Trace,
    TraceStep,
    plaintext_logits,
    run_encrypted_query,
)
from securealign.crypto.provider import Provider
from securealign.crypto.remote import RemoteProvider

__all__ = [
    "ANSWER_REVEALS",
    "PRIVACY_REVEALS",
    "MODES",
    "THREAT_MODELS",
    "ClientSession",
    "Layout",
    "ProtocolError",
    "Provider",
    "RemoteProvider",
    "Trace",
    "TraceStep",
    "plaintext_logits",
    "run_encrypted_query",
]
