"""Engines: what turns a prompt into tokens. The HTTP layer only sees the `Engine` interface.

`EmbeddedEngine` runs Transformers + PEFT in-process with every adapter of a run loaded at once: one base model in
memory, adapters switched per request (LoRA-family adapters share one forward; the base is reached through
PEFT's `disable_adapter`). Generation runs in worker threads; torch releases the GIL in its kernels.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

BASE_MODEL_ALIAS = "base"


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
    finish_reason: str               # "stop" | "length"
    time_to_first_token: float | None = None
    inter_token_latencies: list[float] = field(default_factory=list)


class Engine(Protocol):
    base_name: str

    def model_names(self) -> list[str]: ...

    def count_prompt_tokens(self, req: GenerationRequest) -> int: ...

    def generate(self, req: GenerationRequest, on_text: Callable[[str], None] | None = None) -> GenerationResult:
        """Generate; ``on_text`` receives text pieces as they are decoded (streaming)."""
        ...


def discover_adapters(adapters_dir: Path) -> dict[str, Path]:
    """Adapter name → directory, for every PEFT adapter the training stage wrote (method=full is skipped)."""
    found: dict[str, Path] = {}
    if not adapters_dir.is_dir():
        return found
    for d in sorted(adapters_dir.iterdir()):
        if (d / "adapter_config.json").is_file():
            found[d.name] = d
    return found


def adapter_info(adapter_dir: Path) -> dict[str, Any]:
    info = adapter_dir / "verticalize_adapter.json"
    return json.loads(info.read_text(encoding="utf-8")) if info.is_file() else {}


class _StopOnText:
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


class EmbeddedEngine:
    """Transformers + PEFT in-process. One lock per model: a PEFT model has one active adapter at a time."""

    def __init__(self, model: Any, tokenizer: Any, base_name: str, adapters: dict[str, Path] | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.base_name = base_name
        self.adapters: list[str] = []
        self._lock = threading.Lock()
        for name, path in (adapters or {}).items():
            self._load_adapter(name, path)
        self.model.eval()

    @classmethod
    def from_run(cls, model_cfg: Any, adapters_dir: Path, base_name: str | None = None) -> "EmbeddedEngine":
        from verticalize.models import load_base

        model, tokenizer = load_base(model_cfg)
        return cls(model, tokenizer, base_name or Path(model_cfg.base).name, discover_adapters(adapters_dir))

    def _load_adapter(self, name: str, path: Path) -> None:
        from peft import PeftModel

        if not self.adapters:
            self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=name)
        else:
            self.model.load_adapter(str(path), adapter_name=name)
        self.adapters.append(name)

    def model_names(self) -> list[str]:
        return [self.base_name, *self.adapters]

    def _prompt_ids(self, req: GenerationRequest) -> list[int]:
        if req.messages is not None:
            ids = self.tokenizer.apply_chat_template(req.messages, add_generation_prompt=True, tokenize=True,
                                                     return_dict=False)
            return list(ids)
        return self.tokenizer(req.prompt or "", add_special_tokens=True)["input_ids"]

    def count_prompt_tokens(self, req: GenerationRequest) -> int:
        return len(self._prompt_ids(req))

    def generate(self, req: GenerationRequest, on_text: Callable[[str], None] | None = None) -> GenerationResult:
        import torch
        from transformers import TextIteratorStreamer

        ids = self._prompt_ids(req)
        input_ids = torch.tensor([ids])
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs: dict[str, Any] = dict(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                      max_new_tokens=req.max_tokens, streamer=streamer,
                                      pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        if req.temperature > 0:
            kwargs.update(do_sample=True, temperature=req.temperature, top_p=req.top_p)
        else:
            kwargs.update(do_sample=False)
        output: dict[str, Any] = {}

        def work() -> None:
            try:
                with torch.inference_mode():
                    if req.seed is not None:
                        torch.manual_seed(req.seed)
                    output["ids"] = self._generate_with_adapter(req.model, kwargs)
            except BaseException as e:  # surfaced to the caller below
                output["error"] = e
                streamer.end()

        cutter = _StopOnText(req.stop or [], on_text)
        started = time.perf_counter()
        ttft: float | None = None
        itl: list[float] = []
        last = started
        with self._lock:
            worker = threading.Thread(target=work, daemon=True)
            worker.start()
            for piece in streamer:
                t = time.perf_counter()
                if piece:
                    if ttft is None:
                        ttft = t - started
                    else:
                        itl.append(t - last)
                    last = t
                    cutter.feed(piece)
            worker.join()
        if "error" in output:
            raise output["error"]
        cutter.finish()
        new_tokens = len(output["ids"][0]) - len(ids)
        finish = "stop" if cutter.stopped or new_tokens < req.max_tokens else "length"
        return GenerationResult(cutter.text, len(ids), new_tokens, finish, ttft, itl)

    def _generate_with_adapter(self, name: str, kwargs: dict[str, Any]) -> Any:
        if name in self.adapters:
            self.model.set_adapter(name)
            return self.model.generate(**kwargs)
        if self.adapters:  # the base model through the PEFT wrapper
            with self.model.disable_adapter():
                return self.model.generate(**kwargs)
        return self.model.generate(**kwargs)
