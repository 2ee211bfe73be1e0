"""The provider as an HTTP service (FastAPI + uvicorn): ``python -m securealign serve``.

Bodies are refused by size before they are read (the wire format's hard limits), and only after the session, model
or fit they are for is known to exist; a body that makes no progress for ``body_timeout`` seconds is answered 408
and its connection closed. CPU-bound evaluation runs in the thread pool so concurrent clients are served in
parallel, and every error (a ``ProtocolError``, an unknown route, a malformed parameter, a crash) is a JSON
``{"error", "detail"}`` with the error's type name, which ``RemoteProvider`` raises again on the client side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from securealign.crypto import flooding, wire
from securealign.crypto.errors import LimitExceededError, ParameterError, ProtocolError, RequestTimeoutError
from securealign.crypto.provider import Provider

BODY_TIMEOUT_S = 10.0


def _error(status: int, error: str, detail: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


async def _read_body(request: Request, kind: wire.MessageType, timeout: float) -> bytes:
    """The body, refused beyond the type's size limit, or when no bytes arrive for ``timeout`` seconds."""
    limit = wire.max_message_bytes(kind)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise LimitExceededError(f"{kind.name} body of {int(declared):,} bytes exceeds the limit of {limit:,}")
    chunks: list[bytes] = []
    total, stream = 0, request.stream()
    while True:
        try:
            chunk = await asyncio.wait_for(anext(stream), timeout)
        except StopAsyncIteration:
            return b"".join(chunks)
        except TimeoutError:
            raise RequestTimeoutError(f"no body bytes arrived for {timeout:g} s; connection closed") from None
        total += len(chunk)
        if total > limit:
            raise LimitExceededError(f"{kind.name} body exceeds the limit of {limit:,} bytes")
        chunks.append(chunk)


def create_app(provider: Provider, body_timeout: float = BODY_TIMEOUT_S) -> FastAPI:
    """The HTTP face of one in-process ``Provider``."""
    app = FastAPI(title="securealign encrypted-inference provider")

    @app.exception_handler(ProtocolError)
    async def _refused(_: Request, exc: ProtocolError) -> JSONResponse:
        # a refused request may still be sending its body: close the connection rather than read the rest
        return _error(exc.status, type(exc).__name__, str(exc), connection="close")

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:  # unknown route (404), wrong method (405)
        return _error(exc.status_code, ProtocolError.__name__, f"HTTP {exc.status_code}: {exc.detail}")

    @app.exception_handler(RequestValidationError)
    async def _malformed(_: Request, exc: RequestValidationError) -> JSONResponse:  # e.g. width=abc: a 400
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return _error(ParameterError.status, ParameterError.__name__, problems)

    @app.exception_handler(Exception)
    async def _crashed(_: Request, exc: Exception) -> JSONResponse:  # logged by the server, never sent
        return _error(500, "InternalError", f"the provider failed ({type(exc).__name__}); see its log")

    async def body(request: Request, kind: wire.MessageType) -> bytes:
        return await _read_body(request, kind, body_timeout)

    @app.get("/health")
    def health() -> dict:
        return {
            "status": "ok",
            "models": provider.models(),
            "sessions": len(provider.sessions),
            "session_bytes": provider.sessions.memory_bytes,
        }

    @app.get("/models")
    def models() -> dict:
        return {"models": provider.models()}

    @app.get("/describe")
    def describe(model: str) -> dict:
        return provider.describe(model)

    @app.post("/sessions")
    async def open_session(request: Request) -> dict:
        context = await body(request, wire.MessageType.CONTEXT)
        return {
            "session_id": await run_in_threadpool(provider.open_session, context),
            "expires_in_s": provider.sessions.ttl,
        }

    @app.delete("/sessions")
    def close_session(session: str) -> dict:
        provider.close_session(session)
        return {"closed": session}

    @app.post("/evaluate")
    async def evaluate(request: Request, session: str, model: str) -> Response:
        provider.sessions.get(session)  # an unknown session or model is refused before the body is read
        provider.describe(model)
        query = await body(request, wire.MessageType.QUERY)
        result = await run_in_threadpool(provider.evaluate, session, model, query)
        return Response(result, media_type="application/octet-stream")

    # secure fitting of the map: paper mode streams rows in and a product out, sealed mode the other way round
    @app.get("/public-sets")
    def public_sets() -> dict:
        return provider.public_sets()

    @app.post("/fits")
    def open_fit(session: str, public_set: str, mode: str, width: int, model: str | None = None) -> dict:
        return provider.open_fit(session, public_set, mode, width, model)

    @app.delete("/fits/{fit_id}")
    def close_fit(fit_id: str) -> dict:
        provider.close_fit(fit_id)
        return {"closed": fit_id}

    @app.post("/fits/{fit_id}/rows")
    async def add_fit_rows(fit_id: str, request: Request) -> dict:
        provider.fits.get(fit_id, "paper")  # an unknown fit is refused before its body
        batch = await body(request, wire.MessageType.MATRIX)
        return {"rows_received": await run_in_threadpool(provider.add_fit_rows, fit_id, batch)}

    @app.get("/fits/{fit_id}/product")
    async def fit_product(fit_id: str) -> Response:
        return Response(await run_in_threadpool(provider.fit_product, fit_id), media_type="application/octet-stream")

    @app.get("/fits/{fit_id}/rows")
    async def fit_rows(fit_id: str, start: int) -> Response:
        batch = await run_in_threadpool(provider.fit_rows, fit_id, start)
        return Response(batch, media_type="application/octet-stream")

    @app.post("/fits/{fit_id}/product")
    async def finish_fit(fit_id: str, request: Request) -> dict:
        provider.fits.get(fit_id, "sealed")  # an unknown fit is refused before its body
        product = await body(request, wire.MessageType.MATRIX)
        return await run_in_threadpool(provider.finish_fit, fit_id, product)

    return app


@contextlib.contextmanager
def running_server(
    provider: Provider,
    host: str = "127.0.0.1",
    port: int = 0,
    startup_timeout: float = 20.0,
    body_timeout: float = BODY_TIMEOUT_S,
) -> Iterator[str]:
    """Serve ``provider`` from a background thread (port 0: a free one); yields the base URL, stops on exit."""
    config = uvicorn.Config(
        create_app(provider, body_timeout), host=host, port=port, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="securealign-provider", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"provider server did not start on {host}:{port}")
        time.sleep(0.02)
    bound_port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def load_model_file(provider: Provider, model_id: str, path: Path) -> None:
    """Register a model from an .npz with ``V``, ``c`` (paper mode) and optionally ``W``, ``b`` (sealed mode too)."""
    with np.load(path, allow_pickle=False) as data:
        classes = [str(c) for c in data["classes"]] if "classes" in data else None
        if "W" in data:
            provider.register_sealed(model_id, data["W"], data["b"], data["V"], data["c"], classes)
        else:
            provider.register_head(model_id, data["V"], data["c"], classes)


def main(argv: list[str]) -> int:
    """`python -m securealign serve`: run the encrypted-inference provider (loopback unless --host says otherwise)."""
    parser = argparse.ArgumentParser(prog="python -m securealign serve", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="ID=FILE.npz",
        help="serve a model from an .npz holding V, c (and W, b for sealed mode); repeatable",
    )
    parser.add_argument(
        "--demo",
        action="append",
        default=[],
        metavar="TASK:SOURCE:TARGET",
        help="serve a head fitted on real TARGET embeddings of TASK with a task-supervised map from "
        "SOURCE (e.g. bbc_news:minilm:mpnet); repeatable",
    )
    parser.add_argument(
        "--assets",
        action="store_true",
        help="serve every head and demo-regime map in assets/ under the app's model ids, so the app "
        "can use this provider (SECUREALIGN_PROVIDER_URL)",
    )
    parser.add_argument(
        "--public-set",
        action="append",
        default=[],
        metavar="NAME=MODEL[:N]",
        help="offer secure fits on the first N public-corpus texts (default 1000) embedded with the "
        "zoo model MODEL (e.g. public=minilm:1000); repeatable",
    )
    parser.add_argument(
        "--label-only",
        action="append",
        default=[],
        metavar="ID|all",
        help="answer this model's queries with labels only, never logits (see docs/protocol.md, "
        "answer kinds); 'all' for every model; repeatable",
    )
    parser.add_argument(
        "--circuit-private",
        action="append",
        default=[],
        metavar="ID|all",
        help="answer this model's queries only with circuit-private (re-randomised, noise-flooded) answers (see "
        "docs/protocol.md, circuit privacy); 'all' for every model; repeatable",
    )
    parser.add_argument(
        "--flood-security",
        type=int,
        default=flooding.DEFAULT_POLICY.s,
        metavar="S",
        help=f"statistical security parameter s of the flood (default {flooding.DEFAULT_POLICY.s})",
    )
    parser.add_argument(
        "--flood-answers-per-key",
        type=int,
        default=flooding.DEFAULT_POLICY.tau,
        metavar="TAU",
        help=f"circuit-private answers one key may decrypt; the flood grows with sqrt(TAU) "
        f"(default {flooding.DEFAULT_POLICY.tau})",
    )
    parser.add_argument("--session-ttl", type=float, default=900.0, help="seconds a session lives after last use")
    parser.add_argument("--max-sessions", type=int, default=64)
    parser.add_argument(
        "--max-session-mb",
        type=int,
        default=512,
        help="memory bound for the sessions' loaded Galois keys, as they occupy it",
    )
    parser.add_argument(
        "--max-queries-per-session",
        type=_budget,
        default=2000,
        metavar="N",
        help="queries one session may make (0: unbounded); default 2000",
    )
    parser.add_argument(
        "--max-queries-per-key",
        type=_budget,
        default=10000,
        metavar="N",
        help="queries all sessions of one key may make (0: unbounded); default 10000",
    )
    parser.add_argument(
        "--body-timeout",
        type=float,
        default=BODY_TIMEOUT_S,
        metavar="S",
        help=f"seconds a request body may make no progress before a 408 (default {BODY_TIMEOUT_S:g})",
    )
    parser.add_argument("--max-fits", type=int, default=4, help="secure fits at once (default 4)")
    parser.add_argument("--max-fits-per-key", type=int, default=1, help="secure fits one key may hold (default 1)")
    parser.add_argument(
        "--fit-idle-ttl",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds a secure fit lives without a step (default 60)",
    )
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # BLAS threads busy-wait on a shared machine; the server parallelises across requests
    try:
        policy = flooding.FloodPolicy(args.flood_security, args.flood_answers_per_key)
    except ProtocolError as exc:
        parser.error(str(exc))
    provider = Provider(
        circuit_privacy=policy,
        session_ttl=args.session_ttl,
        max_sessions=args.max_sessions,
        max_session_bytes=args.max_session_mb << 20,
        max_fits=args.max_fits,
        max_fits_per_key=args.max_fits_per_key,
        fit_idle_ttl=args.fit_idle_ttl,
        max_queries_per_session=args.max_queries_per_session,
        max_queries_per_key=args.max_queries_per_key,
    )

    def new_id(model_id: str, option: str) -> str:
        """Two options naming one model id would silently serve only the one registered last."""
        if model_id in provider.models():
            parser.error(
                f"{option} would serve model id {model_id!r} a second time (another --model, --demo or "
                "--assets already serves it)"
            )
        return model_id

    for spec in args.model:
        model_id, sep, path = spec.partition("=")
        if not sep or not Path(path).is_file():
            parser.error(f"--model expects ID=FILE.npz with an existing file, got {spec!r}")
        load_model_file(provider, new_id(model_id, "--model"), Path(path))
    if args.assets:
        from securealign.experiments.artifacts import demo_models

        for model_id, head, affine in demo_models():
            provider.register(new_id(model_id, "--assets"), head, affine)
    for spec in args.demo:
        parts = spec.split(":")
        if len(parts) != 3:
            parser.error(f"--demo expects TASK:SOURCE:TARGET, got {spec!r}")
        from securealign.experiments.artifacts import served_model_id
        from securealign.experiments.task_models import fit_task_models

        model_id = new_id(served_model_id(*parts), "--demo")  # checked before the minutes of fitting
        m = fit_task_models(*parts)
        provider.register_sealed(model_id, m.W, m.b, m.V, m.c, m.classes)
    for spec in args.public_set:
        name, sep, rest = spec.partition("=")
        key, _, n = rest.partition(":")
        if not sep or not key or (n and not n.isdigit()):
            parser.error(f"--public-set expects NAME=MODEL[:N], got {spec!r}")
        from securealign.datasets import load_public_corpus
        from securealign.models.embeddings import embed

        texts = load_public_corpus(int(n or 1000))
        provider.add_public_set(name, texts, embed(key, texts))
    if args.label_only:
        try:
            provider.require_labels(None if "all" in args.label_only else args.label_only)
        except ProtocolError as exc:
            parser.error(f"--label-only: {exc}")
    if args.circuit_private:
        try:
            provider.require_private(None if "all" in args.circuit_private else args.circuit_private)
        except ProtocolError as exc:
            parser.error(f"--circuit-private: {exc}")
    if not provider.models():
        print("warning: no models registered (use --assets, --model ID=FILE.npz or --demo TASK:SOURCE:TARGET)")
    print(f"public sets for secure fitting: {list(provider.public_sets()) or 'none'}")
    print(f"serving {provider.models()} on http://{args.host}:{args.port}", flush=True)
    uvicorn.run(create_app(provider, args.body_timeout), host=args.host, port=args.port, log_level="info")
    return 0


def _budget(text: str) -> int | None:
    """A query budget from the command line: a non-negative count, 0 meaning unbounded."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"a query budget is a count >= 0, got {value}")
    return value or None
