"""The serving service behind the gateway's routes: one request's way from checks to the answer.

`Gateway` holds the engine, the knowledge base, the limits, the metrics and the feedback store. A completion
request is first checked and made ready (`Gateway.prepare`: model, limits, retrieval, the prompt the engine sees),
then answered whole (`Gateway.answer`) or streamed (`Gateway.stream`); both finish the same way (metrics, feedback
record) and build their bodies with the one `response_body`. Requests beyond `max_concurrency` wait in a bounded
queue; beyond `max_queue` they get 429.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, AsyncIterator, Callable

from verticalize.answering import PromptStyle, build_messages
from verticalize.config import Config
from verticalize.engine import Cancellation, Engine, GenerationRequest, GenerationResult
from verticalize.rungs import Rung
from verticalize.serve.feedback import FeedbackStore, fingerprint_key
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
    review_keys: set[str] = field(default_factory=set)  # the review API and /admin/reload (empty: any API key)
    max_prompt_tokens: int = 2048
    max_output_tokens: int = 512
    default_max_tokens: int = 128
    max_body_bytes: int = 1_000_000
    max_messages: int = 256
    max_message_chars: int = 65536
    max_stop: int = 4
    max_stop_chars: int = 256
    max_chars_per_token: float = 16.0
    protect_metrics: bool = True
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
                   max_body_bytes=serve_cfg.max_body_bytes, max_messages=serve_cfg.max_messages,
                   max_message_chars=serve_cfg.max_message_chars, max_stop=serve_cfg.max_stop,
                   max_stop_chars=serve_cfg.max_stop_chars, max_chars_per_token=serve_cfg.max_chars_per_token,
                   protect_metrics=serve_cfg.protect_metrics,
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
        # One thread per slot, for generation only: retrieval and feedback writes never wait behind it.
        self.generation_threads = ThreadPoolExecutor(settings.max_concurrency, thread_name_prefix="verticalize-gen")
        self.waiting = 0
        self.ready = True
        self.reloader: Any = None  # a serve.reload.Reloader when reloading is on (serve_run): POST /admin/reload

    # ----------------------------------------------------------------------------------------- checks
    def authorized(self, request: Any) -> bool:
        """``request``: the HTTP request (its ``Authorization: Bearer <key>`` header). Every configured key is
        compared in constant time, with no early exit, so the time taken tells nothing about the keys."""
        return not self.settings.api_keys or bearer_matches(request, self.settings.api_keys)

    def check_auth(self, request: Any) -> None:
        if not self.authorized(request):
            raise APIError(401, "Incorrect or missing API key. Send 'Authorization: Bearer <key>'.",
                           "invalid_request_error", "invalid_api_key")

    def check_status_auth(self, request: Any) -> None:
        """/metrics and /ready: behind the key when ``protect_metrics`` is on (and a key is set)."""
        if self.settings.protect_metrics:
            self.check_auth(request)

    def check_counts(self, messages: Any, stop: Any) -> None:
        """How many messages and stop sequences: on the parsed JSON too, before every item is validated."""
        s = self.settings
        if isinstance(messages, list) and len(messages) > s.max_messages:
            raise APIError(400, f"{len(messages)} messages, over this server's limit of {s.max_messages}",
                           "invalid_request_error", "too_many_messages", "messages")
        n_stop = len(stop) if isinstance(stop, list) else int(bool(stop))
        if n_stop > s.max_stop:
            raise APIError(400, f"{n_stop} stop sequences, over this server's limit of {s.max_stop}",
                           "invalid_request_error", "too_many_stop_sequences", "stop")

    def check_bounds(self, body: SamplingParams, messages: list[dict[str, str]] | None, prompt: str | None) -> None:
        """The request's size, before any retrieval or tokenising: message count and length, stop sequences, and
        the character pre-check (a prompt with more characters than ``max_prompt_tokens`` tokens can cover)."""
        s = self.settings

        def refuse(message: str, code: str, param: str) -> APIError:
            return APIError(400, message, "invalid_request_error", code, param)

        stops = body.stop or []
        self.check_counts(messages, stops)
        texts = [("prompt", prompt or "")] if messages is None else \
            [(f"messages.{i}.content", m["content"]) for i, m in enumerate(messages)]
        for param, text in texts:
            if len(text) > s.max_message_chars:
                raise refuse(f"{param} is {len(text)} characters, over this server's limit of "
                             f"{s.max_message_chars}", "message_too_long", param)
        if any(len(stop) > s.max_stop_chars for stop in stops):
            raise refuse(f"a stop sequence is longer than this server's limit of {s.max_stop_chars} characters",
                         "stop_too_long", "stop")
        chars = sum(len(text) for _, text in texts)
        if s.max_chars_per_token and chars > s.max_prompt_tokens * s.max_chars_per_token:
            raise refuse(f"prompt is {chars} characters: more than {s.max_prompt_tokens} tokens, this server's "
                         "limit", "context_length_exceeded", "messages" if messages is not None else "prompt")

    def check_model(self, name: str) -> None:
        if not MODEL_NAME.match(name):
            raise APIError(400, f"invalid model name {name!r}: letters, digits and . _ + - only",
                           "invalid_request_error", "invalid_model", "model")
        if name not in self.engine.model_names():
            raise APIError(404, f"The model '{name}' does not exist. Available: "
                           f"{', '.join(self.engine.model_names())}", "invalid_request_error", "model_not_found",
                           "model")

    def output_limit(self, params: SamplingParams) -> int:
        asked = params.output_limit() or min(self.settings.default_max_tokens, self.settings.max_output_tokens)
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
        self.check_bounds(body, messages, prompt)
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
                           "messages" if kind == CHAT else "prompt")
        if n_prompt < 1:  # an empty completion prompt with a tokenizer that adds no BOS: nothing to continue
            raise APIError(400, "the prompt is empty (0 tokens): nothing to continue", "invalid_request_error",
                           "empty_prompt", "messages" if kind == CHAT else "prompt")
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
        began ends it as an error event. A client that goes away (Starlette cancels this generator on the ASGI
        disconnect, or it is closed) cancels the generation: `run` stops it and frees its slot."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        task = asyncio.create_task(self.run(a.gen, lambda t: loop.call_soon_threadsafe(pieces.put_nowait, t)))
        task.add_done_callback(lambda _: loop.call_soon_threadsafe(pieces.put_nowait, None))
        try:
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
        finally:
            if not task.done():  # the client went away mid-stream
                task.cancel()
                self.count(a, "499")  # nginx's "client closed request"

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
        cancel = Cancellation()
        thread = asyncio.get_running_loop().run_in_executor(
            self.generation_threads, partial(self.engine.generate, gen, on_text, cancel=cancel))
        try:
            done, _ = await asyncio.wait({thread}, timeout=self.settings.request_timeout_s)
            if not done:
                raise APIError(504, f"generation took longer than {self.settings.request_timeout_s:.0f}s",
                               "timeout_error", "timeout")
            return thread.result()
        finally:
            # Timed out, or this task was cancelled (a streaming client went away): the engine stops the generation
            # at its next decode step. The slot is freed only once it has stopped, so max_concurrency bounds the
            # generations really running, not just the requests still waited for.
            if not thread.done():
                cancel.cancel()
                thread.add_done_callback(self._generation_ended)
            else:
                self._generation_ended(thread)

    def _generation_ended(self, thread: "asyncio.Future[GenerationResult]") -> None:
        if not thread.cancelled():
            thread.exception()  # retrieved, so an abandoned generation's error is not logged as never retrieved
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
        if result.engine:
            m.engine_answers.labels(engine=result.engine).inc()
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
                           comment: str | None, key_fp: str | None = None) -> dict[str, Any]:
        """A new row in the review queue (pending); ``key_fp``: the sender's key fingerprint."""
        if self.feedback is None:
            raise APIError(503, "feedback storage is not configured", "server_error", "no_feedback_store")
        try:
            fid = await asyncio.to_thread(self.feedback.add_feedback, response_id, rating, correction, comment,
                                          key_fp)
        except KeyError:
            raise APIError(404, f"unknown response_id '{response_id}'", "invalid_request_error",
                           "response_not_found", "response_id") from None
        self.metrics.feedback.labels(rating="positive" if rating > 0 else
                                     "negative" if rating < 0 else "neutral").inc()
        return {"id": fid, "object": "feedback", "response_id": response_id, "status": "pending"}

    # ----------------------------------------------------------------------------------------- the review queue
    @staticmethod
    def _bearer(request: Any) -> str:
        header = request.headers.get("authorization", "")
        return header[7:].strip() if header[:7].lower() == "bearer " else ""

    def key_fingerprint(self, request: Any) -> str | None:
        """The fingerprint of the (accepted) API key a request came with; None when the server has no keys."""
        if not (self.settings.api_keys or self.settings.review_keys):
            return None
        return fingerprint_key(self._bearer(request))

    def check_review_auth(self, request: Any) -> None:
        """The review API and /admin/reload: a review key when any is set (serve.review_key_env), else any API
        key."""
        if not self.settings.review_keys:
            self.check_auth(request)
            return
        if not bearer_matches(request, self.settings.review_keys):
            self.check_auth(request)  # no key at all, or a wrong one: 401
            raise APIError(403, "this API key may not review feedback or reload the server",
                           "permission_error", "not_a_reviewer")

    def _store(self) -> FeedbackStore:
        if self.feedback is None:
            raise APIError(503, "feedback storage is not configured", "server_error", "no_feedback_store")
        return self.feedback

    async def list_feedback(self, status: str | None, limit: int) -> dict[str, Any]:
        """GET /v1/feedback: the review queue (``status``: pending, approved, rejected; None: all), oldest first."""
        rows = await asyncio.to_thread(self._store().rows, status, limit)
        return {"object": "list", "data": [public_feedback(r) for r in rows]}

    async def review_feedback(self, feedback_id: int, decision: str, *, reviewer: str | None, note: str | None,
                              reviewer_key_fp: str | None, correction: str | None = None) -> dict[str, Any]:
        """POST /v1/feedback/{id}/approve|reject. A key may not review the feedback it sent itself (review needs a
        second key, or `verticalize feedback review RUN` on the server)."""
        store = self._store()
        try:
            row = await asyncio.to_thread(store.get, feedback_id)
        except KeyError:
            raise APIError(404, f"unknown feedback id {feedback_id}", "invalid_request_error", "feedback_not_found",
                           "id") from None
        if reviewer_key_fp is not None and row["key_fingerprint"] == reviewer_key_fp:
            raise APIError(403, "feedback cannot be reviewed with the API key that sent it: use another key, or "
                           "`verticalize feedback review RUN`", "permission_error", "self_review")
        who = reviewer or (f"key:{reviewer_key_fp}" if reviewer_key_fp else "api")
        row = await asyncio.to_thread(store.review, feedback_id, decision, who, note, reviewer_key_fp, correction)
        return public_feedback(row)

    async def reload(self, run: str | None) -> dict[str, Any]:
        """POST /admin/reload: switch to another version of the served run (serve/reload.py)."""
        if self.reloader is None:
            raise APIError(400, "this gateway cannot reload: it was not started on a run directory",
                           "invalid_request_error", "reload_unavailable")
        return await self.reloader.reload(self, run)


def bearer_matches(request: Any, keys: Any) -> bool:
    """Whether the request's ``Authorization: Bearer <key>`` is one of ``keys``: every key compared in constant
    time, with no early exit, so the time taken tells nothing about the keys."""
    header = request.headers.get("authorization", "")
    token = (header[7:].strip() if header[:7].lower() == "bearer " else "").encode()
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(token, key.encode())
    return ok


def public_feedback(row: dict[str, Any]) -> dict[str, Any]:
    """A review-queue row as the API shows it (the key only as its fingerprint, as stored)."""
    keys = ("id", "response_id", "created", "status", "rating", "correction", "comment", "model", "question",
            "response", "key_fingerprint", "reviewer", "reviewed_at", "review_note")
    return {"object": "feedback", **{k: row.get(k) for k in keys}}
