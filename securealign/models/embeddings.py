"""``embed(model, texts)``: pooled final hidden states of any zoo model, cached on disk.

Embedding is the slowest step on a 2-core machine (minutes for a few thousand texts), and every experiment
re-embeds the same datasets, so each vector is stored once in a SQLite file per model and pooling, keyed by
the SHA-256 of the text; a second call costs a lookup.
"""

from __future__ import annotations

import hashlib
import sqlite3
import sys
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from securealign.models.zoo import ModelSpec, as_spec
from securealign.paths import cache_dir

if TYPE_CHECKING:  # torch and friends load only where a model does
    from securealign.models.causal_lm import CausalLM
    from securealign.models.encoders import Encoder

CACHE_VERSION = 1
MAX_TEXT_CHARS = 20_000
POOLINGS = {"encoder": ("mean",), "causal": ("last", "mean")}
# below this many uncached texts a progress bar is noise
PROGRESS_THRESHOLD = 64

ProgressFn = Callable[[int, int], None]


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_path(model_key: str, pooling: str) -> Path:
    """The SQLite file that holds one model's cached vectors for one pooling."""
    folder = cache_dir() / "embeddings"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{model_key}-{pooling}-v{CACHE_VERSION}.sqlite"


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=60)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vec BLOB NOT NULL)")
    return conn


def validate_texts(texts: Sequence[str]) -> list[str]:
    """Reject what no model should silently embed: no texts, non-strings, blank or oversized texts."""
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not a single string")
    texts = list(texts)
    if not texts:
        raise ValueError("no texts to embed: pass at least one non-empty text")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text #{i} is a {type(text).__name__}, not a string")
        if not text.strip():
            raise ValueError(f"text #{i} is empty")
        if len(text) > MAX_TEXT_CHARS:
            raise ValueError(f"text #{i} has {len(text):,} characters; the limit is {MAX_TEXT_CHARS:,}")
    return texts


def load_model(model: ModelSpec | str) -> Encoder | CausalLM:
    """The loaded model :func:`embed` computes with (a sentence encoder, or a causal LM), once per process: for
    callers that load ahead of the first text (the app's query encoders)."""
    spec = as_spec(model)
    if spec.kind == "encoder":
        from securealign.models.encoders import load_encoder

        return load_encoder(spec)
    from securealign.models.causal_lm import load_causal_lm

    return load_causal_lm(spec)


def _compute(spec: ModelSpec, pooling: str, texts: list[str], batch_size: int) -> np.ndarray:
    model = load_model(spec)
    if spec.kind == "encoder":
        return model.encode(texts, batch_size=batch_size)
    return model.pooled(texts, batch_size=batch_size)[pooling]


def embed(
    model: ModelSpec | str,
    texts: Sequence[str],
    *,
    pooling: str | None = None,
    batch_size: int = 32,
    progress: bool | ProgressFn | None = None,
    use_cache: bool = True,
) -> np.ndarray:
    """Pooled final hidden states of ``model`` (a zoo spec, or its key), shape ``(len(texts), dim)``, float32, in
    the order of ``texts``.

    ``pooling`` defaults to the model's own (mean for encoders, last token for causal LMs). ``progress`` is
    ``None`` (a tqdm bar for long jobs), ``False``, ``True`` or a callable ``(done, total)`` (e.g. a UI bar).
    """
    spec = as_spec(model)
    pooling = pooling or spec.pooling
    if pooling not in POOLINGS[spec.kind]:
        raise ValueError(f"pooling {pooling!r} is not available for {spec.key!r}; choose from {POOLINGS[spec.kind]}")
    texts = validate_texts(texts)
    keys = [_text_key(t) for t in texts]
    found: dict[str, np.ndarray] = {}
    path = cache_path(spec.key, pooling)
    if use_cache:
        with closing(_connect(path)) as conn:
            unique = list(dict.fromkeys(keys))
            for start in range(0, len(unique), 900):  # SQLite's bound-parameter limit
                chunk = unique[start : start + 900]
                rows = conn.execute(
                    f"SELECT key, vec FROM vectors WHERE key IN ({','.join('?' * len(chunk))})", chunk
                ).fetchall()
                found.update((k, np.frombuffer(v, dtype=np.float32)) for k, v in rows)
    missing = list(dict.fromkeys(t for t, k in zip(texts, keys, strict=False) if k not in found))
    if missing:
        _fill(spec, pooling, missing, batch_size, progress, found, path if use_cache else None)
    out = np.stack([found[k] for k in keys]).astype(np.float32, copy=False)
    if out.shape[1] != spec.dim:
        raise RuntimeError(f"{spec.key} returned {out.shape[1]}-dim vectors, the zoo says {spec.dim}")
    return out


def _fill(
    spec: ModelSpec,
    pooling: str,
    missing: list[str],
    batch_size: int,
    progress: bool | ProgressFn | None,
    found: dict[str, np.ndarray],
    path: Path | None,
) -> None:
    """Embed the uncached texts in chunks, storing each chunk as soon as it is done (so an interrupted job resumes)."""
    show_bar = progress is True or (progress is None and len(missing) >= PROGRESS_THRESHOLD)
    bar = tqdm(
        total=len(missing), desc=f"embedding with {spec.key}", unit="text", file=sys.stderr, disable=not show_bar
    )
    chunk_size = max(batch_size, 8) * 4
    with bar:
        for start in range(0, len(missing), chunk_size):
            chunk = missing[start : start + chunk_size]
            vectors = _compute(spec, pooling, chunk, batch_size)
            rows = [
                (_text_key(t), np.ascontiguousarray(v, dtype=np.float32).tobytes())
                for t, v in zip(chunk, vectors, strict=False)
            ]
            found.update((k, np.frombuffer(v, dtype=np.float32)) for k, v in rows)
            if path is not None:
                with closing(_connect(path)) as conn, conn:
                    conn.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)", rows)
            bar.update(len(chunk))
            if callable(progress):
                progress(min(start + chunk_size, len(missing)), len(missing))
