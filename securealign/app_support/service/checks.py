"""What the service refuses, and how it says so: checks of every input an app or API caller sends, the error
types whose messages go on the page, and the progress callback's type.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np

MAX_QUERY_CHARS = 2000

ProgressFn = Callable[[float, str], None]


class ServiceError(ValueError):
    """A request the demo cannot serve, with a message meant for the page (no traceback, no jargon)."""


class ModelLoadError(ServiceError):
    """A model whose weights are installed but would not load (corrupt cache, missing file, out of memory)."""


def report(progress: ProgressFn | None, fraction: float, what: str) -> None:
    if progress is not None:
        progress(fraction, what)


def shown(value: object) -> str:
    """A caller's value, quoted for a refusal and cut short (an API client may send anything, of any size)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "…"


def check_choice(what: str, value: str, valid: list[str]) -> str:
    if not isinstance(value, str) or value not in valid:
        raise ServiceError(f"Unknown {what} {shown(value)}. Choose one of: {', '.join(valid)}.")
    return value


def check_flag(what: str, value: bool) -> bool:
    """A yes/no input: only true or false, since ``bool("false")`` would silently mean yes."""
    if not isinstance(value, (bool, np.bool_)):
        raise ServiceError(f"{what} must be true or false, not {shown(value)}.")
    return bool(value)


def check_whole_number(what: str, value: int, low: int, high: int) -> int:
    """A count between ``low`` and ``high``; 12.0 from a slider is 12, but 2.5, "12", None or true are refused
    rather than rounded or cast (a cast would hide a caller's mistake)."""
    whole = isinstance(value, (int, np.integer)) or (
        isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer()
    )
    if isinstance(value, (bool, np.bool_)) or not whole or not low <= int(value) <= high:
        raise ServiceError(f"{what} must be a whole number from {low} to {high:,}, not {shown(value)}.")
    return int(value)


def check_text(value: str, *, empty: str, what: str, limit: int) -> str:
    """Non-empty text up to ``limit`` characters; anything that is not text is refused, not stringified."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ServiceError(empty)
    if not isinstance(value, str):
        raise ServiceError(f"The {what} must be text, not {shown(value)}.")
    if len(value) > limit:
        raise ServiceError(f"The {what} has {len(value):,} characters; the limit is {limit:,}. Shorten it.")
    return value


@contextlib.contextmanager
def loading(what: str) -> Iterator[None]:
    """Turn any failure while loading weights into a :class:`ModelLoadError` that names the model."""
    try:
        yield
    except Exception as exc:  # a corrupt cache, a missing file or memory: the page needs a sentence, not a trace
        raise ModelLoadError(
            f"{what} could not be loaded ({type(exc).__name__}: {str(exc)[:200]}). "
            "Try another model, or re-run scripts/install.sh."
        ) from exc


def check_query(text: str | None) -> str:
    """The query text, or a readable refusal for empty, over-long or non-text input."""
    return check_text(
        text.strip() if isinstance(text, str) else text,
        what="query",
        limit=MAX_QUERY_CHARS,
        empty="The query is empty: type a sentence or pick an example.",
    )
