"""Loading the models of the ladder once and generating answers in batches.

The base model is loaded once; the trained adapter is attached with PEFT and switched off (``disable_adapter``)
for the base-model rungs, so the ladder never pays for a second copy of the weights.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from rich.console import Console
from rich.progress import track

from verticalize.config import Config

_CONSOLE = Console(stderr=True)


@dataclass
class AdapterInfo:
    name: str
    path: Path
    method: str
    meta: dict[str, Any]
    lineage: list["AdapterInfo"]  # parents first, this adapter last


def find_adapters(adapters_dir: Path) -> tuple[AdapterInfo | None, AdapterInfo | None]:
    """(the last PEFT stage, the last full fine-tune stage) under RUN/train/adapters/, each with its lineage."""
    infos: dict[str, AdapterInfo] = {}
    if adapters_dir.is_dir():
        for meta_path in sorted(adapters_dir.glob("*/verticalize_adapter.json")):
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                continue
            if meta.get("complete") is False:  # an interrupted stage is not a result
                continue
            name = meta.get("name") or meta_path.parent.name
            infos[name] = AdapterInfo(name, meta_path.parent, meta.get("method", "lora"), meta, [])
    peft = {n: i for n, i in infos.items() if i.method != "full"}
    full = {n: i for n, i in infos.items() if i.method == "full"}
    return _last_stage(peft), _last_stage(full)


def _last_stage(infos: dict[str, AdapterInfo]) -> AdapterInfo | None:
    parents = {i.meta.get("parent") for i in infos.values()}
    leaves = [i for n, i in infos.items() if n not in parents]
    if not leaves:
        return None
    # Several leaves: the most recently trained one is the run's final stage.
    leaf = max(leaves, key=lambda i: (i.path / "verticalize_adapter.json").stat().st_mtime)
    chain, node, seen = [], leaf, set()
    while node is not None and node.name not in seen:
        seen.add(node.name)
        chain.insert(0, node)
        node = infos.get(node.meta.get("parent") or "")
    leaf.lineage = chain
    return leaf


class LadderModels:
    """The base model (optionally wrapped with the trained adapter) and the full fine-tune, loaded lazily."""

    def __init__(self, cfg: Config, adapter: AdapterInfo | None, full: AdapterInfo | None):
        from verticalize.models import load_base

        self.cfg, self.adapter, self.full = cfg, adapter, full
        self.model, self.tokenizer = load_base(cfg.model)
        _prepare_tokenizer(self.tokenizer)
        if adapter is not None:
            self.model = _attach(self.model, adapter)
        self.model.eval()
        self._full_model: Any = None

    def count_tokens(self, conversation: list[dict[str, str]]) -> int:
        text = self.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    @contextlib.contextmanager
    def for_rung(self, rung: str) -> Iterator[Any]:
        if rung == "full":
            if self._full_model is None:
                from transformers import AutoModelForCausalLM
                self._full_model = AutoModelForCausalLM.from_pretrained(
                    self.full.path, dtype="auto", trust_remote_code=self.cfg.model.trust_remote_code).eval()
            yield self._full_model
        elif rung.startswith("peft"):
            if self.adapter is None:
                raise RuntimeError("no trained adapter")
            yield self.model
        elif self.adapter is not None and self.model.active_peft_config.is_prompt_learning:
            # Prefix/prompt tuning leave the base modules untouched: the unwrapped model is the base.
            yield self.model.get_base_model()
        elif self.adapter is not None:
            with self.model.disable_adapter():  # LoRA-type layers are injected: switch them off
                yield self.model
        else:
            yield self.model


def _prepare_tokenizer(tokenizer: Any) -> None:
    # Left padding keeps every prompt's last token at the end, which batched decoder-only generation needs;
    # left truncation keeps the question when a long context must be cut.
    tokenizer.padding_side = "left"
    tokenizer.truncation_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def _attach(model: Any, adapter: AdapterInfo) -> Any:
    from peft import PeftModel

    # A layered stage starts from its parent's weights and is saved whole, so the last stage alone is the
    # run's adapter; its parents are not stacked on top of it.
    return PeftModel.from_pretrained(model, str(adapter.path), adapter_name=adapter.name)


@dataclass
class Generated:
    text: str
    new_tokens: int
    latency_s: float
    batch: int


def generate_answers(model: Any, tokenizer: Any, conversations: Sequence[list[dict[str, str]]], *,
                     max_new_tokens: int, max_seq_len: int, batch_size: int,
                     label: str = "generating") -> list[Generated]:
    """Greedy answers in the input order. Prompts are batched by length (less padding); each answer's latency
    is its batch's wall time, i.e. what a caller of that batch waited."""
    import torch

    prompts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results: list[Generated | None] = [None] * len(prompts)
    eos = tokenizer.eos_token_id
    max_prompt = max(8, max_seq_len - max_new_tokens)
    starts = range(0, len(order), batch_size)
    for start in track(starts, description=f"{label} ({len(prompts)} answers)", console=_CONSOLE,
                       disable=not prompts):
        idx = order[start:start + batch_size]
        enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True, truncation=True,
                        max_length=max_prompt, add_special_tokens=False)
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=eos)
        elapsed = time.perf_counter() - t0
        new = out[:, enc["input_ids"].shape[1]:]
        for row, i in zip(new.tolist(), idx):
            n = len(row)
            if eos in row:
                n = row.index(eos) + 1
            elif tokenizer.pad_token_id in row:
                n = row.index(tokenizer.pad_token_id)
            text = _decode_whole_chars(tokenizer, row[:n], cut=n == max_new_tokens)
            results[i] = Generated(text=text, new_tokens=n, latency_s=elapsed, batch=start)
    return [r for r in results if r is not None]


def _decode_whole_chars(tokenizer: Any, ids: list[int], cut: bool) -> str:
    """Decoded answer; when max_new_tokens cut it, up to three trailing tokens holding half a multi-byte
    character (decoded as U+FFFD) are dropped, but real text is never thrown away."""
    text = tokenizer.decode(ids, skip_special_tokens=True).strip()
    if cut and text.endswith("\ufffd"):
        for drop in range(1, min(3, len(ids) - 1) + 1):
            shorter = tokenizer.decode(ids[:-drop], skip_special_tokens=True).strip()
            if not shorter.endswith("\ufffd"):
                return shorter
    return text
