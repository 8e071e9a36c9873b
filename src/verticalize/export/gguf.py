"""GGUF export: a base model with one adapter merged in (models/gguf_writer.py writes the file), validated by
Transformers' GGUF reader and, when installed, by llama.cpp."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from verticalize.models import resolve_base
# permute_for_gguf and source_gguf_of are re-exported: the tests and the gateway name them from here.
from verticalize.models.gguf_writer import (GGUFExportError, merged_model, permute_for_gguf,  # noqa: F401
                                            source_gguf_of, write_gguf)

GGUF_NAME = "model.gguf"  # export_dir("gguf")/<name>/model.gguf: what serve.engine=llamacpp serves as <name>


def read_gguf_summary(path: Path) -> dict[str, Any]:
    """What a GGUF holds, read back with gguf.GGUFReader: tensor count, shapes by name, key metadata."""
    import gguf

    reader = gguf.GGUFReader(path)

    def value(key: str) -> Any:
        field = reader.fields.get(key)
        return field.contents() if field is not None else None

    tokens = reader.fields.get("tokenizer.ggml.tokens")
    return {"tensors": len(reader.tensors),
            "shapes": {t.name: [int(x) for x in t.shape] for t in reader.tensors},
            "types": {t.name: t.tensor_type.name for t in reader.tensors},
            "architecture": value("general.architecture"), "block_count": value("llama.block_count"),
            "embedding_length": value("llama.embedding_length"), "tokenizer_model": value("tokenizer.ggml.model"),
            "n_tokens": len(tokens.data) if tokens is not None else 0,
            "eos_token_id": value("tokenizer.ggml.eos_token_id"), "chat_template": value("tokenizer.chat_template")}


def check_against_model(summary: dict[str, Any], model: Any) -> list[str]:
    """Problems found comparing a GGUF summary with the model it was written from (empty: consistent)."""
    cfg = model.config
    problems = []
    if summary["block_count"] != cfg.num_hidden_layers:
        problems.append(f"block_count {summary['block_count']} != {cfg.num_hidden_layers}")
    if summary["embedding_length"] != cfg.hidden_size:
        problems.append(f"embedding_length {summary['embedding_length']} != {cfg.hidden_size}")
    expected = 2 + 9 * cfg.num_hidden_layers + (0 if getattr(cfg, "tie_word_embeddings", False) else 1)
    if summary["tensors"] != expected:
        problems.append(f"{summary['tensors']} tensors, expected {expected}")
    emb = summary["shapes"].get("token_embd.weight")
    if emb != [cfg.hidden_size, cfg.vocab_size]:
        problems.append(f"token_embd.weight shape {emb}, expected {[cfg.hidden_size, cfg.vocab_size]}")
    if summary["n_tokens"] != cfg.vocab_size:
        problems.append(f"{summary['n_tokens']} tokens in the vocabulary, expected {cfg.vocab_size}")
    return problems


# ----------------------------------------------------------------------------------------------- export + checks
PROBE_PROMPT = [{"role": "user", "content": "What is the annual fee of the card?"}]


def export_gguf(model_cfg: Any, adapter_dir: Path | None, out_dir: Path, outtype: str = "f16",
                name: str | None = None, check_tokens: int = 8) -> dict[str, Any]:
    """Merge ``adapter_dir`` (None: the bare base) into the base, write ``out_dir/model.gguf`` and validate it.

    Validation: gguf.GGUFReader always (tensor count and shapes, metadata); Transformers' GGUF reader always
    (logits within the type's tolerance, and for f32/f16 the same greedy tokens as the merged model, token for
    token); llama-cpp-python when importable (the prompt tokenised the same way, the same greedy tokens). A
    mismatch raises `GGUFExportError`.
    """
    base_dir = resolve_base(model_cfg)
    model, tokenizer = merged_model(model_cfg, adapter_dir)
    source = source_gguf_of(base_dir)
    out_path = out_dir / GGUF_NAME
    result = write_gguf(model, base_dir, out_path, outtype, source_gguf=source, name=name)
    summary = read_gguf_summary(out_path)
    problems = check_against_model(summary, model)
    if problems:
        raise GGUFExportError(f"{out_path} does not match the model: " + "; ".join(problems))
    result.update(metadata_from=str(source) if source else str(base_dir / "tokenizer.json"),
                  chat_template=summary["chat_template"], eos_token_id=summary["eos_token_id"],
                  eos_token=tokenizer.convert_ids_to_tokens(int(summary["eos_token_id"]))
                  if summary["eos_token_id"] is not None else None)
    result["transformers_check"] = compare_with_transformers(out_path, model, tokenizer, outtype, check_tokens)
    result["llama_cpp_check"] = compare_with_llamacpp(out_path, model, tokenizer, check_tokens, outtype)
    return result


# Largest relative logit difference accepted on read-back: a wrong tensor layout gives differences of order 1.
_READBACK_TOLERANCE = {"f32": 1e-3, "f16": 2e-2, "q8_0": 1e-1}


# Types whose greedy tokens must equal the merged model's token for token; q8_0's rounding may move a near-tie.
_EXACT_TOKEN_TYPES = ("f32", "f16")


def compare_with_transformers(gguf_path: Path, model: Any, tokenizer: Any, outtype: str,
                              n_tokens: int = 8) -> dict[str, Any]:
    """Load the GGUF back with Transformers' GGUF reader; compare logits and greedy tokens with the merged model.

    A logit difference beyond the type's tolerance fails; so does any greedy token that differs for f32/f16.
    """
    import torch
    from transformers import AutoModelForCausalLM

    ids = tokenizer.apply_chat_template(PROBE_PROMPT, add_generation_prompt=True, tokenize=True, return_dict=False)
    probe = torch.tensor([list(ids)])
    reloaded = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                    dtype=torch.float32)
    with torch.inference_mode():
        expected = model(probe).logits.float()
        got = reloaded(probe).logits.float()
    rel = float((got - expected).abs().max() / expected.abs().max().clamp_min(1e-6))
    if rel > _READBACK_TOLERANCE[outtype]:
        raise GGUFExportError(f"{gguf_path} read back by Transformers differs from the merged model "
                              f"(relative logit difference {rel:.3g} > {_READBACK_TOLERANCE[outtype]})")
    _, want = greedy_reference(model, tokenizer, n_tokens)
    _, have = greedy_reference(reloaded, tokenizer, n_tokens)
    matching = _matching_prefix(have, want)
    if outtype in _EXACT_TOKEN_TYPES and have != want:
        raise GGUFExportError(f"{gguf_path} read back by Transformers generates other tokens than the merged model "
                              f"from token {matching} on: {have} vs {want}")
    return {"relative_max_logit_diff": rel, "greedy_tokens": len(want), "matching_prefix": matching,
            "same_tokens": have == want}


def _matching_prefix(got: list[int], expected: list[int]) -> int:
    return next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))


def greedy_reference(model: Any, tokenizer: Any, n_tokens: int) -> tuple[list[int], list[int]]:
    """(prompt ids, greedy continuation ids) from Transformers, the reference llama.cpp must reproduce."""
    import torch

    ids = list(tokenizer.apply_chat_template(PROBE_PROMPT, add_generation_prompt=True, tokenize=True,
                                             return_dict=False))
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=n_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    return ids, out[0, len(ids):].tolist()


def compare_with_llamacpp(gguf_path: Path, model: Any, tokenizer: Any, n_tokens: int = 8,
                          outtype: str = "f16") -> dict[str, Any]:
    """Load the GGUF with llama-cpp-python and compare tokenisation and greedy tokens with Transformers (a
    difference fails for f32/f16)."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return {"skipped": "llama-cpp-python is not installed (optional extra: pip install 'verticalize[llamacpp]')"}
    ids, expected = greedy_reference(model, tokenizer, n_tokens)
    llm = Llama(model_path=str(gguf_path), n_ctx=max(256, len(ids) + n_tokens + 8), n_threads=None,
                verbose=False, seed=0)
    text = tokenizer.decode(ids)
    llama_ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
    got: list[int] = []
    for token in llm.generate(ids, temp=0.0, top_k=1, top_p=1.0, repeat_penalty=1.0, reset=True):
        got.append(int(token))
        if len(got) >= len(expected) or token == llm.token_eos():
            break
    matching = _matching_prefix(got, expected)
    if outtype in _EXACT_TOKEN_TYPES and (list(llama_ids) != ids or got != expected):
        raise GGUFExportError(f"{gguf_path} in llama.cpp does not reproduce Transformers: tokenisation "
                              f"{'equal' if list(llama_ids) == ids else 'differs'}, greedy tokens {got} vs {expected}")
    return {"prompt_tokens": len(ids), "same_tokenization": list(llama_ids) == ids, "transformers": expected,
            "llama_cpp": got, "matching_prefix": matching}
