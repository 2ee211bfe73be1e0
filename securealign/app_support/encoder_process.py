"""The demo's query encoders in a process of their own, so that they load on the second core while the app imports
Gradio and draws its first page on the first.

Why a process: importing torch, transformers and sentence-transformers costs about 6 s of CPU, and the app's own
start (Gradio, the page) about 5 s more; both are Python work that holds the GIL, so in one process they take
turns on one core however many threads run them, and either the first page or the first query waits. In a child
process the two run side by side. The child runs the library's own ``embed`` (nothing is reimplemented), loads
each model once, and answers one request at a time over a socket; only a query's text goes in and its vector comes
out (the app's queries are never written to the embedding cache).

:func:`start` is for the app (``app.py`` calls it before it imports anything heavy); a process that never calls it
(the library's tests, a notebook) embeds in-process through the same :class:`LocalEncoders`.
"""

from __future__ import annotations

import logging
import pickle
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection

import numpy as np

from securealign.paths import REPO_ROOT

log = logging.getLogger(__name__)


class LocalEncoders:
    """Sentence encoders loaded in this process, once each however many threads ask: a request that arrives while
    its model loads waits for that load instead of starting a second one, and one model embeds one text at a time
    (a fast tokenizer refuses to be used by two threads at once)."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def load(self, key: str) -> None:
        from securealign.models.embeddings import load_model  # torch and friends: only where a model loads

        with self._lock(key):
            load_model(key)  # cached: a second call returns at once; a failed load is tried again next time

    def embed(self, key: str, text: str) -> np.ndarray:
        """One text's vector, never written to the embedding cache."""
        from securealign.models.embeddings import embed

        self.load(key)
        with self._lock(key):
            return embed(key, [text], use_cache=False, progress=False)[0]

    def warm(self, keys: list[str]) -> None:
        """Start loading ``keys`` in the background, in this order, each with one embedding (the first call of an
        encoder also builds its lazy parts); a model that fails is left for the first real request to report."""
        threading.Thread(target=self._warm, args=(list(keys),), daemon=True, name="encoder-warm-up").start()

    def _warm(self, keys: list[str]) -> None:
        for key in keys:
            try:
                self.embed(key, "warm-up")
            except Exception as exc:  # reported, with the model's name, to the query that asks for it
                log.warning("warm-up of %s failed: %s: %s", key, type(exc).__name__, exc)


class EncoderProcess:
    """The client side of the child process: the same three calls as :class:`LocalEncoders`, one at a time."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        self._proc = subprocess.Popen(  # kept, so that the process object lives as long as the process
            [sys.executable, "-m", __name__, str(theirs.fileno())],
            cwd=REPO_ROOT,  # this checkout's securealign, whichever copy is installed
            pass_fds=[theirs.fileno()],
        )
        theirs.close()
        self._conn = Connection(ours.detach())
        self._lock = threading.Lock()

    def _call(self, method: str, *args: object) -> object:
        with self._lock:
            self._conn.send((method, args))
            status, value = self._conn.recv()
        if status == "error":
            raise value
        return value

    def load(self, key: str) -> None:
        self._call("load", key)

    def embed(self, key: str, text: str) -> np.ndarray:
        return self._call("embed", key, text)  # type: ignore[return-value]

    def warm(self, keys: list[str]) -> None:
        """Sent without waiting: the child may still be importing its libraries."""
        with self._lock:
            self._conn.send(("warm", (list(keys),)))


_local = LocalEncoders()
_process: EncoderProcess | None = None


def start() -> None:
    """Start the child process (once); from then on :func:`current` hands it out."""
    global _process
    if _process is None:
        _process = EncoderProcess()


def current() -> LocalEncoders | EncoderProcess:
    """Where this process embeds queries: the child if :func:`start` was called, else in-process."""
    return _process or _local


def _portable(exc: Exception) -> Exception:
    """The exception itself if it survives pickling (so the app's message names the real cause), else its gist."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def serve(fd: int) -> None:
    """The child's loop: answer requests until the app closes its end (the child then exits with it)."""
    conn = Connection(fd)
    encoders = LocalEncoders()
    import sentence_transformers  # noqa: F401 - the heavy part of every transformer encoder's first load, done now

    while True:
        try:
            method, args = conn.recv()
        except EOFError:
            return
        if method == "warm":  # the one call that is not answered
            encoders.warm(*args)
            continue
        try:
            if method not in ("load", "embed"):
                raise ValueError(f"the encoder process has no call {method!r}")
            conn.send(("ok", getattr(encoders, method)(*args)))
        except Exception as exc:
            conn.send(("error", _portable(exc)))


if __name__ == "__main__":
    serve(int(sys.argv[1]))
