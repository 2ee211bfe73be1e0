"""The provider's half of secure fitting across a network: public text sets and fit jobs.

A public set is the provider's own embeddings ``Z_A`` of texts both parties know, named by a digest of those texts
so the client can check that it embedded the same texts in the same order. A fit job runs one secure fit
against a set (the maths is in ``secure_fit.py``):

- paper mode: the job is a ``CrossProductEvaluator`` on ``Z_A``; the client streams in encrypted rows of
  ``[Z_B, 1]`` and takes out ``Enc(Z_A^T [Z_B, 1])``, from which it solves ``(W, b)`` itself;
- sealed mode: the job is a ``KeyHolder`` of the provider's own; the client pulls encrypted rows of ``Z_A``,
  multiplies them by its plaintext ``X G^-1`` and sends back ``Enc([W; b])``, which only the provider decrypts.

Jobs are bounded in number, in total and per key (a fit is opened from a session, whose key owns it), and a job
that receives no step for a short idle time expires, so neither abandoned nor hoarded fits hold the slots.

Row rule: the party that decrypts a cross-product ``Y^T X`` with ``n`` rows and ``p`` columns of ``X`` known to it
can solve ``Y^T = P X^+`` exactly when ``n <= p``. So a paper fit (the client decrypts ``Z_A^T [Z_B, 1]``) needs
more texts than the client's width, and a sealed fit (the provider decrypts ``(X G^-1)^T Z_A``) more texts than
the provider's dimension; both are refused otherwise (``TooFewRowsError``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from securealign.crypto import wire
from securealign.crypto.client import MODES
from securealign.crypto.errors import (
    DimensionError,
    LimitExceededError,
    ParameterError,
    TooFewRowsError,
    UnknownFitError,
)
from securealign.crypto.expiring import ExpiringStore, new_id
from securealign.crypto.secure_fit import BATCH_ROWS, CrossLayout, CrossProductEvaluator, KeyHolder, finite_matrix


def texts_digest(texts: list[str]) -> str:
    """A name for an ordered list of texts: both parties must embed exactly these, in this order."""
    return hashlib.sha256(json.dumps(list(texts), ensure_ascii=False).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class PublicSet:
    """The provider's embeddings of a public text set."""

    name: str
    digest: str
    Z: np.ndarray  # n x d_A


@dataclass
class FitJob:
    """One secure fit in progress: which set, which mode, and the provider's half of the primitive for it."""

    fit_id: str
    mode: str
    public: PublicSet
    width: int  # the client's row width p = d_B + 1 (its embeddings plus the intercept column)
    model_id: str | None  # sealed mode: the served head the fitted map is composed with
    owner: str  # the key id of the session that opened it
    evaluator: CrossProductEvaluator | None  # paper mode
    holder: KeyHolder | None  # sealed mode
    lock: threading.Lock = field(default_factory=threading.Lock)  # one step of a job at a time

    def paper_evaluator(self) -> CrossProductEvaluator:
        if self.evaluator is None:
            raise ParameterError(f"fit {self.fit_id!r} is a {self.mode} fit; this step belongs to a paper fit")
        return self.evaluator

    def sealed_holder(self) -> KeyHolder:
        if self.holder is None:
            raise ParameterError(f"fit {self.fit_id!r} is a {self.mode} fit; this step belongs to a sealed fit")
        return self.holder

    def info(self) -> dict:
        """What the client needs to run its half."""
        return {
            "fit_id": self.fit_id,
            "mode": self.mode,
            "public_set": self.public.name,
            "texts": self.public.digest,
            "rows": len(self.public.Z),
            "provider_dim": self.public.Z.shape[1],
            "client_width": self.width,
            "batch_rows": BATCH_ROWS,
            "model": self.model_id,
        }


def min_rows(mode: str, width: int, provider_dim: int) -> int:
    """The fewest texts a fit may use: more than twice the columns the decrypting party knows (see the row rule).

    Twice, because a CKKS slot is complex: a paper client that encrypts X + i X' (or a sealed provider that
    encrypts Z_A + i Z') decrypts the product with both matrices, 2 p (or 2 q) known columns in all.
    """
    return 2 * (width if mode == "paper" else provider_dim) + 1


class FitJobs:
    """Public sets by name and open fit jobs by id, with an idle expiry and caps on jobs in total and per key."""

    def __init__(self, idle_seconds: float = 60.0, max_jobs: int = 4, max_per_key: int = 1) -> None:
        self.max_jobs, self.max_per_key = max_jobs, max_per_key
        self._sets: dict[str, PublicSet] = {}
        # a busy job (mid-step) does not expire; a full store refuses new jobs (see open) rather than evict one
        self._jobs: ExpiringStore[FitJob] = ExpiringStore(
            idle_seconds, max_jobs, _unknown_fit, in_use=lambda job: job.lock.locked()
        )

    def add_set(self, name: str, texts: list[str], Z: np.ndarray) -> PublicSet:
        Z = finite_matrix("Z_A", Z)
        if not isinstance(name, str) or not name.strip():
            raise ParameterError("a public set needs a non-empty name")
        if len(texts) != len(Z):
            raise DimensionError(f"{len(texts)} texts but {len(Z)} embeddings in public set {name!r}")
        self._sets[name] = PublicSet(name, texts_digest(texts), Z)
        return self._sets[name]

    def sets(self) -> dict[str, dict]:
        return {
            name: {"texts": s.digest, "rows": len(s.Z), "provider_dim": s.Z.shape[1]}
            for name, s in sorted(self._sets.items())
        }

    def open(self, public_set: str, mode: str, width: int, model_id: str | None, owner: str) -> FitJob:
        if public_set not in self._sets:
            raise UnknownFitError(f"unknown public set {public_set!r}; held: {', '.join(self._sets) or 'none'}")
        if mode not in MODES:
            raise ParameterError(f"fit mode must be one of {MODES}, got {mode!r}")
        if not isinstance(width, int) or not 2 <= width <= 4096:
            raise DimensionError(f"client width {width!r} must be an embedding dimension + 1, between 2 and 4096")
        public = self._sets[public_set]
        # the product message (paper: d_A rows of width p; sealed: p rows of width d_A) must fit one MATRIX message
        shape = (public.Z.shape[1], width) if mode == "paper" else (width, public.Z.shape[1])
        if CrossLayout(shape[1], shape[0]).n_ciphertexts > BATCH_ROWS:
            raise LimitExceededError(
                f"a {shape[0]} x {shape[1]} cross-product needs more than {BATCH_ROWS} "
                "ciphertexts; use smaller embeddings"
            )
        needed = min_rows(mode, width, public.Z.shape[1])
        if len(public.Z) < needed:
            raise TooFewRowsError(
                f"a {mode} fit of width {width} on {public.Z.shape[1]}-d provider embeddings needs "
                f"at least {needed} texts (the decrypting party could otherwise solve for the "
                f"other's data); public set {public_set!r} holds {len(public.Z)}"
            )
        job = FitJob(
            new_id(),
            mode,
            public,
            width,
            model_id,
            owner,
            CrossProductEvaluator(public.Z) if mode == "paper" else None,
            KeyHolder() if mode == "sealed" else None,
        )

        def admit(running: list[FitJob]) -> None:
            if sum(j.owner == owner for j in running) >= self.max_per_key:
                raise LimitExceededError(f"this key already runs {self.max_per_key} secure fit(s); finish or close it")
            if len(running) >= self.max_jobs:
                raise LimitExceededError(f"{self.max_jobs} secure fits are already running; try again later")

        self._jobs.add(job.fit_id, job, admit=admit)
        return job

    def get(self, fit_id: str, mode: str) -> FitJob:
        job = self._jobs.get(fit_id)
        if job.mode != mode:
            raise ParameterError(f"fit {fit_id!r} runs in {job.mode} mode; this step belongs to {mode} mode")
        return job

    def close(self, fit_id: str) -> None:
        self._jobs.close(fit_id)

    @contextlib.contextmanager
    def _step(self, fit_id: str, mode: str) -> Iterator[FitJob]:
        """The job, held for one step: concurrent requests on it wait, and one that finds it finished is refused
        (a second product would rescale the accumulators past the last level)."""
        job = self.get(fit_id, mode)
        with job.lock:
            if not self._jobs.holds(fit_id, job):
                raise UnknownFitError(f"secure fit {fit_id!r} has just finished or expired")
            try:
                yield job
            finally:
                self._jobs.touch(fit_id)  # idle time counts from the end of a (long) step

    # paper mode: the provider evaluates ---------------------------------------------------------------------
    def add_rows(self, fit_id: str, batch: bytes) -> int:
        """Add a batch of the client's encrypted rows; returns how many rows the job has received."""
        with self._step(fit_id, "paper") as job:
            cols = wire.decode(batch, wire.MessageType.MATRIX).meta["cols"]
            if cols != job.width:
                raise DimensionError(f"rows of width {cols}; the fit was opened for width {job.width}")
            job.paper_evaluator().add(batch)
            return job.paper_evaluator().rows_done

    def product(self, fit_id: str) -> bytes:
        """``Enc(Z_A^T [Z_B, 1])`` once every row is in; the job then ends."""
        with self._step(fit_id, "paper") as job:
            message = job.paper_evaluator().result()
            self.close(fit_id)
            return message

    # sealed mode: the provider holds the key ---------------------------------------------------------------
    def rows(self, fit_id: str, start: int) -> bytes:
        """A batch of the provider's encrypted rows of ``Z_A`` from row ``start``, laid out for the client."""
        with self._step(fit_id, "sealed") as job:
            return job.sealed_holder().encrypt_batch(job.public.Z, job.width, start)

    def finish(self, fit_id: str, product: bytes) -> tuple[FitJob, np.ndarray, np.ndarray]:
        """Decrypt the client's ``Enc([W; b])``; returns the job and the map, which never leaves the provider."""
        with self._step(fit_id, "sealed") as job:
            meta = wire.decode(product, wire.MessageType.MATRIX).meta
            if (meta["rows"], meta["cols"]) != (job.width, job.public.Z.shape[1]):
                raise DimensionError(
                    f"encrypted map of {meta['rows']} x {meta['cols']}; expected {job.width} x {job.public.Z.shape[1]}"
                )
            solution = job.sealed_holder().decrypt(product)
            self.close(fit_id)
            return job, solution[:-1], solution[-1]

    def __len__(self) -> int:
        return len(self._jobs)


def _unknown_fit(fit_id: str) -> UnknownFitError:
    return UnknownFitError(f"no secure fit {fit_id!r} (never opened, finished or expired)")
