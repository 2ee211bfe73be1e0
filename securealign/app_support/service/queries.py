"""One query: the client's embedding mapped into the provider's space and classified, in plaintext and under
CKKS, with timings that add up to the wall clock; the provider-model reference, timed apart; the warm-up.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from scipy.special import softmax

from securealign.app_support import encoder_process
from securealign.app_support.service.checks import (
    ProgressFn,
    ServiceError,
    check_choice,
    check_flag,
    check_query,
    loading,
    report,
)
from securealign.app_support.service.choices import check_pair, check_task, model_name, true_label, true_labels
from securealign.app_support.service.provider_link import app_provider, make_spare_keys, new_client, served_model
from securealign.crypto import (
    ANSWER_REVEALS,
    MODES,
    PRIVACY_REVEALS,
    THREAT_MODELS,
    ClientSession,
    plaintext_logits,
    run_encrypted_query,
)
from securealign.crypto.errors import QueryBudgetError
from securealign.experiments import artifacts
from securealign.models.zoo import ModelSpec, get_spec

# encrypted logits stay within ~1e-5 of plaintext; a larger gap means the provider's model is not this pair's
ENCRYPTED_TOLERANCE = 1e-3


def _prediction(logits: np.ndarray, classes: list[str]) -> dict:
    probs = softmax(np.asarray(logits, dtype=np.float64))
    return {
        "label": classes[int(np.argmax(logits))],
        "logits": [float(v) for v in logits],
        "probabilities": {c: float(p) for c, p in zip(classes, probs, strict=True)},
    }


_model_locks: dict[str, threading.Lock] = {}
_model_locks_lock = threading.Lock()
_loaded: set[str] = set()


def _load(spec: ModelSpec, progress: ProgressFn | None, fraction: float, role: str) -> None:
    """Load an encoder once per process; a query arriving while the warm-up loads it waits instead of loading a
    second copy."""
    with _model_locks_lock:
        lock = _model_locks.setdefault(spec.key, threading.Lock())
    with lock:
        if spec.key in _loaded:
            return
        report(progress, fraction, f"loading the {role} model {model_name(spec.key)} (first use only)")
        with loading(f"The model {model_name(spec.key)}"):
            encoder_process.current().load(spec.key)
        _loaded.add(spec.key)


def _embed_one(
    spec: ModelSpec, text: str, progress: ProgressFn | None, fraction: float, role: str
) -> tuple[np.ndarray, float]:
    _load(spec, progress, fraction, role)
    report(progress, fraction + 0.1, f"embedding the query with {model_name(spec.key)}")
    start = time.perf_counter()
    z = encoder_process.current().embed(spec.key, text)  # user queries are never written to the embedding cache
    return z.astype(np.float64), (time.perf_counter() - start) * 1e3


def warm_up(task: str, source: str, target: str) -> None:
    """Load the default pair's encoders, head, map and served model, so that the first query after the page is
    served is as quick as later ones (the app runs this in the background right after it starts)."""
    check_task(task)
    source_spec, target_spec = check_pair(source, target)
    # the encoders load in the order a first query needs them (the provider's own model only serves the reference,
    # after the answer), on a core of their own when the app runs them in a child process (encoder_process); the
    # rest of a first query (served model, a spare set of keys, labels) waits for the client's encoder, so that it
    # is made while the page is in the browser's hands rather than while it is being built
    encoder_process.current().warm([source_spec.key, target_spec.key])
    _load(source_spec, None, 0.0, "client")
    served_model(task, source, target)
    make_spare_keys()
    true_labels(task)


# the latency chart's bar for each protocol step kind (keys are sent once per session, so they get their own bar)
_STEP_BARS = {"keys": "send public keys (once)"}
OVERHEAD_BAR = "loading and overhead"
REFERENCE_BAR = "reference: provider's own model"


def _plaintext_exposure(x: np.ndarray, logits: np.ndarray, mode: str) -> dict:
    """What the provider would receive and return if the query travelled unencrypted: the vector itself (in
    sealed mode the raw embedding, in paper mode the mapped one), readable by anyone who holds it."""
    return {
        "sent": "the client's raw embedding" if mode == "sealed" else "the client's mapped embedding",
        "dims": int(x.shape[0]),
        "bytes_up": int(x.astype(np.float32).nbytes),
        "bytes_down": int(logits.astype(np.float32).nbytes),
        "first_values": [round(float(v), 4) for v in x[:6]],
    }


def classify(
    text: str,
    source: str,
    target: str,
    task: str,
    mode: str = "sealed",
    encrypted: bool = True,
    client: ClientSession | None = None,
    progress: ProgressFn | None = None,
    answer: str = "logits",
) -> tuple[dict, ClientSession | None]:
    """The client's path for one query: its embedding mapped into the provider's space and classified by the
    provider's head, in plaintext and (when ``encrypted``) under CKKS. ``wall_ms`` is the whole call, as the
    visitor waits for it, and ``timings_ms`` splits it into parts that add up to it. The provider's own model on
    the raw text is a reference only the demo can compute, so it is left to :func:`add_reference`. Returns the
    JSON-able comparison and the client session (new keys are made when ``client`` is None and encryption is on).
    ``answer="label"`` asks the provider for the label only: the client then learns no logits (see
    ``ANSWER_REVEALS``), so the encrypted path has a label and no probabilities.
    """
    text = check_query(text)
    check_task(task)
    source_spec, _ = check_pair(source, target)
    check_choice("mode", mode, list(MODES))
    encrypted = check_flag("encrypt", encrypted)
    check_choice("answer", answer, list(ANSWER_REVEALS))
    wall = time.perf_counter()
    head, affine = artifacts.load_head(task, target), artifacts.load_map(task, source, target)
    z_src, embed_ms = _embed_one(source_spec, text, progress, 0.05, "client")
    mapped_logits = plaintext_logits(z_src, head.V, head.c, affine.W, affine.b)
    truth = true_label(task, text)
    result = {
        "query": text,
        "task": task,
        "source": source,
        "target": target,
        "mode": mode,
        "encrypted": encrypted,
        "answer": answer,
        "answer_reveals": ANSWER_REVEALS[answer],
        "source_name": model_name(source),
        "target_name": model_name(target),
        "classes": head.classes,
        "true_label": truth,
        "native": None,
        "mapped_plaintext": _prediction(mapped_logits, head.classes),
        "mapped_encrypted": None,
        "protocol": [],
        "key_material": {},
        "exposed": None,
        "timings_ms": {"embedding": embed_ms},
        "reference_ms": {},
        "agreement": {},
        "threat_model": THREAT_MODELS[mode],
    }
    if encrypted:
        if client is None:
            report(progress, 0.5, "generating this session's CKKS keys")
            start = time.perf_counter()
            client = new_client()
            result["timings_ms"]["key generation (once)"] = (time.perf_counter() - start) * 1e3
        report(progress, 0.6, "running the encrypted protocol")
        model_id = served_model(task, source, target)

        def query(client: ClientSession):
            return run_encrypted_query(
                client,
                app_provider(),
                model_id,
                z_src,
                mode,
                affine_map=affine if mode == "paper" else None,
                answer=answer,
            )

        try:
            try:
                scores, trace = query(client)
            except QueryBudgetError:  # a key decrypts at most tau circuit-private answers: fresh keys, once
                if not client.private_answers:
                    raise
                client = new_client()
                scores, trace = query(client)
        except ConnectionError as exc:  # a remote provider went away mid-query: say so, keep the session
            raise ServiceError(f"The provider could not be reached ({exc}). Try again in a moment.") from exc
        result["agreement"]["encrypted_vs_plaintext"] = bool(np.argmax(scores) == np.argmax(mapped_logits))
        if answer == "logits":
            result["mapped_encrypted"] = _prediction(scores, head.classes)
            result["agreement"]["max_logit_error"] = float(np.max(np.abs(scores - mapped_logits)))
            result["agreement"]["within_ckks_noise"] = result["agreement"]["max_logit_error"] < ENCRYPTED_TOLERANCE
        else:  # pairwise wins per class: their argmax is the label, and nothing else is revealed
            result["mapped_encrypted"] = {
                "label": head.classes[int(np.argmax(scores))],
                "logits": None,
                "probabilities": None,
                "wins": [round(float(w)) for w in scores],
            }
        result["privacy"], result["privacy_reveals"] = trace.privacy, PRIVACY_REVEALS[trace.privacy]
        result["protocol"] = [vars(step) for step in trace.steps]
        for step in trace.steps:
            bar = _STEP_BARS.get(step.kind, step.kind)
            result["timings_ms"][bar] = result["timings_ms"].get(bar, 0.0) + step.ms
        result["key_material"] = {
            "key_id": client.key_id,
            "public_context_bytes": len(client.public_context()),
            "rotation_steps": list(client.steps),
            "secret_key": "held by the client only",
            "ckks_residue": trace.residue,
        }
    else:
        sent = z_src if mode == "sealed" else z_src @ affine.W + affine.b
        result["exposed"] = _plaintext_exposure(sent, mapped_logits, mode)
    result["wall_ms"] = (time.perf_counter() - wall) * 1e3
    result["timings_ms"][OVERHEAD_BAR] = max(0.0, result["wall_ms"] - sum(result["timings_ms"].values()))
    if truth is not None:
        result["correct"] = {
            k: result[k]["label"] == truth for k in ("mapped_plaintext", "mapped_encrypted") if result[k] is not None
        }
    report(progress, 1.0, "done")
    return result, client


def add_reference(result: dict, progress: ProgressFn | None = None) -> dict:
    """``result`` with the provider's own model applied to the raw text: the reference a real provider never
    computes (it never sees the text), so it runs after the client's answer is shown and is timed apart."""
    head = artifacts.load_head(result["task"], result["target"])
    z_tgt, embed_ms = _embed_one(get_spec(result["target"]), result["query"], progress, 0.5, "provider")
    native = _prediction(plaintext_logits(z_tgt, head.V, head.c), head.classes)
    out = {
        **result,
        "native": native,
        "reference_ms": {REFERENCE_BAR: embed_ms},
        "agreement": {
            **result["agreement"],
            "mapped_vs_native": native["label"] == result["mapped_plaintext"]["label"],
        },
    }
    if result["true_label"] is not None:
        out["correct"] = {**result["correct"], "native": native["label"] == result["true_label"]}
    return out
