"""The HTTP layer: an OpenAI-compatible FastAPI app in front of any `Engine`.

Everything request-shaped lives here (auth, limits, validation, SSE, error shape, metrics, feedback); the engine
only generates. Requests beyond `max_concurrency` wait in a bounded queue; beyond `max_queue` they get 429.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from verticalize.answering import PromptStyle, build_messages
from verticalize.engine import Engine, GenerationRequest, GenerationResult
from verticalize.config import Config
from verticalize.rungs import Rung
from verticalize.serve.feedback import FeedbackStore
from verticalize.serve.metrics import GatewayMetrics
from verticalize.serve.protocol import (ChatCompletionRequest, CompletionRequest, SamplingParams, error_body,
                                        new_id, now)
from verticalize.serve.quality import QualitySignals

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+\-]{0,63}$")  # no slashes, no '..': names, never paths


class APIError(Exception):
    def __init__(self, status: int, message: str, type_: str, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param


class FeedbackRequest(BaseModel):
    response_id: str = Field(min_length=1, max_length=128)
    rating: int = Field(ge=-1, le=5, description="-1 bad, 0 neutral, 1..5 good")
    correction: str | None = Field(None, max_length=20000)
    comment: str | None = Field(None, max_length=5000)


@dataclass
class GatewaySettings:
    api_keys: set[str] = field(default_factory=set)
    max_prompt_tokens: int = 2048
    max_output_tokens: int = 512
    default_max_tokens: int = 128
    max_concurrency: int = 4
    max_queue: int = 16
    request_timeout_s: float = 120.0
    rag_adapters: set[str] = field(default_factory=set)
    top_k: int = 3
    style: PromptStyle = field(default_factory=lambda: PromptStyle.from_config(Config()))

    @classmethod
    def from_config(cls, serve_cfg: Any, *, top_k: int = 3, style: PromptStyle | None = None) -> "GatewaySettings":
        keys = {k.strip() for k in os.environ.get(serve_cfg.api_key_env, "").split(",") if k.strip()}
        return cls(api_keys=keys, max_prompt_tokens=serve_cfg.max_prompt_tokens,
                   max_output_tokens=serve_cfg.max_output_tokens, max_concurrency=serve_cfg.max_concurrency,
                   max_queue=serve_cfg.max_queue, request_timeout_s=serve_cfg.request_timeout_s,
                   rag_adapters=set(serve_cfg.rag_adapters), top_k=top_k,
                   **({"style": style} if style is not None else {}))


class Gateway:
    """State shared by the routes: engine, knowledge base, limits, metrics, feedback."""

    def __init__(self, engine: Engine, settings: GatewaySettings, *, kb: Any = None,
                 feedback: FeedbackStore | None = None, quality: QualitySignals | None = None):
        self.engine = engine
        self.settings = settings
        self.kb = kb
        self.feedback = feedback
        self.quality = quality or QualitySignals()
        self.metrics = GatewayMetrics()
        self.slots = asyncio.Semaphore(settings.max_concurrency)
        self.waiting = 0
        self.ready = True

    # ----------------------------------------------------------------------------------------- checks
    def check_auth(self, request: Request) -> None:
        if not self.settings.api_keys:
            return
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if token not in self.settings.api_keys:
            raise APIError(401, "Incorrect or missing API key. Send 'Authorization: Bearer <key>'.",
                           "invalid_request_error", "invalid_api_key")

    def check_model(self, name: str) -> None:
        if not MODEL_NAME.match(name):
            raise APIError(400, f"invalid model name {name!r}: letters, digits and . _ + - only",
                           "invalid_request_error", "invalid_model", "model")
        if name not in self.engine.model_names():
            raise APIError(404, f"The model '{name}' does not exist. Available: "
                           f"{', '.join(self.engine.model_names())}", "invalid_request_error", "model_not_found",
                           "model")

    def output_limit(self, params: SamplingParams) -> int:
        asked = params.output_limit() or self.settings.default_max_tokens
        if asked > self.settings.max_output_tokens:
            raise APIError(400, f"max_tokens {asked} is over this server's limit of "
                           f"{self.settings.max_output_tokens}", "invalid_request_error", "max_tokens_exceeded",
                           "max_tokens")
        return asked

    # ----------------------------------------------------------------------------------------- retrieval
    def use_rag(self, params: SamplingParams) -> bool:
        wanted = params.rag if params.rag is not None else params.model in self.settings.rag_adapters
        if wanted and self.kb is None:
            raise APIError(400, "retrieval was asked for but this run has no knowledge base",
                           "invalid_request_error", "no_knowledge_base", "rag")
        return bool(wanted)

    def retrieve(self, query: str) -> list[dict[str, Any]]:
        started = time.perf_counter()
        hits = self.kb.search(query, self.settings.top_k)
        self.metrics.retrieval_latency.observe(time.perf_counter() - started)
        self.metrics.retrieval_requests.labels(hit=str(bool(hits)).lower()).inc()
        return [{"chunk_id": h.chunk_id, "source": h.source, "score": float(h.score), "text": h.text} for h in hits]

    # ----------------------------------------------------------------------------------------- generation
    async def run(self, gen: GenerationRequest, on_text: Callable[[str], None] | None) -> GenerationResult:
        if self.slots.locked() and self.waiting >= self.settings.max_queue:
            raise APIError(429, "Server is at capacity; retry later.", "rate_limit_error", "server_busy")
        self.waiting += 1
        self.metrics.waiting.set(self.waiting)
        try:
            await self.slots.acquire()
        finally:
            self.waiting -= 1
            self.metrics.waiting.set(self.waiting)
        self.metrics.running.inc()
        try:
            return await asyncio.wait_for(asyncio.to_thread(self.engine.generate, gen, on_text),
                                          timeout=self.settings.request_timeout_s)
        except asyncio.TimeoutError:
            raise APIError(504, f"generation took longer than {self.settings.request_timeout_s:.0f}s",
                           "timeout_error", "timeout") from None
        finally:
            self.metrics.running.dec()
            self.slots.release()

    def observe(self, model: str, result: GenerationResult, started: float, query: str) -> None:
        m = self.metrics
        m.e2e_latency.labels(adapter=model).observe(time.perf_counter() - started)
        if result.time_to_first_token is not None:
            m.ttft.labels(adapter=model).observe(result.time_to_first_token)
        for gap in result.inter_token_latencies:
            m.itl.labels(adapter=model).observe(gap)
        m.prompt_tokens.labels(adapter=model).inc(result.prompt_tokens)
        m.generation_tokens.labels(adapter=model).inc(result.completion_tokens)
        m.answer_chars.labels(adapter=model).observe(len(result.text))
        if self.quality.is_refusal(result.text):
            m.refusals.labels(adapter=model).inc()
        if self.quality.is_out_of_domain(query):
            m.out_of_domain.labels(adapter=model).inc()


def _rung(gateway: Gateway, model: str, rag: bool) -> str:
    """The ladder rung a request is answered on (its metrics label): any served name but the base is tuned."""
    return Rung.serving(tuned=model != gateway.engine.base_name, rag=rag).name


def _messages_with_context(messages: list[dict[str, str]], sources: list[dict[str, Any]],
                           style: PromptStyle) -> list[dict[str, str]]:
    """The conversation the engine sees, built by the one answering path the ladder measures: the client's system
    message (else the project's), earlier turns as sent, and the last user turn with the retrieved passages."""
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else None
    rest = messages[1:] if system is not None else messages
    last_user = max((i for i, m in enumerate(rest) if m["role"] == "user"), default=None)
    if last_user is None or last_user != len(rest) - 1:  # no question at the end: nothing to ground
        return ([{"role": "system", "content": system or style.system_prompt}] if (system or style.system_prompt)
                else []) + rest
    return build_messages(rest[last_user]["content"], style, passages=sources, system=system,
                          history=rest[:last_user])


def create_app(gateway: Gateway) -> FastAPI:
    app = FastAPI(title="verticalize gateway", version="1")
    app.state.gateway = gateway
    g = gateway

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

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        g.check_auth(request)
        data = [{"id": name, "object": "model", "created": now(), "owned_by": "verticalize",
                 "parent": None if name == g.engine.base_name else g.engine.base_name}
                for name in g.engine.model_names()]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat(request: Request, body: ChatCompletionRequest) -> Any:
        g.check_auth(request)
        messages = [{"role": m.role if m.role != "developer" else "system", "content": m.text()}
                    for m in body.messages]
        query = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        return await _serve(body, "chat.completion", messages=messages, query=query)

    @app.post("/v1/completions")
    async def completions(request: Request, body: CompletionRequest) -> Any:
        g.check_auth(request)
        return await _serve(body, "text_completion", prompt=body.prompt_text(), query=body.prompt_text())

    @app.post("/v1/feedback")
    async def feedback(request: Request, body: FeedbackRequest) -> dict[str, Any]:
        g.check_auth(request)
        if g.feedback is None:
            raise APIError(503, "feedback storage is not configured", "server_error", "no_feedback_store")
        try:
            fid = await asyncio.to_thread(g.feedback.add_feedback, body.response_id, body.rating,
                                          body.correction, body.comment)
        except KeyError:
            raise APIError(404, f"unknown response_id '{body.response_id}'", "invalid_request_error",
                           "response_not_found", "response_id") from None
        g.metrics.feedback.labels(rating="positive" if body.rating > 0 else
                                  "negative" if body.rating < 0 else "neutral").inc()
        return {"id": fid, "object": "feedback", "response_id": body.response_id}

    async def _serve(body: SamplingParams, kind: str, *, messages: list[dict[str, str]] | None = None,
                     prompt: str | None = None, query: str) -> Any:
        started = time.perf_counter()
        g.check_model(body.model)
        max_tokens = g.output_limit(body)
        rag = g.use_rag(body)
        sources = await asyncio.to_thread(g.retrieve, query) if rag else []
        if messages is not None:
            messages = _messages_with_context(messages, sources, g.settings.style)
        elif sources:
            prompt = "\n".join(s["text"] for s in sources) + "\n\n" + (prompt or "")
        gen = GenerationRequest(model=body.model, messages=messages, prompt=prompt, max_tokens=max_tokens,
                                temperature=body.temperature, top_p=body.top_p, stop=body.stop, seed=body.seed)
        n_prompt = await asyncio.to_thread(g.engine.count_prompt_tokens, gen)
        if n_prompt > g.settings.max_prompt_tokens:
            raise APIError(400, f"prompt is {n_prompt} tokens, over this server's limit of "
                           f"{g.settings.max_prompt_tokens}", "invalid_request_error", "context_length_exceeded",
                           "messages")
        rid = new_id("chatcmpl" if kind == "chat.completion" else "cmpl")
        rung = _rung(g, body.model, rag)
        if body.stream:
            return StreamingResponse(_stream(body, kind, rid, gen, sources, rung, started, query),
                                     media_type="text/event-stream")
        try:
            result = await g.run(gen, None)
        except APIError as e:
            g.metrics.requests.labels(adapter=body.model, rung=rung, status=str(e.status)).inc()
            raise
        g.observe(body.model, result, started, query)
        g.metrics.requests.labels(adapter=body.model, rung=rung, status="200").inc()
        await _store(rid, body.model, messages or [{"role": "user", "content": prompt or ""}], result.text,
                     sources, rag)
        usage = {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                 "total_tokens": result.prompt_tokens + result.completion_tokens}
        if kind == "chat.completion":
            choice = {"index": 0, "message": {"role": "assistant", "content": result.text},
                      "finish_reason": result.finish_reason}
        else:
            choice = {"index": 0, "text": result.text, "finish_reason": result.finish_reason, "logprobs": None}
        return {"id": rid, "object": kind, "created": now(), "model": body.model, "choices": [choice],
                "usage": usage, "sources": sources}

    async def _store(rid: str, model: str, messages: list[dict[str, str]], answer: str,
                     sources: list[dict[str, Any]], rag: bool) -> None:
        if g.feedback is not None:
            await asyncio.to_thread(g.feedback.record_response, rid, model, messages, answer, sources, rag)

    async def _stream(body: SamplingParams, kind: str, rid: str, gen: GenerationRequest,
                      sources: list[dict[str, Any]], rung: str, started: float, query: str) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        chunk_kind = "chat.completion.chunk" if kind == "chat.completion" else "text_completion"

        def event(delta: dict[str, Any] | str, finish: str | None = None, **extra: Any) -> str:
            if kind == "chat.completion":
                choice = {"index": 0, "delta": delta, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": delta, "finish_reason": finish, "logprobs": None}
            payload = {"id": rid, "object": chunk_kind, "created": now(), "model": body.model,
                       "choices": [choice], **extra}
            return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

        task = asyncio.create_task(g.run(gen, lambda t: loop.call_soon_threadsafe(pieces.put_nowait, t)))
        task.add_done_callback(lambda _: loop.call_soon_threadsafe(pieces.put_nowait, None))
        if kind == "chat.completion":
            yield event({"role": "assistant", "content": ""}, sources=sources)
        while (piece := await pieces.get()) is not None:
            yield event({"content": piece} if kind == "chat.completion" else piece)
        try:
            result = task.result()
        except APIError as e:
            g.metrics.requests.labels(adapter=body.model, rung=rung, status=str(e.status)).inc()
            yield f"data: {json.dumps(error_body(e.message, e.type, e.code))}\n\n"
            return
        g.observe(body.model, result, started, query)
        g.metrics.requests.labels(adapter=body.model, rung=rung, status="200").inc()
        await _store(rid, body.model, gen.messages or [{"role": "user", "content": gen.prompt or ""}],
                     result.text, sources, bool(sources) or Rung.parse(rung).uses_knowledge_base)
        usage = {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                 "total_tokens": result.prompt_tokens + result.completion_tokens}
        yield event({} if kind == "chat.completion" else "", result.finish_reason, usage=usage)
        yield "data: [DONE]\n\n"

    return app


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
