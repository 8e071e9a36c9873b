"""The HTTP layer: an OpenAI-compatible FastAPI app in front of any `Engine`.

The routes here are thin: auth, parsing the request, the error shape and SSE framing; what a request does (limits,
retrieval, generation, metrics, feedback, the response body) is the serving service, `serve.service.Gateway`. The
engine only generates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from verticalize.serve.protocol import ChatCompletionRequest, CompletionRequest, error_body
from verticalize.serve.service import CHAT, MODEL_NAME, TEXT, Answering, APIError, Gateway, GatewaySettings

__all__ = ["APIError", "FeedbackRequest", "Gateway", "GatewaySettings", "MODEL_NAME", "create_app",
           "load_training_questions"]


class FeedbackRequest(BaseModel):
    response_id: str = Field(min_length=1, max_length=128)
    rating: int = Field(ge=-1, le=5, description="-1 bad, 0 neutral, 1..5 good")
    correction: str | None = Field(None, max_length=20000)
    comment: str | None = Field(None, max_length=5000)


def create_app(gateway: Gateway) -> FastAPI:
    app = FastAPI(title="verticalize gateway", version="1")
    app.state.gateway = gateway
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

    @app.exception_handler(Exception)
    async def _internal(_: Request, e: Exception) -> JSONResponse:
        g.metrics.errors.labels(type=type(e).__name__).inc()
        return JSONResponse(error_body(f"internal error: {type(e).__name__}", "server_error", "internal"),
                            status_code=500)


def _add_status_routes(app: FastAPI, g: Gateway) -> None:
    """/health, /ready and /metrics: no auth."""
    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        ok = g.ready
        return JSONResponse({"ready": ok, "models": g.engine.model_names()}, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(g.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _add_api_routes(app: FastAPI, g: Gateway) -> None:
    """The OpenAI-compatible /v1 routes, and /v1/feedback."""
    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        g.check_auth(request)
        return g.model_list()

    @app.post("/v1/chat/completions")
    async def chat(request: Request, body: ChatCompletionRequest) -> Any:
        g.check_auth(request)
        messages = [{"role": m.role if m.role != "developer" else "system", "content": m.text()}
                    for m in body.messages]
        query = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        return await _respond(g, await g.prepare(body, CHAT, messages=messages, query=query), body.stream)

    @app.post("/v1/completions")
    async def completions(request: Request, body: CompletionRequest) -> Any:
        g.check_auth(request)
        answering = await g.prepare(body, TEXT, prompt=body.prompt_text(), query=body.prompt_text())
        return await _respond(g, answering, body.stream)

    @app.post("/v1/feedback")
    async def feedback(request: Request, body: FeedbackRequest) -> dict[str, Any]:
        g.check_auth(request)
        return await g.add_feedback(body.response_id, body.rating, body.correction, body.comment)


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
