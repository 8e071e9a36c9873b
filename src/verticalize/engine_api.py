"""What every engine speaks: a generation request, its result, the ``Engine`` interface, the ``Cancellation`` a
caller hands in to stop a generation it gave up on, and the two helpers every engine uses while it streams
(``TokenClock`` for time to first token and the gaps between tokens, ``StopOnText`` for cutting the output at a
stop string).

The embedded engine (``engine.py``), its batch scheduler (``batching.py``) and the served engines
(``serve/llamacpp.py``, ``serve/vllm.py``) import these from here, so the dependency between them is one-way:
engine -> batching -> engine_api.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol


@dataclass
class GenerationRequest:
    model: str                       # an adapter name, or the base model's served name
    messages: list[dict[str, str]] | None = None   # chat form (rendered with the chat template)
    prompt: str | None = None        # raw completion form
    max_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] | None = None
    seed: int | None = None


@dataclass
class GenerationResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str               # "stop" | "length" | "cancelled" (the caller gave up: see Cancellation)
    time_to_first_token: float | None = None
    inter_token_latencies: list[float] = field(default_factory=list)
    engine: str | None = None        # which engine answered, where one engine routes to others (SplitEngine)


class Cancellation:
    """Set by a caller that gave up on a request (it timed out, its client went away); the engine checks it at
    every decode step and ends that request's generation there (``finish_reason="cancelled"``), so a request the
    gateway no longer waits for stops costing decode steps. Callbacks run once, on the first ``cancel()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._callbacks: list[Callable[[], object]] = []

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def on_cancel(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` when cancelled (at once if it already is)."""
        with self._lock:
            if not self._cancelled:
                self._callbacks.append(callback)
                return
        callback()


class EngineClosedError(RuntimeError):
    """A generation asked of an engine after its ``close()``: the engine has stopped its worker and let go of its
    model (the gateway's ``/admin/reload`` closes the old engine once nothing runs on it)."""


class Engine(Protocol):
    base_name: str

    def model_names(self) -> list[str]: ...

    def count_prompt_tokens(self, req: GenerationRequest) -> int: ...

    def generate(self, req: GenerationRequest, on_text: Callable[[str], None] | None = None,
                 cancel: Cancellation | None = None) -> GenerationResult:
        """Generate until end of sequence, a stop string (both end generation, not only the text) or
        ``max_tokens``; ``on_text`` receives text pieces as they are decoded (streaming); a set ``cancel`` ends
        it early, and ``generate`` returns only once the engine has stopped working on the request."""
        ...


def prompt_token_ids(tokenizer: Any, req: GenerationRequest) -> list[int]:
    """The prompt's token ids as the in-process engines feed them: a chat through the tokenizer's chat template
    (with the generation prompt), a completion prompt as plain text with the tokenizer's special tokens."""
    if req.messages is not None:
        return list(tokenizer.apply_chat_template(req.messages, add_generation_prompt=True, tokenize=True,
                                                  return_dict=False))
    return tokenizer(req.prompt or "", add_special_tokens=True)["input_ids"]


class TokenClock:
    """Time to first token and the gaps between tokens, as every engine reports them."""

    def __init__(self, started: float | None = None):
        self.started = started if started is not None else time.perf_counter()
        self.first: float | None = None  # seconds from start to the first token
        self.gaps: list[float] = []
        self._last = self.started

    def tick(self) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now - self.started
        else:
            self.gaps.append(now - self._last)
        self._last = now


class StopOnText:
    """Cuts the output at the first stop string; emits only text that can no longer become a stop string."""

    def __init__(self, stops: list[str], sink: Callable[[str], None] | None):
        self.stops = stops
        self.sink = sink
        self.text = ""
        self.emitted = 0
        self.stopped = False

    def feed(self, piece: str) -> None:
        if self.stopped:
            return
        self.text += piece
        for s in self.stops:
            idx = self.text.find(s)
            if idx >= 0:
                self.text = self.text[:idx]
                self.stopped = True
        hold = 0 if self.stopped else max((len(s) - 1 for s in self.stops), default=0)
        ready = len(self.text) - hold
        if self.sink and ready > self.emitted:
            self.sink(self.text[self.emitted:ready])
            self.emitted = ready

    def finish(self) -> None:
        if self.sink and len(self.text) > self.emitted:
            self.sink(self.text[self.emitted:])
            self.emitted = len(self.text)


def eos_token_ids(tokenizer: Any, model_dir: Any = None) -> set[int]:
    """The ids that end an answer for the engines that run their own loop (OpenVINO, ONNX Runtime): the base's
    generation config (in ``model_dir``) and the tokenizer's eos — what the embedded engine takes from the loaded
    model, so every engine stops at the same token."""
    found: set[int] = set()
    if model_dir is not None:
        from transformers import GenerationConfig

        try:
            ids = GenerationConfig.from_pretrained(model_dir).eos_token_id
        except OSError:  # no generation_config.json
            ids = None
        found |= set(ids if isinstance(ids, list) else [ids]) if ids is not None else set()
    if tokenizer.eos_token_id is not None:
        found.add(tokenizer.eos_token_id)
    return found


def decode_whole_chars(tokenizer: Any, ids: list[int], cut: bool) -> str:
    """Decoded text; when max_tokens cut it, up to three trailing tokens holding half a multi-byte character
    (decoded as U+FFFD) are dropped, but real text is never thrown away."""
    text = tokenizer.decode(ids, skip_special_tokens=True)
    if cut and text.endswith("\ufffd"):
        for drop in range(1, min(3, len(ids) - 1) + 1):
            shorter = tokenizer.decode(ids[:-drop], skip_special_tokens=True)
            if not shorter.endswith("\ufffd"):
                return shorter
    return text


@dataclass
class WorkerRequest:
    """One request inside an engine whose worker process owns the model (the OpenVINO and ONNX Runtime engines,
    through `engine_process.EngineProcess`, which keeps the request's id in ``handle``): each batch of new token
    ids is put on ``tokens`` and None when the worker is done with the request, with ``finish`` ("stop" when the
    model ended it) or ``error`` set; the caller's thread turns the tokens into text (`receive_tokens`) and sets
    ``stop_asked`` to end the request early."""

    ids: list[int]
    config: Any = None
    tokens: "queue.Queue[list[int] | None]" = field(default_factory=queue.Queue)
    handle: Any = None
    stop_asked: bool = False
    stop_sent: bool = False
    finish: str = "length"
    error: BaseException | None = None


def receive_tokens(live: WorkerRequest, tokenizer: Any, eos: set[int], req: GenerationRequest,
                   on_text: Callable[[str], None] | None, cancel: Cancellation | None, stop: Callable[[], None],
                   clock: TokenClock, engine: str) -> GenerationResult:
    """Streams ``live``'s tokens as text to ``on_text`` until its worker is done with it; asks the worker to
    ``stop`` at end of sequence or a stop string (``cancel`` calls ``stop`` itself), and returns the result."""
    cutter = StopOnText(req.stop or [], on_text)
    out_ids: list[int] = []
    shown = 0
    saw_eos = False
    while (tokens := live.tokens.get()) is not None:
        if cutter.stopped or saw_eos:
            continue  # asked to stop; drain until the worker confirms
        for token in tokens:
            if token in eos:
                saw_eos = True
                break
            out_ids.append(token)
            clock.tick()
        text = tokenizer.decode(out_ids, skip_special_tokens=True)
        if not text.endswith("\ufffd"):  # a character split across tokens waits for its last byte
            cutter.feed(text[shown:])
            shown = len(text)
        if cutter.stopped:
            stop()
    if live.error is not None:
        raise RuntimeError(f"the {engine} engine failed on this request: {live.error}") from live.error
    # An engine may end at an end-of-turn token without handing it over: its finish reason says so.
    ended_by_eos = saw_eos or (live.finish == "stop" and not live.stop_asked)
    text = decode_whole_chars(tokenizer, out_ids, cut=not ended_by_eos)
    cutter.feed(text[shown:])
    cutter.finish()
    cancelled = cancel is not None and cancel.cancelled and not (ended_by_eos or cutter.stopped)
    finish = "cancelled" if cancelled else "stop" if ended_by_eos or cutter.stopped else "length"
    n_new = len(out_ids) + (1 if ended_by_eos else 0)  # the end-of-turn token counts, as in the other engines
    return GenerationResult(cutter.text, len(live.ids), n_new, finish, clock.first, clock.gaps)
