"""A live secure fit of the client's map (both parties in this process), checked against the plaintext ridge
fit of the same texts and, with a task, measured by what the map is for.
"""

from __future__ import annotations

import time

import numpy as np

from securealign import alignment
from securealign.app_support.service.checks import ProgressFn, check_choice, check_whole_number, loading, report
from securealign.app_support.service.choices import check_pair, check_task, model_name
from securealign.app_support.service.results import ridge_rows
from securealign.crypto import MODES, Provider
from securealign.crypto.fit_client import fit_paper, fit_sealed
from securealign.crypto.fit_jobs import min_rows
from securealign.datasets import load_public_corpus, load_task
from securealign.experiments import artifacts
from securealign.models.embeddings import embed
from securealign.models.zoo import ModelSpec

# sizes a live secure fit offers above a pair's minimum (the row rule, see secure_fit_choices); ~15 ms of work per text
FIT_TEXTS = (64, 128, 256, 512, 1024, 2048)
FIT_HELD_OUT = 200  # the public texts after the fitted ones, to measure the fitted map
# fixed in advance, since choosing it by validation would need both parties' embeddings in the clear: near the best
# held-out R^2 and top-1 retrieval at 256-1,024 texts on the pairs benchmarks/fit_lambda.py prints
FIT_LAMBDA = 0.3
FIT_MATCH_TOLERANCE = 1e-4  # CKKS noise on the map is ~1e-8; anything near this means the fit went wrong


def _task_accuracy(
    task: str, source: ModelSpec, target: ModelSpec, affine: alignment.AffineMap, progress: ProgressFn | None
) -> dict:
    """What the fitted map is for: the provider's head on its own test embeddings vs on the client's through the
    map, on the task's full test split, beside the precomputed public-only map (fitted on the whole corpus)."""
    data, head = load_task(task), artifacts.load_head(task, target.key)
    report(progress, 0.9, f"classifying {len(data.test_texts)} held-out {task} texts through the map")
    z_b = embed(source, data.test_texts, progress=False)
    # the provider's native accuracy on this same split is already in the assets: no need to embed it again
    public = next(r for r in ridge_rows(task, "public") if (r["source"], r["target"]) == (source.key, target.key))
    return {
        "task": task,
        "title": data.title,
        "n_test": len(data.test_texts),
        "provider_native": public["baseline_acc"],
        "through_this_map": head.accuracy(affine.apply(z_b), data.test_labels),
        "public_map_precomputed": public["mapped_acc"],
        "public_map_texts": public["pairs"],
    }


FIT_SECONDS_PER_TEXT = 0.015  # encrypted work per public text on two free cores (512 texts: 8.3 s, docs/app.md)


def secure_fit_choices(source: str, target: str, mode: str) -> list[int]:
    """The numbers of public texts a fit of this pair may use: first the fewest the protocol accepts (more than
    twice the columns the decrypting party knows, :func:`securealign.crypto.fit_jobs.min_rows`: below that it could
    solve for the other party's embeddings), then the usual sizes above it."""
    source_spec, target_spec = check_pair(source, target)
    check_choice("mode", mode, list(MODES))
    return _fit_sizes(mode, source_spec, target_spec)


def _fit_sizes(mode: str, source: ModelSpec, target: ModelSpec) -> list[int]:
    low = min_rows(mode, source.dim + 1, target.dim)
    return [low, *(n for n in FIT_TEXTS if n > low)]


def secure_fit_estimate(n_texts: int, task: str) -> dict:
    """What a secure fit of ``n_texts`` texts will cost, to show before it starts: seconds of encrypted work on two
    free cores, and how many texts each model embeds on top (cached after the first time a model embeds them)."""
    n_texts = check_whole_number("The number of public texts", n_texts, 1, max(FIT_TEXTS))
    return {
        "encrypted_s": 2.0 + FIT_SECONDS_PER_TEXT * n_texts,
        "public_texts": n_texts + FIT_HELD_OUT,
        # from the manifest, so the estimate drawn with the first page needs no dataset split
        "test_texts": artifacts.load_manifest()["task_sizes"][check_task(task)]["test"],
    }


def secure_fit(
    source: str,
    target: str,
    mode: str = "sealed",
    n_texts: int = 512,
    task: str | None = None,
    progress: ProgressFn | None = None,
) -> dict:
    """Fit the client's map on ``n_texts`` public texts under encryption (both parties in this process), and check
    it against the plaintext ridge fit of the same texts; with ``task``, also measure what the map is for: the
    provider's head on the client's mapped test embeddings. Returns the JSON-able comparison."""
    source_spec, target_spec = check_pair(source, target)
    if task is not None:  # the task is optional here: without one, the map's quality is measured on public text only
        check_task(task)
    check_choice("mode", mode, list(MODES))
    fewest = _fit_sizes(mode, source_spec, target_spec)[0]
    n_texts = check_whole_number(
        f"The number of public texts for a {mode} fit of this pair", n_texts, fewest, max(FIT_TEXTS)
    )
    wall = time.perf_counter()
    texts = load_public_corpus(n_texts + FIT_HELD_OUT)
    fit_texts = texts[:n_texts]
    embeddings = {}
    for fraction, (role, spec) in ((0.05, ("client", source_spec)), (0.15, ("provider", target_spec))):
        report(progress, fraction, f"the {role} embeds {len(texts)} public texts with {model_name(spec.key)}")
        with loading(f"The model {model_name(spec.key)}"):
            embeddings[role] = embed(spec, texts, progress=False).astype(np.float64)
    z_b, z_a = embeddings["client"], embeddings["provider"]
    alpha = alignment.absolute_alpha(z_b[:n_texts], FIT_LAMBDA)
    provider = Provider()  # a fit of its own: nothing from the demo's served models is involved
    provider.add_public_set("public", fit_texts, z_a[:n_texts])
    report(progress, 0.3, f"secure fit in {mode} mode: encrypting and multiplying {n_texts} rows")
    start = time.perf_counter()
    if mode == "paper":
        W, b, cost = fit_paper(provider, "public", fit_texts, z_b[:n_texts], alpha)
        receipt = None
    else:
        receipt, cost = fit_sealed(provider, "public", fit_texts, z_b[:n_texts], alpha)
        W, b = provider.fitted_maps[receipt["fit_id"]]  # the provider's copy; the client's receipt has no map
    secure_ms = (time.perf_counter() - start) * 1e3
    start = time.perf_counter()
    reference = alignment.fit_ridge(z_b[:n_texts], z_a[:n_texts], relative_lambda=FIT_LAMBDA)
    plain_ms = (time.perf_counter() - start) * 1e3
    report(progress, 0.85, f"measuring both maps on {FIT_HELD_OUT} held-out public texts")
    held_b, held_a = z_b[n_texts:], z_a[n_texts:]
    secure_map = alignment.AffineMap(W, b)
    difference = float(max(np.max(np.abs(W - reference.W)), np.max(np.abs(b - reference.b))))
    result = {
        "source": source,
        "target": target,
        "source_name": model_name(source),
        "target_name": model_name(target),
        "mode": mode,
        "n_texts": n_texts,
        "held_out": FIT_HELD_OUT,
        "lambda": FIT_LAMBDA,
        "alpha": alpha,
        "map_shape": [int(W.shape[0]), int(W.shape[1])],
        "who_holds_the_map": "client" if mode == "paper" else "provider",
        "receipt": receipt,
        "max_abs_difference": difference,
        "matches_plaintext": difference < FIT_MATCH_TOLERANCE,
        "secure_ms": secure_ms,
        "plaintext_ms": plain_ms,
        "party_ms": {party: float(ms) for party, ms in cost.ms.items()},
        "bytes_up": cost.bytes_up,
        "bytes_down": cost.bytes_down,
        "quality_secure": alignment.fit_quality(secure_map, held_b, held_a),
        "quality_plaintext": alignment.fit_quality(reference, held_b, held_a),
        "task_accuracy": None if task is None else _task_accuracy(task, source_spec, target_spec, secure_map, progress),
    }
    result["wall_ms"] = (time.perf_counter() - wall) * 1e3  # the whole wait: embedding, fit, measuring the map
    return result
