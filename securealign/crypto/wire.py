"""The versioned wire format every protocol message uses: a fixed header, JSON metadata, then binary blobs.

    offset  size  field
    0       4     magic b"SAHE"
    4       2     format version (big-endian)
    6       1     message type (CONTEXT, QUERY, RESULT, MATRIX)
    7       1     number of blobs n
    8       4     metadata length in bytes
    12      32    SHA-256 of metadata + blobs
    44      8*n   length of each blob
    ...           metadata (UTF-8 JSON object), blobs

``decode`` checks everything a header declares against the hard limits of its type, the exact total length and
the digest before anything is parsed further, so SEAL never sees truncated, oversized or altered bytes, and a huge
declared size cannot make the reader allocate memory. The digest catches accidents and tampering in transit; it
is not a signature (the parties are semi-honest).
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import struct
from dataclasses import dataclass, field

from securealign.crypto.errors import IntegrityError, LimitExceededError, SecretKeyRefusedError, WireFormatError

MAGIC = b"SAHE"
VERSION = 1
_FIXED = struct.Struct(">4sHBBI32s")
_MB = 1 << 20


class MessageType(enum.IntEnum):
    CONTEXT = 1  # public context: parameters + Galois keys + public key, sent once per session
    QUERY = 2  # one encrypted query vector
    RESULT = 3  # the encrypted logits
    MATRIX = 4  # encrypted rows of a matrix (secure fitting of the map)


@dataclass(frozen=True)
class Limits:
    """Hard limits per message type: blob count, bytes per blob, metadata bytes, required and optional metadata keys
    with their types. Any other metadata key is refused, so nothing (a secret key, say) rides along unnoticed."""

    max_blobs: int
    max_blob_bytes: int
    schema: dict[str, type | tuple[type, ...]]
    max_meta_bytes: int = 4096
    optional: dict[str, type | tuple[type, ...]] = field(default_factory=dict)


LIMITS: dict[MessageType, Limits] = {
    # 12 seeded Galois keys and the conjugation (every power-of-two step) take ~5 MB at [60, 40, 60]; the public key
    # (for re-randomising circuit-private answers) ~0.36 MB
    MessageType.CONTEXT: Limits(3, 10 * _MB, {"key": str, "steps": list, "blobs": list}),
    MessageType.QUERY: Limits(
        1,
        512 * 1024,
        {"key": str, "mode": str, "answer": str, "layout": dict, "nonce": str},
        optional={"privacy": str},  # "flooded" asks for a circuit-private answer (answers.PRIVACY); default "none"
    ),
    MessageType.RESULT: Limits(
        64,
        512 * 1024,
        {
            "key": str,
            "query": str,
            "model": str,
            "mode": str,
            "answer": str,
            "layout": dict,
            "compute_ms": (int, float),
        },
        # a circuit-private result says so, with the largest deviation from a genuine result's shape its flood allows
        optional={"privacy": str, "max_residual": (int, float)},
    ),
    MessageType.MATRIX: Limits(
        255, 512 * 1024, {"key": str, "stage": str, "rows": int, "cols": int}, optional={"q": int, "start": int}
    ),
}
# blob kinds a CONTEXT may name; a secret key is named only so that it can be refused explicitly
CONTEXT_BLOBS = ("parameters", "galois_keys", "public_key")
SECRET_BLOBS = ("secret_key",)


@dataclass(frozen=True)
class Message:
    kind: MessageType
    meta: dict
    blobs: tuple[bytes, ...]
    digest: bytes

    @property
    def digest_hex(self) -> str:
        return self.digest.hex()[:32]


def encode(kind: MessageType, meta: dict, blobs: list[bytes] | tuple[bytes, ...]) -> bytes:
    """Frame metadata and blobs; the sender is held to the same limits the receiver enforces."""
    limits = LIMITS[kind]
    meta_bytes = json.dumps(meta, separators=(",", ":"), sort_keys=True).encode()
    if len(meta_bytes) > limits.max_meta_bytes or not 1 <= len(blobs) <= limits.max_blobs:
        raise LimitExceededError(f"{kind.name} message exceeds its metadata or blob-count limit")
    if any(len(b) > limits.max_blob_bytes for b in blobs):
        raise LimitExceededError(f"{kind.name} blob exceeds {limits.max_blob_bytes:,} bytes")
    digest = hashlib.sha256(meta_bytes + b"".join(blobs)).digest()
    header = _FIXED.pack(MAGIC, VERSION, int(kind), len(blobs), len(meta_bytes), digest)
    sizes = struct.pack(f">{len(blobs)}Q", *map(len, blobs))
    return header + sizes + meta_bytes + b"".join(blobs)


def digest_hex(data: bytes) -> str:
    """The digest field of an encoded message, as ``Message.digest_hex``: how a result names its query."""
    return _FIXED.unpack_from(data)[5].hex()[:32]


def max_message_bytes(kind: MessageType) -> int:
    """The largest well-formed message of a type: lets an HTTP server refuse a body before reading it."""
    limits = LIMITS[kind]
    return _FIXED.size + 8 * limits.max_blobs + limits.max_meta_bytes + limits.max_blobs * limits.max_blob_bytes


def decode(data: bytes, expected: MessageType) -> Message:
    """Parse and validate a message of the expected type; raise a ``WireFormatError`` subclass on any defect."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireFormatError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < _FIXED.size:
        raise WireFormatError(f"message of {len(data)} bytes is shorter than the {_FIXED.size}-byte header")
    magic, version, kind, n_blobs, meta_len, digest = _FIXED.unpack_from(data)
    if magic != MAGIC:
        raise WireFormatError("not a securealign protocol message (bad magic)")
    if version != VERSION:
        raise WireFormatError(f"message format version {version}; this build speaks version {VERSION}")
    if kind != expected:
        name = MessageType(kind).name if kind in MessageType._value2member_map_ else f"unknown type {kind}"
        raise WireFormatError(f"expected a {expected.name} message, got {name}")
    limits = LIMITS[expected]
    if not 1 <= n_blobs <= limits.max_blobs:
        raise LimitExceededError(f"{expected.name} declares {n_blobs} blobs; allowed 1..{limits.max_blobs}")
    if meta_len > limits.max_meta_bytes:
        raise LimitExceededError(
            f"{expected.name} declares {meta_len:,} metadata bytes; limit {limits.max_meta_bytes:,}"
        )
    sizes_end = _FIXED.size + 8 * n_blobs
    if len(data) < sizes_end:
        raise WireFormatError("message truncated inside its size table")
    sizes = struct.unpack_from(f">{n_blobs}Q", data, _FIXED.size)
    if any(size > limits.max_blob_bytes for size in sizes):
        raise LimitExceededError(
            f"{expected.name} declares a blob of {max(sizes):,} bytes; limit {limits.max_blob_bytes:,}"
        )
    declared = sizes_end + meta_len + sum(sizes)
    if len(data) != declared:
        raise WireFormatError(
            f"message is {len(data):,} bytes but its header declares {declared:,} (truncated or padded)"
        )
    body = data[sizes_end:]
    if hashlib.sha256(body).digest() != digest:
        raise IntegrityError("payload does not match its digest: the message was altered or corrupted")
    meta = _metadata(body[:meta_len], expected, limits)
    blobs, offset = [], meta_len
    for size in sizes:
        blobs.append(body[offset : offset + size])
        offset += size
    message = Message(expected, meta, tuple(blobs), digest)
    if expected is MessageType.CONTEXT:
        _check_context_blobs(message)
    return message


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses as infinity
        raise ValueError(f"number {text} is not finite")
    return value


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def _metadata(raw: bytes, kind: MessageType, limits: Limits) -> dict:
    """The metadata object: strict JSON (no NaN or infinities), exactly the keys of its type, each of its type."""
    try:
        meta = json.loads(raw.decode(), parse_float=_finite, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # deep nesting fits in 4 KB; 10**5000 is too long
        raise WireFormatError(f"metadata is not strict JSON: {exc}") from None
    types = {**limits.schema, **limits.optional}
    if not isinstance(meta, dict) or not set(limits.schema) <= set(meta) <= set(types):
        raise WireFormatError(
            f"{kind.name} metadata must hold the keys {sorted(limits.schema)}"
            + (f" and optionally {sorted(limits.optional)}" if limits.optional else "")
            + f", got {sorted(meta) if isinstance(meta, dict) else type(meta).__name__}"
        )
    for key, value in meta.items():
        if not isinstance(value, types[key]) or (isinstance(value, bool) and bool not in _as_tuple(types[key])):
            raise WireFormatError(
                f"{kind.name} metadata {key!r} must be of type {'/'.join(t.__name__ for t in _as_tuple(types[key]))}"
            )
    return meta


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _check_context_blobs(message: Message) -> None:
    names = message.meta["blobs"]
    if not isinstance(names, list) or len(names) != len(message.blobs):
        raise WireFormatError("CONTEXT must name each of its blobs")
    if any(name in SECRET_BLOBS for name in names):
        raise SecretKeyRefusedError("the context carries a secret key; the provider never accepts one")
    if names != list(CONTEXT_BLOBS):
        raise WireFormatError(f"CONTEXT must hold exactly {CONTEXT_BLOBS}, got {names}")
