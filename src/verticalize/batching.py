"""Continuous-ish batching for the embedded engine: requests that arrive together generate together.

One worker thread owns the model. It takes the first waiting request, waits `window_s` for more, and runs every
compatible request in one `generate` call with left padding. Requests for *different* adapters share a batch when
every loaded adapter is LoRA-family: PEFT then routes each row through its own adapter (`adapter_names`, with
`__base__` for the base model). Requests that cannot share (another sampling setting, a fixed seed, prefix or
prompt tuning adapters) wait for the next batch. Streaming works per row: `_RowStreamer` splits each step's tokens.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

from verticalize.engine_api import GenerationResult, StopOnText, TokenClock

BASE_ROW = "__base__"  # PEFT's name for "no adapter" in a mixed batch


@dataclass
class _Job:
    req: Any                      # GenerationRequest
    ids: list[int]
    on_text: Callable[[str], None] | None
    future: Future = field(default_factory=Future)

    def batch_key(self) -> tuple[Any, ...]:
        # Rows of one generate() call share sampling settings; seeded requests run alone to stay reproducible.
        if self.req.seed is not None:
            return ("seeded", id(self))
        return (self.req.temperature, self.req.top_p if self.req.temperature > 0 else None)


class _RowStreamer:
    """A transformers streamer for a batch: decodes each row incrementally and feeds its stop-string cutter."""

    def __init__(self, tokenizer: Any, cutters: list[Any], eos_ids: set[int], limits: list[int]):
        self.tokenizer = tokenizer
        self.cutters = cutters
        self.eos_ids = eos_ids
        self.limits = limits  # each row's own max_tokens (the batch generates up to the largest)
        self.tokens: list[list[int]] = [[] for _ in cutters]
        self.printed = [0] * len(cutters)
        self.done = [False] * len(cutters)
        self.ended_by_eos = [False] * len(cutters)
        started = time.perf_counter()
        self.clocks = [TokenClock(started) for _ in cutters]
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:  # generate() first reports the prompt
            self._prompt_seen = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            if self.done[row]:
                continue
            if token in self.eos_ids:
                self.done[row] = self.ended_by_eos[row] = True
                continue
            self.clocks[row].tick()
            self.tokens[row].append(token)
            self.done[row] = len(self.tokens[row]) >= self.limits[row]
            text = self.tokenizer.decode(self.tokens[row], skip_special_tokens=True)
            if text.endswith("\ufffd"):  # an incomplete multi-byte character: wait for the next token
                continue
            self.cutters[row].feed(text[self.printed[row]:])
            self.printed[row] = len(text)

    def end(self) -> None:
        for row, cutter in enumerate(self.cutters):
            cut = not self.ended_by_eos[row] and len(self.tokens[row]) >= self.limits[row]
            text = decode_whole_chars(self.tokenizer, self.tokens[row], cut=cut)
            cutter.feed(text[self.printed[row]:])
            self.printed[row] = len(text)


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


class BatchScheduler:
    def __init__(self, engine: Any, max_batch: int = 8, window_s: float = 0.01):
        self.engine = engine
        self.max_batch = max_batch
        self.window_s = window_s
        self._queue: queue.Queue[_Job] = queue.Queue()
        self._held: list[_Job] = []  # taken from the queue but not compatible with the last batch
        self.batches_run = 0
        self.rows_run = 0
        threading.Thread(target=self._loop, name="verticalize-batcher", daemon=True).start()

    def submit(self, req: Any, ids: list[int], on_text: Callable[[str], None] | None) -> Any:
        job = _Job(req, ids, on_text)
        self._queue.put(job)
        return job.future.result()

    # ------------------------------------------------------------------------------------------ worker
    def _next_batch(self) -> list[_Job]:
        first = self._held.pop(0) if self._held else self._queue.get()
        candidates = [first]
        deadline = time.perf_counter() + self.window_s
        while len(candidates) < self.max_batch * 2:
            remaining = deadline - time.perf_counter()
            try:
                candidates.append(self._held.pop(0) if self._held else self._queue.get(timeout=max(remaining, 0)))
            except queue.Empty:
                break
            if remaining <= 0:
                break
        batch, rest = [], []
        for job in candidates:
            fits = (len(batch) < self.max_batch and job.batch_key() == first.batch_key()
                    and self.engine.can_share_batch(first.req.model, job.req.model))
            (batch if fits else rest).append(job)
        self._held = rest + self._held
        return batch

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            try:
                results = self._run(batch)
            except BaseException as e:  # every waiting request gets the error, the worker lives on
                for job in batch:
                    job.future.set_exception(e)
                continue
            for job, result in zip(batch, results):
                job.future.set_result(result)

    def _run(self, batch: list[_Job]) -> list[Any]:
        import torch

        tok = self.engine.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        width = max(len(j.ids) for j in batch)
        input_ids = torch.tensor([[pad] * (width - len(j.ids)) + j.ids for j in batch])
        attention = torch.tensor([[0] * (width - len(j.ids)) + [1] * len(j.ids) for j in batch])
        cutters = [StopOnText(j.req.stop or [], j.on_text) for j in batch]
        eos = self.engine.eos_ids()
        streamer = _RowStreamer(tok, cutters, eos, [j.req.max_tokens for j in batch])
        req = batch[0].req
        kwargs: dict[str, Any] = dict(input_ids=input_ids, attention_mask=attention, streamer=streamer,
                                      max_new_tokens=max(j.req.max_tokens for j in batch), pad_token_id=pad)
        if req.temperature > 0:
            kwargs.update(do_sample=True, temperature=req.temperature, top_p=req.top_p)
        else:
            kwargs.update(do_sample=False)
        with torch.inference_mode():
            if req.seed is not None:
                torch.manual_seed(req.seed)
            self.engine.generate_rows([j.req.model for j in batch], kwargs)
        streamer.end()
        self.batches_run += 1
        self.rows_run += len(batch)
        results = []
        for row, job in enumerate(batch):
            cutter = cutters[row]
            cutter.finish()
            eos_ended = streamer.ended_by_eos[row]
            n_new = len(streamer.tokens[row]) + (1 if eos_ended else 0)  # the end-of-turn token counts, as in HF
            finish = "stop" if cutter.stopped or eos_ended else "length"
            clock = streamer.clocks[row]
            results.append(GenerationResult(cutter.text, len(job.ids), n_new, finish, clock.first, clock.gaps))
        return results
