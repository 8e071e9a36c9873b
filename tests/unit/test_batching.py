"""The batch worker: close() ends it cleanly (queued requests first), and no failing job or batch kills it."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from verticalize.batching import BatchScheduler
from verticalize.engine import EmbeddedEngine, EngineClosedError, GenerationRequest


class FakeTokenizer:
    pad_token_id = 0
    eos_token_id = 1

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict:
        return {"input_ids": [ord(c) for c in text]}

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(chr(96 + i) for i in ids if i > 1)


class FakeModel:
    """Generates tokens 2, 3, 4, ... ("b", "c", "d", ...) until the stopping criterion ends every row."""

    generation_config = SimpleNamespace(eos_token_id=1)

    def __init__(self, fail_when: str | None = None):
        self.fail_when = fail_when  # a prompt that makes generate() raise

    def eval(self) -> "FakeModel":
        return self

    def generate(self, input_ids, stopping_criteria, max_new_tokens, **kwargs):
        import torch

        if self.fail_when is not None and any(row[-len(self.fail_when):] == [ord(c) for c in self.fail_when]
                                              for row in input_ids.tolist()):
            raise RuntimeError("generate failed")
        ids = input_ids
        for step in range(max_new_tokens):
            ids = torch.cat([ids, torch.full((ids.shape[0], 1), 2 + step)], dim=1)
            if bool(stopping_criteria[0](ids, None).all()):
                break
        return ids


def _engine(**kw) -> EmbeddedEngine:
    return EmbeddedEngine(FakeModel(**kw), FakeTokenizer(), "base", max_batch=4, batch_window_s=0.01)


def _req(prompt: str = "hi", max_tokens: int = 3, **kw) -> GenerationRequest:
    return GenerationRequest(model="base", prompt=prompt, max_tokens=max_tokens, temperature=0, **kw)


def test_close_ends_the_worker_and_a_later_request_is_refused() -> None:
    engine = _engine()
    assert engine.generate(_req()).text == "bcd"
    worker = engine.scheduler.worker
    assert worker.is_alive()
    engine.close(timeout=10)
    assert not worker.is_alive() and engine.model is None and engine.scheduler.engine is None
    with pytest.raises(EngineClosedError, match="closed"):
        engine.generate(_req())
    with pytest.raises(EngineClosedError):  # the scheduler itself refuses too
        engine.scheduler.submit(_req(), [1, 2], None)
    engine.close()  # twice: harmless


def test_requests_submitted_before_close_finish_first() -> None:
    engine = _engine()
    gate = threading.Event()
    real = engine.generate_rows

    def slow(models, kwargs):
        gate.wait(10)
        return real(models, kwargs)

    engine.generate_rows = slow  # type: ignore[method-assign]
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(engine.generate(_req()))) for _ in range(3)]
    for t in threads:
        t.start()
    deadline = time.time() + 10
    while engine.scheduler.active < 3 and time.time() < deadline:
        time.sleep(0.01)
    closer = threading.Thread(target=engine.close)
    closer.start()
    time.sleep(0.05)
    assert closer.is_alive()  # close() waits for the queued requests
    gate.set()
    closer.join(10)
    for t in threads:
        t.join(10)
    assert [r.text for r in results] == ["bcd"] * 3
    assert not engine.scheduler.worker.is_alive()


def test_a_malformed_job_fails_alone_and_the_worker_lives_on() -> None:
    engine = _engine()
    scheduler = engine.scheduler
    with pytest.raises(AttributeError):  # no .seed: batch_key() raises while the worker sorts the queue
        scheduler.submit(SimpleNamespace(model="base"), [5], None)
    assert scheduler.worker.is_alive()
    assert engine.generate(_req()).text == "bcd"


class FlakyScheduler(BatchScheduler):
    """Its first sorting pass takes a job and then raises, outside the per-job guards."""

    failed = False

    def _next_batch(self):
        if not self.failed:
            self.failed = True
            self._take()
            raise ValueError("sorting failed")
        return super()._next_batch()


def test_a_failure_while_sorting_the_queue_or_generating_reaches_its_jobs_only() -> None:
    engine = _engine(fail_when="boom")
    engine.scheduler.close(timeout=5)
    engine.scheduler = scheduler = FlakyScheduler(engine, max_batch=4)
    with pytest.raises(ValueError, match="sorting failed"):
        engine.generate(_req())
    assert scheduler.worker.is_alive()
    with pytest.raises(RuntimeError, match="generate failed"):  # a batch whose generate() raises
        engine.generate(_req("boom"))
    assert scheduler.worker.is_alive()
    assert engine.generate(_req(max_tokens=2)).text == "bc"
    engine.close(timeout=10)
    assert not scheduler.worker.is_alive()


def test_scheduler_close_without_engine_work() -> None:
    scheduler = BatchScheduler(SimpleNamespace(), max_batch=2)
    assert scheduler.close(timeout=5) is True and not scheduler.worker.is_alive()
