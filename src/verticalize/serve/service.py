"""The serving service behind the gateway's routes: one request's way from checks to the answer.

`Gateway` holds the engine, the knowledge base, the limits, the metrics and the feedback store. A completion
request is first checked and made ready (`Gateway.prepare`: model, limits, retrieval, the prompt the engine sees),
then answered whole (`Gateway.answer`) or streamed (`Gateway.stream`); both finish the same way (metrics, feedback
record) and build their bodies with the one `response_body`. Requests beyond `max_concurrency` wait in a bounded
queue; beyond `max_queue` they get 429.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

from verticalize.answering import PromptStyle, build_messages
from verticalize.config import Config
from verticalize.engine import Engine, GenerationRequest, GenerationResult
from verticalize.rungs import Rung
from verticalize.serve.feedback import FeedbackStore
from verticalize.serve.metrics import GatewayMetrics
from verticalize.serve.protocol import SamplingParams, error_body, new_id, now
from verticalize.serve.quality import QualitySignals

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+\-]{0,63}$")  # no slashes, no '..': names, never paths
CHAT, TEXT = "chat.completion", "text_completion"  # the response objects of /v1/chat/completions, /v1/completions


class APIError(Exception):
    def __init__(self, status: int, message: str, type_: str, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param


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


@dataclass
class Answering:
    """A checked completion request, ready to generate: what the engine gets, what the response and metrics need."""

    kind: str                      # CHAT or TEXT: the response object
    model: str                     # the served name asked for (the metrics' adapter label)
    rid: str                       # the response id (feedback refers to it)
    gen: GenerationRequest         # with the retrieved passages in it
    sources: list[dict[str, Any]]  # the retrieved passages, returned as `sources`
    rag: bool
    rung: str                      # the ladder rung it is answered on (the metrics' rung label)
    started: float                 # perf_counter() when it arrived: the end-to-end latency
    query: str                     # the question: the out-of-domain signal

    @property
    def conversation(self) -> list[dict[str, str]]:
        """What the engine was asked, as messages: the feedback record."""
        return self.gen.messages or [{"role": "user", "content": self.gen.prompt or ""}]


def response_body(a: Answering, text: str | None, finish: str | None, *, chunk: bool = False, first: bool = False,
                  **extra: Any) -> dict[str, Any]:
    """The one OpenAI-shaped body: chat.completion / text_completion, whole or one streamed chunk.

    Chat: the whole `message`, or a chunk's `delta` (the role on the first chunk only; ``text=None``: no content,
    the last chunk). Completion: `text` either way. ``extra`` (usage, sources) follows the choices."""
    if a.kind == CHAT:
        delta = ({"role": "assistant"} if first or not chunk else {}) | ({} if text is None else {"content": text})
        choice = {"index": 0, ("delta" if chunk else "message"): delta, "finish_reason": finish}
        obj = CHAT + ".chunk" if chunk else CHAT
    else:
        choice = {"index": 0, "text": "" if text is None else text, "finish_reason": finish, "logprobs": None}
        obj = TEXT
    return {"id": a.rid, "object": obj, "created": now(), "model": a.model, "choices": [choice], **extra}


def usage(result: GenerationResult) -> dict[str, int]:
    return {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
            "total_tokens": result.prompt_tokens + result.completion_tokens}


def _event(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def _rung(gateway: "Gateway", model: str, rag: bool) -> str:
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


class Gateway:
    """The serving service the routes share: engine, knowledge base, limits, metrics, feedback."""

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
    def check_auth(self, request: Any) -> None:
        """``request``: the HTTP request (its ``Authorization: Bearer <key>`` header)."""
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

    # ----------------------------------------------------------------------------------------- answering
    async def prepare(self, body: SamplingParams, kind: str, *, messages: list[dict[str, str]] | None = None,
                      prompt: str | None = None, query: str) -> Answering:
        """Check a chat (``messages``) or completion (``prompt``) request and build what the engine is asked."""
        started = time.perf_counter()
        self.check_model(body.model)
        max_tokens = self.output_limit(body)
        rag = self.use_rag(body)
        sources = await asyncio.to_thread(self.retrieve, query) if rag else []
        if messages is not None:
            messages = _messages_with_context(messages, sources, self.settings.style)
        elif sources:
            prompt = "\n".join(s["text"] for s in sources) + "\n\n" + (prompt or "")
        gen = GenerationRequest(model=body.model, messages=messages, prompt=prompt, max_tokens=max_tokens,
                                temperature=body.temperature, top_p=body.top_p, stop=body.stop, seed=body.seed)
        n_prompt = await asyncio.to_thread(self.engine.count_prompt_tokens, gen)
        if n_prompt > self.settings.max_prompt_tokens:
            raise APIError(400, f"prompt is {n_prompt} tokens, over this server's limit of "
                           f"{self.settings.max_prompt_tokens}", "invalid_request_error", "context_length_exceeded",
                           "messages")
        return Answering(kind, body.model, new_id("chatcmpl" if kind == CHAT else "cmpl"), gen, sources, rag,
                         _rung(self, body.model, rag), started, query)

    async def answer(self, a: Answering) -> dict[str, Any]:
        """Generate the whole answer: the chat.completion / text_completion body."""
        try:
            result = await self.run(a.gen, None)
        except APIError as e:
            self.count(a, str(e.status))
            raise
        await self.finish(a, result)
        return response_body(a, result.text, result.finish_reason, usage=usage(result), sources=a.sources)

    async def stream(self, a: Answering) -> AsyncIterator[str]:
        """Generate piece by piece: server-sent events, one chunk per piece, then [DONE]. An error after the stream
        began ends it as an error event."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        task = asyncio.create_task(self.run(a.gen, lambda t: loop.call_soon_threadsafe(pieces.put_nowait, t)))
        task.add_done_callback(lambda _: loop.call_soon_threadsafe(pieces.put_nowait, None))
        if a.kind == CHAT:
            yield _event(response_body(a, "", None, chunk=True, first=True, sources=a.sources))
        while (piece := await pieces.get()) is not None:
            yield _event(response_body(a, piece, None, chunk=True))
        try:
            result = task.result()
        except APIError as e:
            self.count(a, str(e.status))
            yield f"data: {json.dumps(error_body(e.message, e.type, e.code))}\n\n"
            return
        await self.finish(a, result)
        yield _event(response_body(a, None, result.finish_reason, chunk=True, usage=usage(result)))
        yield "data: [DONE]\n\n"

    async def finish(self, a: Answering, result: GenerationResult) -> None:
        """An answered request: its metrics, and its record in the feedback store (feedback refers to ``a.rid``)."""
        self.observe(a.model, result, a.started, a.query)
        self.count(a, "200")
        if self.feedback is not None:
            await asyncio.to_thread(self.feedback.record_response, a.rid, a.model, a.conversation, result.text,
                                    a.sources, a.rag)

    def count(self, a: Answering, status: str) -> None:
        self.metrics.requests.labels(adapter=a.model, rung=a.rung, status=status).inc()

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

    # ----------------------------------------------------------------------------------------- the rest
    def model_list(self) -> dict[str, Any]:
        """The /v1/models body: the base and every served adapter (its parent: the base)."""
        data = [{"id": name, "object": "model", "created": now(), "owned_by": "verticalize",
                 "parent": None if name == self.engine.base_name else self.engine.base_name}
                for name in self.engine.model_names()]
        return {"object": "list", "data": data}

    async def add_feedback(self, response_id: str, rating: int, correction: str | None,
                           comment: str | None) -> dict[str, Any]:
        if self.feedback is None:
            raise APIError(503, "feedback storage is not configured", "server_error", "no_feedback_store")
        try:
            fid = await asyncio.to_thread(self.feedback.add_feedback, response_id, rating, correction, comment)
        except KeyError:
            raise APIError(404, f"unknown response_id '{response_id}'", "invalid_request_error",
                           "response_not_found", "response_id") from None
        self.metrics.feedback.labels(rating="positive" if rating > 0 else
                                     "negative" if rating < 0 else "neutral").inc()
        return {"id": fid, "object": "feedback", "response_id": response_id}
