"""Error types of the encrypted protocol.

Every refusal is a ``ProtocolError`` (a ``ValueError``), so callers can catch one family and show its message; the
subclasses let the HTTP layer map each refusal to a status code and let a remote client re-raise the same type.
"""

from __future__ import annotations


class ProtocolError(ValueError):
    """A message or request the protocol refuses; nothing was decrypted or shown."""

    status = 400


class WireFormatError(ProtocolError):
    """Bytes that are not a well-formed message of the expected type (bad magic, version, sizes, schema)."""


class LimitExceededError(WireFormatError):
    """A message, or a size it declares, is larger than the hard limit for its type."""

    status = 413


class IntegrityError(WireFormatError):
    """The payload does not match the digest in its header (truncated, altered or corrupted in transit)."""


class KeyMismatchError(ProtocolError):
    """A ciphertext was made under other keys than this session's; its decryption would be meaningless noise."""


class SecretKeyRefusedError(ProtocolError):
    """A context that carries a secret key: the provider must never hold one, so it refuses the whole message."""


class ParameterError(ProtocolError):
    """Encryption parameters or a slot layout that the other party does not use."""


class DimensionError(ProtocolError):
    """A vector or matrix whose shape does not fit the model or layout it is used with."""


class AnswerRefusedError(ProtocolError):
    """An answer kind the provider does not give for this model (it serves label-only answers, not logits)."""

    status = 403


class UnknownModelError(ProtocolError):
    """A model id the provider does not serve."""

    status = 404


class UnknownSessionError(ProtocolError):
    """A session id the provider does not hold (never opened, expired, or evicted to respect the memory bound)."""

    status = 404


class UnknownFitError(ProtocolError):
    """A secure-fit job or public text set the provider does not hold (never opened, finished or expired)."""

    status = 404


class QueryBudgetError(ProtocolError):
    """The session or key has used up the queries the provider grants it (a bound on extracting the head)."""

    status = 429


class RequestTimeoutError(ProtocolError):
    """A request body made no progress within the server's read deadline; the connection is dropped."""

    status = 408


class TooFewRowsError(DimensionError):
    """A secure fit on so few texts that the party decrypting the product could solve for the other's data."""


ERRORS: dict[str, type[ProtocolError]] = {
    cls.__name__: cls
    for cls in (
        ProtocolError,
        WireFormatError,
        LimitExceededError,
        IntegrityError,
        KeyMismatchError,
        SecretKeyRefusedError,
        ParameterError,
        DimensionError,
        AnswerRefusedError,
        UnknownModelError,
        UnknownSessionError,
        UnknownFitError,
        QueryBudgetError,
        RequestTimeoutError,
        TooFewRowsError,
    )
}
