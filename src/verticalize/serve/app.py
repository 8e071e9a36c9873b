"""The HTTP layer: an OpenAI-compatible FastAPI app in front of any `Engine`.

The routes here are thin: auth, parsing the request, the error shape and SSE framing; what a request does (limits,
retrieval, generation, metrics, feedback, the response body) is the serving service, `serve.service.Gateway`. The
engine only generates. `BodyLimit` refuses an oversized body (413) before anything reads it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Literal, Optional

from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from verticalize.serve.protocol import ChatCompletionRequest, CompletionRequest, error_body
from verticalize.serve.service import CHAT, MODEL_NAME, TEXT, Answering, APIError, Gateway, GatewaySettings

__all__ = ["APIError", "BodyLimit", "FeedbackRequest", "Gateway", "GatewaySettings", "MODEL_NAME", "create_app",
           "load_training_questions"]


class BodyTooLarge(HTTPException):
    """A body that grew over the limit while it was read (chunked, no Content-Length): 413 in OpenAI's shape."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body is over this server's limit of {limit} bytes",
                         headers={"connection": "close"})  # the rest of the body is not read


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 before any work. A Content-Length over the limit
    is answered at once, without reading the body; a body without one (chunked) is counted as it is read and
    refused the moment it passes the limit."""

    def __init__(self, app: Any, max_bytes: int, on_refuse: Callable[[], None] | None = None):
        self.app, self.max_bytes, self.on_refuse = app, max_bytes, on_refuse

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or not self.max_bytes:
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            if self.on_refuse:
                self.on_refuse()
            response = JSONResponse(_too_large_body(self.max_bytes), status_code=413, headers={"connection": "close"})
            await response(scope, receive, send)
            return
        received = 0

        async def limited() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)  # FastAPI re-raises an HTTPException from body reading
            return message

        await self.app(scope, limited, send)


def _too_large_body(limit: int) -> dict[str, Any]:
    return error_body(f"request body is over this server's limit of {limit} bytes", "invalid_request_error",
                      "request_too_large")


class FeedbackRequest(BaseModel):
    response_id: str = Field(min_length=1, max_length=128)
    rating: int = Field(ge=-1, le=5, description="-1 bad, 0 neutral, 1..5 good")
    correction: str | None = Field(None, max_length=20000)
    comment: str | None = Field(None, max_length=5000)


class ReviewRequest(BaseModel):
    reviewer: str | None = Field(None, max_length=100, description="who reviewed (default: the key's fingerprint)")
    note: str | None = Field(None, max_length=5000)
    correction: str | None = Field(None, max_length=20000, description="the reviewer's edit of the corrected "
                                                                       "answer (what becomes seed data)")


class ReloadRequest(BaseModel):
    run: str | None = Field(None, max_length=4096, description="a version of the served run (default: the newest)")


def create_app(gateway: Gateway) -> FastAPI:
    app = FastAPI(title="verticalize gateway", version="1")
    app.state.gateway = gateway
    app.add_middleware(BodyLimit, max_bytes=gateway.settings.max_body_bytes,
                       on_refuse=lambda: gateway.metrics.errors.labels(type="request_too_large").inc())
    _add_error_handlers(app, gateway)
    _add_status_routes(app, gateway)
    _add_api_routes(app, gateway)
    return app


def _add_error_handlers(app: FastAPI, g: Gateway) -> None:
    """Every error in OpenAI's shape, counted by type."""
    @app.exception_handler(APIError)
    async def _api_error(_: Request, e: APIError) -> JSONResponse:
        g.metrics.errors.labels(type=e.code or e.type).inc()
        return JSONResponse(error_body(e.message, e.type, e.code, e.param), status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", [])[1:]) or None
        g.metrics.errors.labels(type="invalid_request").inc()
        return JSONResponse(error_body(f"{param or 'request'}: {first.get('msg', 'invalid request')}",
                                       "invalid_request_error", "invalid_request", param), status_code=400)

    @app.exception_handler(HTTPException)
    async def _http_error(_: Request, e: HTTPException) -> JSONResponse:
        """Starlette's own errors (404 no such route, 405, a body over the limit) in the same shape."""
        code = "request_too_large" if e.status_code == 413 else {404: "not_found", 405: "method_not_allowed"}.get(
            e.status_code, "http_error")
        g.metrics.errors.labels(type=code).inc()
        type_ = "server_error" if e.status_code >= 500 else "invalid_request_error"
        return JSONResponse(error_body(str(e.detail), type_, code), status_code=e.status_code,
                            headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(_: Request, e: Exception) -> JSONResponse:
        g.metrics.errors.labels(type=type(e).__name__).inc()
        return JSONResponse(error_body(f"internal error: {type(e).__name__}", "server_error", "internal"),
                            status_code=500)


def _add_status_routes(app: FastAPI, g: Gateway) -> None:
    """/health (always open: liveness), /ready and /metrics (behind the key when serve.protect_metrics is on).
    /ready names the served models only to a caller with the key (or when no key is set)."""
    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready(request: Request) -> JSONResponse:
        g.check_status_auth(request)
        ok = g.ready
        body: dict[str, Any] = {"ready": ok}
        if g.authorized(request):
            body["models"] = g.engine.model_names()
            form = getattr(getattr(g.engine, "current", g.engine), "base_form", None)
            if form is not None:  # e.g. a QLoRA run answered from an unquantised base: said, not hidden
                body["base"] = form.as_dict()
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics(request: Request) -> PlainTextResponse:
        g.check_status_auth(request)
        return PlainTextResponse(generate_latest(g.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _add_api_routes(app: FastAPI, g: Gateway) -> None:
    """The OpenAI-compatible /v1 routes, and /v1/feedback. The completion routes check the key and the list
    lengths (dependencies) before the body is validated item by item."""
    async def authorized(request: Request) -> None:
        g.check_auth(request)

    async def counted(request: Request) -> None:
        try:
            raw = await request.json()  # already parsed by FastAPI (Starlette caches it)
        except ValueError:
            return  # FastAPI's JSON error answers it
        if isinstance(raw, dict):
            g.check_counts(raw.get("messages"), raw.get("stop"))

    guarded = [Depends(authorized), Depends(counted)]

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        g.check_auth(request)
        return g.model_list()

    @app.post("/v1/chat/completions", dependencies=guarded)
    async def chat(body: ChatCompletionRequest) -> Any:
        messages = [{"role": m.role if m.role != "developer" else "system", "content": m.text()}
                    for m in body.messages]
        query = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        return await _respond(g, await g.prepare(body, CHAT, messages=messages, query=query), body.stream)

    @app.post("/v1/completions", dependencies=guarded)
    async def completions(body: CompletionRequest) -> Any:
        answering = await g.prepare(body, TEXT, prompt=body.prompt_text(), query=body.prompt_text())
        return await _respond(g, answering, body.stream)

    @app.post("/v1/feedback")
    async def feedback(request: Request, body: FeedbackRequest) -> dict[str, Any]:
        g.check_auth(request)
        return await g.add_feedback(body.response_id, body.rating, body.correction, body.comment,
                                    g.key_fingerprint(request))

    _add_review_routes(app, g)


def _add_review_routes(app: FastAPI, g: Gateway) -> None:
    """The review queue (GET /v1/feedback, POST /v1/feedback/{id}/approve|reject) and POST /admin/reload: behind
    a review key (serve.review_key_env) when one is set, else behind the API key like the /v1 routes."""
    @app.get("/v1/feedback")
    async def feedback_list(request: Request, status: Optional[Literal["pending", "approved", "rejected"]] = None,
                            limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        g.check_review_auth(request)
        return await g.list_feedback(status, limit)

    @app.post("/v1/feedback/{feedback_id}/{decision}")
    async def feedback_review(request: Request, feedback_id: int = PathParam(ge=1, le=2**63 - 1), *,
                              decision: Literal["approve", "reject"],
                              body: Optional[ReviewRequest] = None) -> dict[str, Any]:
        g.check_review_auth(request)
        body = body or ReviewRequest()
        return await g.review_feedback(feedback_id, decision, reviewer=body.reviewer, note=body.note,
                                       reviewer_key_fp=g.key_fingerprint(request), correction=body.correction)

    @app.post("/admin/reload")
    async def reload(request: Request, body: Optional[ReloadRequest] = None) -> dict[str, Any]:
        g.check_review_auth(request)
        return await g.reload((body or ReloadRequest()).run)


async def _respond(g: Gateway, answering: Answering, stream: bool) -> Any:
    """The whole body, or its chunks as server-sent events."""
    if stream:
        return StreamingResponse(g.stream(answering), media_type="text/event-stream")
    return await g.answer(answering)


def load_training_questions(path: Path) -> list[str]:
    if not path.is_file():
        return []
    questions = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                q = (row.get("meta") or {}).get("question") or next(
                    (m["content"] for m in row.get("messages", []) if m.get("role") == "user"), "")
                questions.append(q)
    return questions
