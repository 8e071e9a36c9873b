"""The embedded engine batches concurrent requests, mixing LoRA adapters and the base in one forward pass,
and each row gets exactly what it would have got alone."""

from __future__ import annotations

import concurrent.futures as cf
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import make_lora_adapter
from verticalize.engine import EmbeddedEngine, GenerationRequest


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> EmbeddedEngine:
    adapters = tmp_path_factory.mktemp("adapters")
    a = make_lora_adapter(tiny_model_dir, adapters / "a", 1)
    b = make_lora_adapter(tiny_model_dir, adapters / "b", 2)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    return EmbeddedEngine(model, tokenizer, "tiny", {"a": a, "b": b}, max_batch=8, batch_window_s=0.2)


def _req(model: str, text: str, max_tokens: int = 8, **kw) -> GenerationRequest:
    return GenerationRequest(model=model, messages=[{"role": "user", "content": text}], max_tokens=max_tokens,
                             temperature=0, **kw)


def test_concurrent_mixed_adapters_match_one_at_a_time(engine: EmbeddedEngine):
    requests = [_req("a", "annual fee?"), _req("b", "annual fee?"), _req("tiny", "restart the ledger"),
                _req("a", "a longer question about the loan rules", max_tokens=3)]
    alone = [engine.generate(r) for r in requests]
    before = engine.scheduler.batches_run
    with cf.ThreadPoolExecutor(len(requests)) as pool:
        together = list(pool.map(engine.generate, requests))
    assert engine.scheduler.batches_run - before < len(requests)  # at least two rows shared a forward pass
    assert engine.mixed_batches
    for one, batched in zip(alone, together):
        assert batched.text == one.text
        assert batched.completion_tokens == one.completion_tokens
        assert batched.finish_reason == one.finish_reason
    assert together[3].completion_tokens <= 3
    assert len({r.text for r in together[:3]}) >= 2  # the adapters really differ per row


def test_streamed_pieces_add_up_and_stop_strings_cut(engine: EmbeddedEngine):
    pieces: list[str] = []
    full = engine.generate(_req("b", "hello", max_tokens=12))
    streamed = engine.generate(_req("b", "hello", max_tokens=12), on_text=pieces.append)
    assert "".join(pieces) == streamed.text == full.text
    if len(full.text) > 3:
        stop = full.text[2:4]
        cut = engine.generate(_req("b", "hello", max_tokens=12, stop=[stop]))
        assert cut.text == full.text[: full.text.index(stop)] and cut.finish_reason == "stop"
