"""Continuous-ish batching for the embedded engine: requests that arrive together generate together.

One worker thread owns the model. It takes the first waiting request, waits `window_s` for more, and runs every
compatible request in one `generate` call with left padding. Requests for *different* adapters share a batch when
every loaded adapter is LoRA-family: PEFT then routes each row through its own adapter (`adapter_names`, with
`__base__` for the base model). Requests that cannot share (another sampling setting, a fixed seed, prefix or
prompt tuning adapters) wait for the next batch.

Each row ends on its own: `_BatchRows` is the `generate` call's stopping criterion and, at every decode step,
takes each running row's new token, decodes it into the row's stop-string cutter (`StopOnText`, which also streams
the text) and ends the row on end of sequence, a stop string, its own `max_tokens` or its request's
`Cancellation`. An ended row's result goes back to its caller at that step; Transformers feeds it padding until
the whole batch has ended (a `generate` call cannot drop a row), and the call returns when the last row ends, not
at the batch's largest `max_tokens`. A cancelled request still waiting in the queue never runs.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field
from typing import Any, Callable

from verticalize.engine_api import (Cancellation, EngineClosedError, GenerationResult, StopOnText, TokenClock,
                                    decode_whole_chars)

BASE_ROW = "__base__"  # PEFT's name for "no adapter" in a mixed batch


@dataclass
class _Job:
    req: Any                      # GenerationRequest
    ids: list[int]
    on_text: Callable[[str], None] | None
    cancel: Cancellation | None = None
    future: Future = field(default_factory=Future)

    def batch_key(self) -> tuple[Any, ...]:
        # Rows of one generate() call share sampling settings; seeded requests run alone to stay reproducible.
        if self.req.seed is not None:
            return ("seeded", id(self))
        return (self.req.temperature, self.req.top_p if self.req.temperature > 0 else None)


class _Row:
    """One request in a batch: its new tokens, decoded incrementally into its stop-string cutter, until it ends."""

    def __init__(self, job: _Job, tokenizer: Any, eos_ids: set[int], started: float):
        self.job = job
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids
        self.limit = job.req.max_tokens  # the batch generates up to the largest; this row stops at its own
        self.cutter = StopOnText(job.req.stop or [], self._sink if job.on_text else None)
        self.tokens: list[int] = []
        self.printed = 0
        self.clock = TokenClock(started)
        self.ended_by_eos = False
        self.sink_failed = False   # the caller's on_text raised: it cannot take more text, so the row ends
        self.result: GenerationResult | None = None

    def _sink(self, text: str) -> None:
        try:
            self.job.on_text(text)  # type: ignore[misc]
        except Exception:  # one broken consumer ends its own row, never the batch
            self.sink_failed = True

    @property
    def done(self) -> bool:
        return self.result is not None

    def step(self, token: int) -> bool:
        """Take this step's token; True when the row has ended."""
        if self.sink_failed or (self.job.cancel is not None and self.job.cancel.cancelled):
            self.end("cancelled")
        elif token in self.eos_ids:
            self.ended_by_eos = True
            self.end("stop")
        else:
            self.clock.tick()
            self.tokens.append(token)
            text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
            if not text.endswith("\ufffd"):  # else an incomplete multi-byte character: wait for the next token
                self.cutter.feed(text[self.printed:])
                self.printed = len(text)
            if self.cutter.stopped:
                self.end("stop")
            elif len(self.tokens) >= self.limit:
                self.end("length")
        return self.done

    def end(self, finish: str) -> GenerationResult:
        """The row's result (the rest of its text through the cutter), handed to its caller now."""
        if self.result is None:
            text = decode_whole_chars(self.tokenizer, self.tokens, cut=not self.ended_by_eos)
            self.cutter.feed(text[self.printed:])
            self.printed = len(text)
            self.cutter.finish()
            if finish == "length" and self.cutter.stopped:  # the stop string was in the last, held-back characters
                finish = "stop"
            n_new = len(self.tokens) + (1 if self.ended_by_eos else 0)  # the end-of-turn token counts, as in HF
            self.result = GenerationResult(self.cutter.text, len(self.job.ids), n_new, finish, self.clock.first,
                                           self.clock.gaps)
            if not self.job.future.done():
                self.job.future.set_result(self.result)
        return self.result


class _BatchRows:
    """The stopping criterion of one ``generate`` call: every running row takes its new token each decode step;
    a row that ended reports True (Transformers then stops it, and ends the call once every row has)."""

    def __init__(self, scheduler: "BatchScheduler", rows: list[_Row]):
        self.scheduler = scheduler
        self.rows = rows

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        self.scheduler.decode_steps += 1
        for row, token in zip(self.rows, input_ids[:, -1].tolist()):
            if not row.done:
                row.step(token)
        self.scheduler.rows_generating = sum(not r.done for r in self.rows)
        return torch.tensor([r.done for r in self.rows], dtype=torch.bool, device=input_ids.device)


_STOP = object()  # close()'s sentinel in the queue: every job queued before it still runs, then the worker ends


class BatchScheduler:
    """One worker thread that owns the model and runs the queued requests in batches.

    The worker survives any failure: a request that cannot even be sorted into a batch (a malformed job) gets its
    exception and is dropped, a batch whose ``generate`` raises hands the exception to each of its requests, and
    the thread goes on with the next ones. ``close()`` lets the requests already submitted finish first (their
    callers get their answers), then ends the worker; a ``submit`` after it raises `EngineClosedError`.
    """

    def __init__(self, engine: Any, max_batch: int = 8, window_s: float = 0.01):
        self.engine = engine
        self.max_batch = max_batch
        self.window_s = window_s
        self._queue: queue.Queue[Any] = queue.Queue()  # _Job, or the _STOP sentinel last
        self._held: list[_Job] = []  # taken from the queue but not compatible with the last batch
        self._taken: list[_Job] = []  # the jobs the worker took in its current pass (failed if the pass raises)
        self._stopping = False       # the worker took the sentinel: nothing more comes from the queue
        self._closed = False
        self._lock = threading.Lock()
        # What tests and operators read: batches and rows run, decode steps (one per generate() step of a batch),
        # requests inside submit() now (queued or generating) and the most ever at once, rows of the current batch
        # still generating, and requests cancelled (before they ran, or mid-generation).
        self.batches_run = 0
        self.rows_run = 0
        self.decode_steps = 0
        self.active = 0
        self.peak_active = 0
        self.rows_generating = 0
        self.cancelled = 0
        self.worker = threading.Thread(target=self._loop, name="verticalize-batcher", daemon=True)
        self.worker.start()

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, req: Any, ids: list[int], on_text: Callable[[str], None] | None,
               cancel: Cancellation | None = None) -> Any:
        """Generate one request in the next batch it fits; returns when its row has ended (or, cancelled while it
        still waited, at once: it never runs). After ``close()``: `EngineClosedError`."""
        job = _Job(req, ids, on_text, cancel)
        with self._lock:
            if self._closed:
                raise EngineClosedError("this engine is closed (its model was released, e.g. by /admin/reload); "
                                        "send the request to the engine that replaced it")
            self.active += 1
            self.peak_active = max(self.peak_active, self.active)
            self._queue.put(job)  # under the lock: a job is either before close()'s sentinel or refused
        try:
            if cancel is not None:
                cancel.on_cancel(job.future.cancel)  # only a queued job's future can be cancelled
            try:
                result = job.future.result()
            except CancelledError:
                result = GenerationResult("", len(ids), 0, "cancelled")
            if result.finish_reason == "cancelled":
                with self._lock:
                    self.cancelled += 1
            return result
        finally:
            with self._lock:
                self.active -= 1

    def close(self, timeout: float | None = None) -> bool:
        """Stop taking requests, let the ones already submitted finish, end the worker thread and drop the
        reference to the engine (so its model can be freed). Waits up to ``timeout`` seconds (None: until the
        worker has ended); True when it has. Closing twice is harmless."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)
        if self.worker is not threading.current_thread():
            self.worker.join(timeout)
        ended = not self.worker.is_alive()
        if ended:
            self.engine = None
        return ended

    # ------------------------------------------------------------------------------------------ worker
    def _take(self, timeout: float | None = None) -> _Job:
        """The next job (held ones first); queue.Empty when none comes in time or the sentinel was reached."""
        if self._held:
            job = self._held.pop(0)
        elif self._stopping:
            raise queue.Empty
        else:
            job = self._queue.get() if timeout is None else self._queue.get(timeout=timeout)
            if job is _STOP:
                self._stopping = True
                raise queue.Empty
        self._taken.append(job)
        return job

    def _next_batch(self) -> list[_Job] | None:
        """The next batch to run ([] when every job taken was cancelled or refused); None once closed and
        every job queued before close() has run."""
        try:
            first = self._take()
        except queue.Empty:  # the sentinel, and nothing held: done
            return None
        candidates = [first]
        deadline = time.perf_counter() + self.window_s
        while len(candidates) < self.max_batch * 2:
            remaining = deadline - time.perf_counter()
            try:
                candidates.append(self._take(timeout=max(remaining, 0)))
            except queue.Empty:
                break
            if remaining <= 0:
                break
        keyed = []
        for job in candidates:
            if job.future.cancelled():
                continue
            try:
                keyed.append((job, job.batch_key()))
            except Exception as e:  # a malformed job fails alone
                self._fail([job], e)
        if not keyed:
            return []
        first, first_key = keyed[0]
        batch, rest = [], []
        for job, key in keyed:
            try:
                fits = (job is first or (len(batch) < self.max_batch and key == first_key
                                         and self.engine.can_share_batch(first.req.model, job.req.model)))
            except Exception as e:  # a job the engine cannot place fails alone
                self._fail([job], e)
                continue
            (batch if fits else rest).append(job)
        self._held = rest + self._held
        # From here a job can no longer be cancelled in the queue (its row checks its Cancellation instead).
        return [job for job in batch if job.future.set_running_or_notify_cancel()]

    @staticmethod
    def _fail(jobs: list[_Job], error: BaseException) -> None:
        for job in jobs:
            if not job.future.done():
                if job.future.running() or job.future.set_running_or_notify_cancel():
                    job.future.set_exception(error)

    def _loop(self) -> None:
        while True:
            self._taken = []
            try:
                batch = self._next_batch()
            except BaseException as e:  # sorting the jobs failed: the jobs it took get the error, the worker lives
                self._held = [j for j in self._held if j not in self._taken]
                self._fail(self._taken, e)
                continue
            if batch is None:
                return
            if not batch:
                continue
            try:
                self._run(batch)
            except BaseException as e:  # every waiting request gets the error, the worker lives on
                self._fail(batch, e)
            finally:
                self.rows_generating = 0

    def _run(self, batch: list[_Job]) -> list[GenerationResult]:
        import torch
        from transformers import StoppingCriteriaList

        tok = self.engine.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        width = max(len(j.ids) for j in batch)
        input_ids = torch.tensor([[pad] * (width - len(j.ids)) + j.ids for j in batch])
        attention = torch.tensor([[0] * (width - len(j.ids)) + [1] * len(j.ids) for j in batch])
        eos = self.engine.eos_ids()
        started = time.perf_counter()
        rows = [_Row(job, tok, eos, started) for job in batch]
        self.rows_generating = len(rows)
        self.batches_run += 1  # counted as it starts: a row's caller may have its answer before generate() returns
        self.rows_run += len(batch)
        req = batch[0].req
        kwargs: dict[str, Any] = dict(input_ids=input_ids, attention_mask=attention,
                                      stopping_criteria=StoppingCriteriaList([_BatchRows(self, rows)]),
                                      max_new_tokens=max(j.req.max_tokens for j in batch), pad_token_id=pad)
        if req.temperature > 0:
            kwargs.update(do_sample=True, temperature=req.temperature, top_p=req.top_p)
        else:
            kwargs.update(do_sample=False)
        with torch.inference_mode():
            if req.seed is not None:
                torch.manual_seed(req.seed)
            self.engine.generate_rows([j.req.model for j in batch], kwargs)
        # Every row ends inside generate() (its own max_tokens is at most the call's); one still open here was ended
        # by a criterion of Transformers' own (the model's generation config): it ran out of length.
        return [row.result if row.result is not None else row.end("length") for row in rows]
