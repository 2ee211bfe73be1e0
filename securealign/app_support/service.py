"""What the demo app asks of the library: choices from the precomputed assets, one query run natively, mapped and
encrypted (with timings and the protocol trace), the OOD comparison, result tables, streamed generation, export.

The app only wires widgets to these functions, so every number on the page comes from here and is testable
without a browser. Everything returns plain dicts and lists (JSON-able), because the same results go to the
page, to the Gradio API and into the exported report. Input problems and model failures surface as
:class:`ServiceError` with a sentence a presenter can read aloud; nothing here knows about Gradio.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import softmax

from securealign import alignment
from securealign.app_support import encoder_process
from securealign.crypto import (
    ANSWER_REVEALS,
    MODES,
    THREAT_MODELS,
    ClientSession,
    Provider,
    RemoteProvider,
    plaintext_logits,
    run_encrypted_query,
)
from securealign.crypto.errors import ProtocolError, UnknownModelError
from securealign.crypto.fit_client import fit_paper, fit_sealed
from securealign.crypto.fit_jobs import min_rows
from securealign.datasets import TASKS, load_public_corpus, load_task
from securealign.experiments import artifacts
from securealign.models.embeddings import embed
from securealign.models.zoo import get_spec, list_models

MAX_QUERY_CHARS = 2000
MAX_PROMPT_CHARS = 500
MAX_APP_NEW_TOKENS = 48  # the library allows 128; on 2 shared cores a live demo stays short
# sizes a live secure fit offers above a pair's minimum (the row rule, see secure_fit_choices); ~15 ms of work per text
FIT_TEXTS = (64, 128, 256, 512, 1024, 2048)
FIT_HELD_OUT = 200  # the public texts after the fitted ones, to measure the fitted map
# fixed in advance, since choosing it by validation would need both parties' embeddings in the clear: near the best
# held-out R^2 and top-1 retrieval at 256-1,024 texts on the pairs benchmarks/fit_lambda.py prints
FIT_LAMBDA = 0.3
FIT_MATCH_TOLERANCE = 1e-4  # CKKS noise on the map is ~1e-8; anything near this means the fit went wrong
EXAMPLES_PER_TASK = 5
# the pair the demo tells its story with (app, warm-up, benchmark): the provider's head keeps 96.5% of its 97.2%
# through the map, and the first held-out examples are right on every path
STORY_TASK, STORY_CLIENT, STORY_PROVIDER = "bbc_news", "minilm", "mpnet"
FIT_MEASURES = {
    "r2": "held-out R² of the map",
    "cosine": "mean cosine to the true target embedding",
    "top1": "top-1 retrieval of the true target",
    "mapped_acc": "provider head accuracy on mapped embeddings",
    "retained": "accuracy retained (mapped / provider native)",
}

METRIC_LABELS = {
    "cka": "linear CKA",
    "cka_debiased": "debiased CKA",
    "mutual_knn": "mutual k-NN (k = 10)",
    "svcca": "SVCCA",
}
PUBLIC_LABEL = "public corpus (Guardian headlines, film plots)"

ProgressFn = Callable[[float, str], None]


class ServiceError(ValueError):
    """A request the demo cannot serve, with a message meant for the page (no traceback, no jargon)."""


class ModelLoadError(ServiceError):
    """A model whose weights are installed but would not load (corrupt cache, missing file, out of memory)."""


def _report(progress: ProgressFn | None, fraction: float, what: str) -> None:
    if progress is not None:
        progress(fraction, what)


# ---- what can be chosen ---------------------------------------------------------------------------------------


def catalogue() -> dict:
    """Choices for every selector, from the precomputed manifest only (so the first page needs no model)."""
    try:
        manifest = artifacts.load_manifest()
    except artifacts.MissingArtifactError as exc:
        raise ServiceError(f"The precomputed results are missing ({exc}).") from exc
    return {
        "encoders": [(f"{model_name(k)}: {manifest['encoder_names'][k]}", k) for k in manifest["encoders"]],
        "tasks": [(manifest["task_titles"][t], t) for t in manifest["tasks"]],
        "similarity_datasets": [
            (manifest["task_titles"].get(d, PUBLIC_LABEL if d == "public" else d), d)
            for d in manifest["similarity_datasets"]
        ],
        "similarity_metrics": [(METRIC_LABELS.get(m, m), m) for m in manifest["similarity_metrics"]],
        "regimes": [(manifest["regime_descriptions"][r], r) for r in manifest["regimes"]],
        "demo_regime": manifest["demo_regime"],
        "causal": [(f"{model_name(spec.key)}: {spec.name}", spec.key) for spec in list_models("causal")],
        "created": manifest["created"],
    }


def _shown(value: object) -> str:
    """A caller's value, quoted for a refusal and cut short (an API client may send anything, of any size)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "…"


def _check_choice(what: str, value: str, valid: list[str]) -> str:
    if not isinstance(value, str) or value not in valid:
        raise ServiceError(f"Unknown {what} {_shown(value)}. Choose one of: {', '.join(valid)}.")
    return value


def _check_flag(what: str, value: bool) -> bool:
    """A yes/no input: only true or false, since ``bool("false")`` would silently mean yes."""
    if not isinstance(value, (bool, np.bool_)):
        raise ServiceError(f"{what} must be true or false, not {_shown(value)}.")
    return bool(value)


def _check_whole_number(what: str, value: int, low: int, high: int) -> int:
    """A count between ``low`` and ``high``; 12.0 from a slider is 12, but 2.5, "12", None or true are refused
    rather than rounded or cast (a cast would hide a caller's mistake)."""
    whole = isinstance(value, (int, np.integer)) or (
        isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer()
    )
    if isinstance(value, (bool, np.bool_)) or not whole or not low <= int(value) <= high:
        raise ServiceError(f"{what} must be a whole number from {low} to {high:,}, not {_shown(value)}.")
    return int(value)


def _check_text(value: str, *, empty: str, what: str, limit: int) -> str:
    """Non-empty text up to ``limit`` characters; anything that is not text is refused, not stringified."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ServiceError(empty)
    if not isinstance(value, str):
        raise ServiceError(f"The {what} must be text, not {_shown(value)}.")
    if len(value) > limit:
        raise ServiceError(f"The {what} has {len(value):,} characters; the limit is {limit:,}. Shorten it.")
    return value


def _check_task(task: str) -> str:
    return _check_choice("task", task, [t for _, t in catalogue()["tasks"]])


def _check_pair(source: str, target: str) -> None:
    """Two different encoders of the catalogue."""
    encoders = [k for _, k in catalogue()["encoders"]]
    _check_choice("client model", source, encoders)
    _check_choice("provider model", target, encoders)
    if source == target:
        raise ServiceError(
            "Client and provider use the same model here; pick two different models to see a map at work."
        )


# short names the page uses everywhere (figures, headlines, tables, export): the zoo's full names do not fit a
# heatmap's axis or a phone's width; the selectors show both
SHORT_NAMES = {
    "minilm": "MiniLM",
    "mpnet": "mpnet",
    "paraphrase_onnx": "MiniLM-L3 (ONNX)",
    "wordllama": "WordLlama",
    "potion": "potion",
    "smollm2": "SmolLM2",
    "gemma3": "Gemma 3",
}


def model_name(key: str) -> str:
    return SHORT_NAMES.get(key, get_spec(key).name)


@functools.cache
def examples(task: str, n: int = EXAMPLES_PER_TASK) -> list[str]:
    """Held-out test texts of ``task``, one per class in turn, so a presenter can pick a realistic query."""
    data = load_task(_check_task(task))
    picked: list[str] = []
    for k in range(len(data.test_texts)):
        label = int(data.test_labels[k])
        if label == len(picked) % len(data.classes) and 40 <= len(data.test_texts[k]) <= 600:
            picked.append(data.test_texts[k])
        if len(picked) == n:
            break
    return picked


@functools.cache
def _true_labels(task: str) -> dict[str, str]:
    data = load_task(task)
    pairs = zip(data.test_texts, data.test_labels, strict=True)
    return {text.strip(): data.classes[int(label)] for text, label in pairs}


def true_label(task: str, text: str) -> str | None:
    """The class a held-out test text of ``task`` is labelled with, or None for any other text (a typed query)."""
    return _true_labels(_check_task(task)).get(text.strip()) if isinstance(text, str) else None


# ---- convergence ---------------------------------------------------------------------------------------------


def similarity(dataset: str, metric: str) -> dict:
    """One precomputed N x N similarity matrix with display labels."""
    cat = catalogue()
    _check_choice("dataset", dataset, [d for _, d in cat["similarity_datasets"]])
    _check_choice("metric", metric, [m for _, m in cat["similarity_metrics"]])
    sim = artifacts.load_similarity(dataset)
    return {
        "keys": sim["keys"],
        "labels": [model_name(k) for k in sim["keys"]],
        "dataset_label": {d: label for label, d in cat["similarity_datasets"]}[dataset],
        "metric_label": METRIC_LABELS.get(metric, metric),
        "matrix": np.asarray(sim["matrices"][metric], dtype=float),
        "n_texts": sim["n_texts"],
    }


def _ridge_rows(task: str, regime: str) -> list[dict]:
    return [r for r in artifacts.load_results() if r["task"] == task and r["regime"] == regime and r["map"] == "ridge"]


def map_quality_matrix(task: str, regime: str, measure: str) -> dict:
    """Per ordered pair (row: client, column: provider), one fit-quality measure of the ridge map; NaN on the
    diagonal, where no map is fitted."""
    cat = catalogue()
    _check_task(task)
    _check_choice("regime", regime, [r for _, r in cat["regimes"]])
    _check_choice("measure", measure, list(FIT_MEASURES))
    keys = [k for _, k in cat["encoders"]]
    matrix = np.full((len(keys), len(keys)), np.nan)
    for row in _ridge_rows(task, regime):
        value = row["mapped_acc"] / row["baseline_acc"] if measure == "retained" else row[measure]
        matrix[keys.index(row["source"]), keys.index(row["target"])] = value
    return {"keys": keys, "labels": [model_name(k) for k in keys], "matrix": matrix}


# ---- results -------------------------------------------------------------------------------------------------

RESULT_COLUMNS = {
    "source": "client model",
    "target": "provider model",
    "regime": "map fitted on",
    "map": "map",
    "source_acc": "client native acc (%)",
    "baseline_acc": "provider native acc (%)",
    "mapped_acc": "mapped acc (%)",
    "probe_distilled_acc": "client probe, provider's labels (%)",
    "probe_true_acc": "client probe, true labels (%)",
    "shuffled_acc": "shuffled-pair map (%)",
    "p_vs_native": "McNemar p (mapped vs native)",
    "auroc_native": "OOD AUROC native",
    "auroc_mapped": "OOD AUROC mapped",
    "r2": "map R²",
    "top1": "top-1 retrieval (%)",
}
BASELINE_COLUMNS = ("probe_distilled_acc", "probe_true_acc", "shuffled_acc")
REGIME_SHORT = {
    "task": "task texts",
    "public": "public only",
    "public+64": "public + 64 task texts",
    "public+128": "public + 128 task texts",
}
PERCENT_COLUMNS = ("source_acc", "baseline_acc", "mapped_acc", "top1", *BASELINE_COLUMNS)


def results_table(task: str, regime: str | None = None) -> pd.DataFrame:
    """The precomputed rows of one task (optionally one regime) as people read them: display names, accuracies
    in percent, two decimals, p-values with two significant digits (numbers stay numbers, so columns sort)."""
    _check_task(task)
    if regime is not None:
        _check_choice("regime", regime, [r for _, r in catalogue()["regimes"]])
    # the baselines on the same texts (seed 0 of seeds.json; empty where the seeds do not cover the pair)
    baselines = {
        (r["source"], r["target"], r["regime"]): r
        for r in artifacts.load_seed_results()
        if r["task"] == task and r["seed"] == 0
    }
    rows = []
    for r in artifacts.load_results():
        if r["task"] == task and regime in (None, r["regime"]):
            same = baselines.get((r["source"], r["target"], r["regime"])) if r["map"] == "ridge" else None
            rows.append({**{k: (same or {}).get(k) for k in BASELINE_COLUMNS}, **r})
    frame = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    for column in PERCENT_COLUMNS:
        frame[column] = (100 * frame[column]).round(1)
    frame = frame.round({c: 2 for c in RESULT_COLUMNS if c not in PERCENT_COLUMNS + ("p_vs_native",)})
    frame["p_vs_native"] = frame["p_vs_native"].map(lambda p: float(f"{p:.2g}"))  # two significant digits, sortable
    frame["regime"] = frame["regime"].map(lambda r: REGIME_SHORT.get(r, r))
    frame["source"] = frame["source"].map(model_name)
    frame["target"] = frame["target"].map(model_name)
    return frame.rename(columns=RESULT_COLUMNS)


def pair_summary(task: str, source: str, target: str) -> dict:
    """The numbers the guided story quotes for one pair: how alike the two models are on public text (linear CKA,
    beside the range over all pairs) and what the demo regime's map keeps of the provider's accuracy."""
    _check_task(task)
    _check_pair(source, target)
    sim = similarity("public", "cka")
    i, j = sim["keys"].index(source), sim["keys"].index(target)
    off_diagonal = sim["matrix"][~np.eye(len(sim["keys"]), dtype=bool)]
    regime = catalogue()["demo_regime"]
    row = next(r for r in _ridge_rows(task, regime) if (r["source"], r["target"]) == (source, target))
    return {
        "cka": float(sim["matrix"][i, j]),
        "cka_min": float(off_diagonal.min()),
        "cka_max": float(off_diagonal.max()),
        "n_texts": sim["n_texts"],
        "regime": regime,
        "regime_label": artifacts.load_manifest()["regime_descriptions"][regime],
        "task_title": {t: title for title, t in catalogue()["tasks"]}[task],
        "source_acc": row["source_acc"],
        "provider_acc": row["baseline_acc"],
        "mapped_acc": row["mapped_acc"],
        "retained": row["mapped_acc"] / row["baseline_acc"],
        "p_vs_native": row["p_vs_native"],
    }


# ---- out-of-distribution detection ---------------------------------------------------------------------------


def ood_comparison(task: str, source: str, target: str) -> dict:
    """Energy scores in- and out-of-distribution, native (provider model) vs mapped (client model through the
    demo regime's map), with the precomputed AUROC and FPR@95TPR."""
    _check_task(task)
    _check_pair(source, target)
    regime = catalogue()["demo_regime"]
    row = next(r for r in _ridge_rows(task, regime) if r["source"] == source and r["target"] == target)
    task_titles = {t: title for title, t in catalogue()["tasks"]}
    ood_task = TASKS[task].ood_name
    return {
        "scores": artifacts.load_ood_scores(task, source, target),
        "metrics": {
            "native": {"auroc": row["auroc_native"], "fpr95": row["fpr95_native"]},
            "mapped": {"auroc": row["auroc_mapped"], "fpr95": row["fpr95_mapped"]},
        },
        "in_name": task_titles.get(task, task),
        "out_name": task_titles.get(ood_task, ood_task),
        "regime": regime,
    }


# ---- secure inference ----------------------------------------------------------------------------------------

PROVIDER_URL_ENV = "SECUREALIGN_PROVIDER_URL"
# encrypted logits stay within ~1e-5 of plaintext; a larger gap means the provider's model is not this pair's
ENCRYPTED_TOLERANCE = 1e-3


@functools.lru_cache(maxsize=1)
def _provider() -> Provider | RemoteProvider:
    """In-process by default; with ``$SECUREALIGN_PROVIDER_URL`` the app's queries go over HTTP to a provider on
    another machine (``python -m securealign serve --assets``), which then holds the heads and maps. Made on first
    use, not at import: importing the service does no work."""
    url = os.environ.get(PROVIDER_URL_ENV)
    return RemoteProvider(url) if url else Provider()


_registered: set[str] = set()
_register_lock = threading.Lock()


def _served_model(task: str, source: str, target: str) -> str:
    """The provider's model for this pair: registered here once (head for paper mode, map + head pre-composed for
    sealed mode), or, with a remote provider, checked to be served there."""
    model_id = artifacts.served_model_id(task, source, target)
    with _register_lock:
        if model_id in _registered:
            return model_id
        if isinstance(_provider(), RemoteProvider):
            try:
                _provider().describe(model_id)
            except ConnectionError as exc:
                raise ServiceError(f"The provider at {_provider().endpoint} cannot be reached ({exc}).") from exc
            except UnknownModelError as exc:
                raise ServiceError(
                    f"The provider at {_provider().endpoint} does not serve {model_id}; start it with "
                    "`python -m securealign serve --assets`."
                ) from exc
        else:
            _provider().register(model_id, artifacts.load_head(task, target), artifacts.load_map(task, source, target))
        _registered.add(model_id)
    return model_id


_spare_keys: queue.Queue[ClientSession] = queue.Queue(maxsize=1)


def _make_spare_keys() -> None:
    with contextlib.suppress(queue.Full):
        _spare_keys.put_nowait(ClientSession())


def new_client() -> ClientSession:
    """Fresh CKKS keys for one browser or API session; the secret key never leaves the returned object.

    Key generation takes a few hundred ms, so one set is made ahead, in the background, and handed to the next
    new session (each set goes to exactly one session); the next spare is then made in the background."""
    try:
        client = _spare_keys.get_nowait()
    except queue.Empty:
        return ClientSession()
    threading.Thread(target=_make_spare_keys, daemon=True, name="spare-keys").start()
    return client


def close_client(client: ClientSession | None) -> None:
    """Drop the provider-side session (its public Galois keys) when a browser session ends."""
    if client is not None:
        for session_id in client.sessions.values():
            # the page is already gone: a provider that expired the session or went away changes nothing
            with contextlib.suppress(ConnectionError, ProtocolError):
                _provider().close_session(session_id)


@contextlib.contextmanager
def _loading(what: str) -> Iterator[None]:
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
    return _check_text(
        text.strip() if isinstance(text, str) else text,
        what="query",
        limit=MAX_QUERY_CHARS,
        empty="The query is empty: type a sentence or pick an example.",
    )


def _prediction(logits: np.ndarray, classes: list[str]) -> dict:
    probs = softmax(np.asarray(logits, dtype=np.float64))
    return {
        "label": classes[int(np.argmax(logits))],
        "logits": [float(v) for v in logits],
        "probabilities": {c: float(p) for c, p in zip(classes, probs, strict=True)},
    }


_model_locks: dict[str, threading.Lock] = {}
_loaded: set[str] = set()


def _load(key: str, progress: ProgressFn | None, fraction: float, role: str) -> None:
    """Load an encoder once per process; a query arriving while the warm-up loads it waits instead of loading a
    second copy."""
    with _register_lock:
        lock = _model_locks.setdefault(key, threading.Lock())
    with lock:
        if key in _loaded:
            return
        _report(progress, fraction, f"loading the {role} model {model_name(key)} (first use only)")
        with _loading(f"The model {model_name(key)}"):
            encoder_process.current().load(key)
        _loaded.add(key)


def _embed_one(
    key: str, text: str, progress: ProgressFn | None, fraction: float, role: str
) -> tuple[np.ndarray, float]:
    _load(key, progress, fraction, role)
    _report(progress, fraction + 0.1, f"embedding the query with {model_name(key)}")
    start = time.perf_counter()
    z = encoder_process.current().embed(key, text)  # user queries are never written to the embedding cache
    return z.astype(np.float64), (time.perf_counter() - start) * 1e3


def warm_up(task: str, source: str, target: str) -> None:
    """Load the default pair's encoders, head, map and served model, so that the first query after the page is
    served is as quick as later ones (the app runs this in the background right after it starts)."""
    _check_task(task)
    _check_pair(source, target)
    # the encoders load in the order a first query needs them (the provider's own model only serves the reference,
    # after the answer), on a core of their own when the app runs them in a child process (encoder_process); the
    # rest of a first query (served model, a spare set of keys, labels) waits for the client's encoder, so that it
    # is made while the page is in the browser's hands rather than while it is being built
    encoder_process.current().warm([source, target])
    _load(source, None, 0.0, "client")
    _served_model(task, source, target)
    _make_spare_keys()
    _true_labels(task)


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
    _check_task(task)
    _check_pair(source, target)
    _check_choice("mode", mode, list(MODES))
    encrypted = _check_flag("encrypt", encrypted)
    _check_choice("answer", answer, list(ANSWER_REVEALS))
    wall = time.perf_counter()
    head, affine = artifacts.load_head(task, target), artifacts.load_map(task, source, target)
    z_src, embed_ms = _embed_one(source, text, progress, 0.05, "client")
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
            _report(progress, 0.5, "generating this session's CKKS keys")
            start = time.perf_counter()
            client = new_client()
            result["timings_ms"]["key generation (once)"] = (time.perf_counter() - start) * 1e3
        _report(progress, 0.6, "running the encrypted protocol")
        model_id = _served_model(task, source, target)
        try:
            scores, trace = run_encrypted_query(
                client,
                _provider(),
                model_id,
                z_src,
                mode,
                affine_map=affine if mode == "paper" else None,
                answer=answer,
            )
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
    _report(progress, 1.0, "done")
    return result, client


def add_reference(result: dict, progress: ProgressFn | None = None) -> dict:
    """``result`` with the provider's own model applied to the raw text: the reference a real provider never
    computes (it never sees the text), so it runs after the client's answer is shown and is timed apart."""
    head = artifacts.load_head(result["task"], result["target"])
    z_tgt, embed_ms = _embed_one(result["target"], result["query"], progress, 0.5, "provider")
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


# ---- secure fitting of the map ------------------------------------------------------------------------------


def _task_accuracy(
    task: str, source: str, target: str, affine: alignment.AffineMap, progress: ProgressFn | None
) -> dict:
    """What the fitted map is for: the provider's head on its own test embeddings vs on the client's through the
    map, on the task's full test split, beside the precomputed public-only map (fitted on the whole corpus)."""
    data, head = load_task(task), artifacts.load_head(task, target)
    _report(progress, 0.9, f"classifying {len(data.test_texts)} held-out {task} texts through the map")
    z_b = embed(source, data.test_texts, progress=False)
    # the provider's native accuracy on this same split is already in the assets: no need to embed it again
    public = next(r for r in _ridge_rows(task, "public") if (r["source"], r["target"]) == (source, target))
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
    _check_pair(source, target)
    _check_choice("mode", mode, list(MODES))
    low = min_rows(mode, get_spec(source).dim + 1, get_spec(target).dim)
    return [low, *(n for n in FIT_TEXTS if n > low)]


def secure_fit_estimate(n_texts: int, task: str) -> dict:
    """What a secure fit of ``n_texts`` texts will cost, to show before it starts: seconds of encrypted work on two
    free cores, and how many texts each model embeds on top (cached after the first time a model embeds them)."""
    n_texts = _check_whole_number("The number of public texts", n_texts, 1, max(FIT_TEXTS))
    return {
        "encrypted_s": 2.0 + FIT_SECONDS_PER_TEXT * n_texts,
        "public_texts": n_texts + FIT_HELD_OUT,
        "test_texts": len(load_task(_check_task(task)).test_texts),
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
    _check_pair(source, target)
    if task is not None:  # the task is optional here: without one, the map's quality is measured on public text only
        _check_task(task)
    _check_choice("mode", mode, list(MODES))
    fewest = secure_fit_choices(source, target, mode)[0]
    n_texts = _check_whole_number(
        f"The number of public texts for a {mode} fit of this pair", n_texts, fewest, max(FIT_TEXTS)
    )
    wall = time.perf_counter()
    texts = load_public_corpus(n_texts + FIT_HELD_OUT)
    fit_texts = texts[:n_texts]
    embeddings = {}
    for fraction, (role, key) in ((0.05, ("client", source)), (0.15, ("provider", target))):
        _report(progress, fraction, f"the {role} embeds {len(texts)} public texts with {model_name(key)}")
        with _loading(f"The model {model_name(key)}"):
            embeddings[role] = embed(key, texts, progress=False).astype(np.float64)
    z_b, z_a = embeddings["client"], embeddings["provider"]
    alpha = alignment.absolute_alpha(z_b[:n_texts], FIT_LAMBDA)
    provider = Provider()  # a fit of its own: nothing from the demo's served models is involved
    provider.add_public_set("public", fit_texts, z_a[:n_texts])
    _report(progress, 0.3, f"secure fit in {mode} mode: encrypting and multiplying {n_texts} rows")
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
    _report(progress, 0.85, f"measuring both maps on {FIT_HELD_OUT} held-out public texts")
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
        "task_accuracy": None if task is None else _task_accuracy(task, source, target, secure_map, progress),
    }
    result["wall_ms"] = (time.perf_counter() - wall) * 1e3  # the whole wait: embedding, fit, measuring the map
    return result


# ---- generation ----------------------------------------------------------------------------------------------


def generate(
    prompt: str,
    source: str,
    target: str,
    encrypted: bool = False,
    max_new_tokens: int = 16,
    progress: ProgressFn | None = None,
) -> Iterator[dict]:
    """Native source, native target and mapped continuations, streamed as snapshots (see
    :func:`securealign.generation.stream_compare`); models and the map load first, with progress."""
    prompt = _check_text(
        prompt, what="prompt", limit=MAX_PROMPT_CHARS, empty="The prompt is empty: type the beginning of a sentence."
    )
    encrypted = _check_flag("encrypt the vocabulary head", encrypted)
    max_new_tokens = _check_whole_number("The number of new tokens", max_new_tokens, 1, MAX_APP_NEW_TOKENS)
    causal = [k for _, k in catalogue()["causal"]]
    _check_choice("source language model", source, causal)
    _check_choice("target language model", target, causal)
    if source == target:
        raise ServiceError("Source and target are the same model; pick two different language models.")
    from securealign.generation import load_pair, stream_compare
    from securealign.generation.mapping import fitted_map_path

    if fitted_map_path(source, target) is None:
        raise ServiceError(
            f"No map from {model_name(source)} to {model_name(target)} has been fitted yet, and fitting one takes "
            "about an hour on 2 CPU cores. Pick a precomputed pair (Gemma 3 and SmolLM2, either way round), or "
            f'fit it once with `python -m securealign generate --source {source} --target {target} "..."`.'
        )
    _report(progress, 0.1, f"loading {model_name(source)} and {model_name(target)} and their map (first use only)")
    with _loading(f"{model_name(source)} or {model_name(target)}"):
        pair = load_pair(source, target)
        if encrypted:
            _report(progress, 0.6, "compiling the provider's encrypted vocabulary head (first use only)")
            pair.encrypted_head  # noqa: B018 - a cached property: build it now, under the progress bar
    _report(progress, 1.0, "generating")
    yield from stream_compare(prompt, source, target, encrypted, max_new_tokens)


# seconds per token of the encrypted vocabulary head into each target, measured on 2 cores (docs/generation.md)
ENCRYPTED_SECONDS_PER_TOKEN = {"smollm2": 0.75, "gemma3": 2.6}


def encrypted_seconds_per_token(target: str) -> float | None:
    """What one encrypted token into ``target`` costs, to estimate a generation before it starts."""
    _check_choice("target language model", target, [k for _, k in catalogue()["causal"]])
    return ENCRYPTED_SECONDS_PER_TOKEN.get(target)


# ---- export --------------------------------------------------------------------------------------------------


def export_html(html: str, stem: str = "securealign-comparison") -> Path:
    """Write a self-contained report page to a fresh temporary file (one per export, so sessions never clash)."""
    folder = Path(tempfile.mkdtemp(prefix="securealign-export-"))
    path = folder / f"{stem}.html"
    path.write_text(html, encoding="utf-8")
    return path
