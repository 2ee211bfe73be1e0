"""The client's half of secure fitting, against a provider in-process (``Provider``) or over HTTP (``RemoteProvider``).

Both parties embed the same public texts with their own models: the provider has registered its embeddings
``Z_A`` as a public set, the client brings ``Z_B``. The fitted map is the ridge solution of ``Z_B -> Z_A`` with an
unpenalised intercept (equal to scikit-learn's ``Ridge``):

- ``fit_paper``: the client learns ``(W, b)``; the provider sees only ciphertexts of ``[Z_B, 1]``.
- ``fit_sealed``: the provider learns ``(W, b)`` and nothing else of the client's data, and can serve map + head
  in sealed mode; the client sees only ciphertexts of ``Z_A``.

``python -m securealign fit`` runs either against a running ``python -m securealign serve``.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from securealign.crypto.client import ClientSession
from securealign.crypto.errors import DimensionError, ParameterError, TooFewRowsError
from securealign.crypto.fit_jobs import min_rows, texts_digest
from securealign.crypto.layout import Layout
from securealign.crypto.secure_fit import CrossProductEvaluator, KeyHolder, finite_matrix


@dataclass
class FitCost:
    """What a secure fit cost: rows, bytes each way (client -> provider is up) and milliseconds per party.

    The provider's milliseconds are measured around its calls, so over HTTP they include the transfer.
    """

    rows: int
    bytes_up: int = 0
    bytes_down: int = 0
    ms: dict[str, float] = field(default_factory=dict)

    def add_ms(self, party: str, start: float) -> float:
        """Charge the time since ``start`` to ``party``; returns now, the next step's start."""
        now = time.perf_counter()
        self.ms[party] = self.ms.get(party, 0.0) + (now - start) * 1e3
        return now


def _with_ones(Z: np.ndarray) -> np.ndarray:
    return np.hstack([Z, np.ones((len(Z), 1))])


def _regularised_gram(X: np.ndarray, absolute_alpha: float) -> np.ndarray:
    """``X^T X + alpha D`` where D leaves the intercept column unpenalised (ridge on centred data, as scikit-learn:
    the absolute convention)."""
    penalty = np.full(X.shape[1], float(absolute_alpha))
    penalty[-1] = 0.0
    return X.T @ X + np.diag(penalty)


@contextlib.contextmanager
def _fit(provider, public_set: str, texts: list[str], Z_B: np.ndarray, mode: str, model: str | None) -> Iterator[dict]:
    """An open fit, checked to run on the same texts as the client's, in the same order, and on enough of them.

    The provider binds fits to the key of a session (so one key cannot take every fit slot); a one-key session
    serves. A fit that fails half-way is closed on the provider, so it does not hold a slot until it expires.
    """
    Z_B = finite_matrix("Z_B", Z_B)
    if len(texts) != len(Z_B):
        raise DimensionError(f"{len(texts)} texts but {len(Z_B)} client embeddings")
    offered = provider.public_sets().get(public_set)  # an unknown set: open_fit refuses it below
    if offered is not None:  # the client's own check: it does not rely on the provider to protect its data
        needed = min_rows(mode, Z_B.shape[1] + 1, offered["provider_dim"])
        if len(Z_B) < needed:
            raise TooFewRowsError(
                f"the client refuses a {mode} fit on {len(Z_B)} texts: at least {needed} are "
                "needed so that the party decrypting the product cannot solve for the other's data"
            )
    session = provider.open_session(ClientSession([Layout.plan(1, 1)]).public_context())
    try:
        info = provider.open_fit(session, public_set, mode, Z_B.shape[1] + 1, model)
        try:
            if info["texts"] != texts_digest(texts) or info["rows"] != len(Z_B):
                raise ParameterError(
                    f"public set {public_set!r} holds {info['rows']} texts that differ from the "
                    f"client's {len(Z_B)}: both parties must embed the same texts in the same order"
                )
            yield info
        except BaseException:
            with contextlib.suppress(Exception):  # the provider may be the thing that failed
                provider.close_fit(info["fit_id"])
            raise
    finally:
        with contextlib.suppress(Exception):
            provider.close_session(session)


def fit_paper(
    provider, public_set: str, texts: list[str], Z_B: np.ndarray, absolute_alpha: float, *, progress: bool = True
) -> tuple[np.ndarray, np.ndarray, FitCost]:
    """The paper's protocol: returns the client's ``(W, b)`` and the cost; the provider saw only ciphertexts."""
    with _fit(provider, public_set, texts, Z_B, "paper", None) as info:
        return _fit_paper(provider, info, Z_B, absolute_alpha, progress)


def _fit_paper(
    provider, info: dict, Z_B: np.ndarray, absolute_alpha: float, progress: bool
) -> tuple[np.ndarray, np.ndarray, FitCost]:
    start, cost = time.perf_counter(), FitCost(len(Z_B))
    X, holder = _with_ones(np.asarray(Z_B, dtype=np.float64)), KeyHolder()
    with tqdm(
        total=len(X), desc="secure fit (paper): rows encrypted and sent", unit="row", disable=not progress
    ) as bar:
        for batch in holder.encrypt_rows(X, info["provider_dim"]):
            start = cost.add_ms("client", start)
            cost.bytes_up += len(batch)
            received = provider.add_fit_rows(info["fit_id"], batch)
            start = cost.add_ms("provider", start)
            bar.update(received - bar.n)
    product = provider.fit_product(info["fit_id"])
    start = cost.add_ms("provider", start)
    cost.bytes_down += len(product)
    cross = holder.decrypt(product)  # Z_A^T X
    solution = np.linalg.solve(_regularised_gram(X, absolute_alpha), cross.T)
    cost.add_ms("client", start)
    return solution[:-1], solution[-1], cost


def fit_sealed(
    provider,
    public_set: str,
    texts: list[str],
    Z_B: np.ndarray,
    absolute_alpha: float,
    *,
    model: str | None = None,
    progress: bool = True,
) -> tuple[dict, FitCost]:
    """The sealed variant: the provider decrypts ``(W, b)``; the client gets only the provider's receipt (the
    fit id and, when ``model`` names a served head, the id of the new sealed model) and the cost."""
    with _fit(provider, public_set, texts, Z_B, "sealed", model) as info:
        return _fit_sealed(provider, info, Z_B, absolute_alpha, progress)


def _fit_sealed(provider, info: dict, Z_B: np.ndarray, absolute_alpha: float, progress: bool) -> tuple[dict, FitCost]:
    start, cost = time.perf_counter(), FitCost(len(Z_B))
    X = _with_ones(np.asarray(Z_B, dtype=np.float64))
    # X G^-1: n x (d_B + 1), the client's plaintext
    weights = np.linalg.solve(_regularised_gram(X, absolute_alpha), X.T).T
    evaluator = CrossProductEvaluator(weights)
    start = cost.add_ms("client", start)
    with tqdm(
        total=len(X), desc="secure fit (sealed): encrypted rows received", unit="row", disable=not progress
    ) as bar:
        for row in range(0, len(X), info["batch_rows"]):
            batch = provider.fit_rows(info["fit_id"], row)
            start = cost.add_ms("provider", start)
            cost.bytes_down += len(batch)
            evaluator.add(batch)
            start = cost.add_ms("client", start)
            bar.update(evaluator.rows_done - bar.n)
    product = evaluator.result()  # Enc((X G^-1)^T Z_A) = Enc([W; b]) under the provider's key
    start = cost.add_ms("client", start)
    cost.bytes_up += len(product)
    receipt = provider.finish_fit(info["fit_id"], product)
    cost.add_ms("provider", start)
    return receipt, cost


def main(argv: list[str]) -> int:
    """`python -m securealign fit`: fit a map securely against a running provider (`python -m securealign serve`)."""
    parser = argparse.ArgumentParser(prog="python -m securealign fit", description=main.__doc__)
    parser.add_argument("--provider", default="http://127.0.0.1:8765", help="the provider's URL")
    parser.add_argument("--public-set", default="public", help="name of a public set the provider offers")
    parser.add_argument("--client-model", required=True, help="the client's zoo model key (e.g. wordllama)")
    parser.add_argument("--mode", choices=("paper", "sealed"), default="paper")
    parser.add_argument("--model", help="sealed mode: a served head to compose the map with (served as a new model)")
    parser.add_argument("--alpha", type=float, default=1.0, help="ridge penalty, absolute (scikit-learn's Ridge alpha)")
    parser.add_argument("--out", type=Path, help="paper mode: write W, b to this .npz")
    args = parser.parse_args(argv)
    from securealign.crypto.remote import RemoteProvider
    from securealign.datasets import load_public_corpus
    from securealign.models.embeddings import embed

    with RemoteProvider(args.provider) as provider:
        sets = provider.public_sets()
        if args.public_set not in sets:
            parser.error(f"the provider offers public sets {sorted(sets) or 'none'}, not {args.public_set!r}")
        texts = load_public_corpus(sets[args.public_set]["rows"])
        Z_B = embed(args.client_model, texts)
        if args.mode == "paper":
            W, b, cost = fit_paper(provider, args.public_set, texts, Z_B, args.alpha)
            print(f"fitted W {W.shape[0]} x {W.shape[1]} and b in paper mode; the provider saw only ciphertexts")
            if args.out:
                np.savez(args.out, W=W, b=b)
                print(f"wrote {args.out}")
        else:
            receipt, cost = fit_sealed(provider, args.public_set, texts, Z_B, args.alpha, model=args.model)
            served = receipt["model"] or "none (no --model given)"
            print(
                f"the provider holds a {receipt['map_shape'][0]} x {receipt['map_shape'][1]} map from fit "
                f"{receipt['fit_id']}; sealed model served as: {served}"
            )
    print(
        f"{cost.rows} rows, {cost.bytes_up / 1e6:.1f} MB up, {cost.bytes_down / 1e6:.1f} MB down, client "
        f"{cost.ms.get('client', 0) / 1e3:.1f} s, provider {cost.ms.get('provider', 0) / 1e3:.1f} s"
    )
    return 0
