"""Writing a Transformers Llama model as one GGUF file with the `gguf` package: what `export --to gguf` ships
for llama.cpp/Ollama and what the OpenVINO engine (openvino_engine.py) serves.

Metadata comes from the base's own GGUF when the base was converted from one (the embedded SmolLM2): every
key-value pair (tokenizer, chat template, hyper-parameters) is copied, so llama.cpp tokenises exactly as with the
original file. A base that is a plain Transformers directory gets its metadata built from `config.json` and
`tokenizer.json` (byte-level BPE, the "gpt2" tokenizer model in GGUF terms).

Tensors are named through gguf's tensor-name map. llama.cpp's Llama graph applies RoPE to interleaved pairs while
Transformers rotates halves, so q_proj/k_proj rows are permuted on the way out (as llama.cpp's own converter
does; Transformers' GGUF loader undoes the same permutation on the way in).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from verticalize.errors import UserError
from verticalize.models.convert import SOURCE_FILE

SUPPORTED_ARCHS = {"llama"}  # the permutation and hyper-parameter names below are Llama's (SmolLM2 is one)
_OUT_TYPES = {"f32": ("F32", "ALL_F32"), "f16": ("F16", "MOSTLY_F16"), "q8_0": ("Q8_0", "MOSTLY_Q8_0")}
# Keys the writer sets itself or that describe the source file's own encoding, not the model.
_SKIP_KEYS = ("GGUF.", "general.architecture", "general.file_type", "general.quantization_version")


# Soft prompts: nothing to fold into the weights.
UNMERGEABLE_PEFT_TYPES = ("PREFIX_TUNING", "PROMPT_TUNING", "P_TUNING")


class GGUFExportError(UserError, ValueError):
    """The model cannot be written as GGUF (architecture, adapter type); the message says why."""


def permute_for_gguf(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Transformers' rotate-half row order → llama.cpp's interleaved-pair order, per attention head."""
    rows = weight.shape[0]
    return (weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def write_gguf(model: Any, tokenizer_dir: Path, out_path: Path, outtype: str = "f16",
               source_gguf: Path | None = None, name: str | None = None) -> dict[str, Any]:
    """Write ``model`` (a Transformers LlamaForCausalLM, adapters already merged) as one GGUF file."""
    import gguf

    cfg = model.config
    arch = getattr(cfg, "model_type", "")
    if arch not in SUPPORTED_ARCHS:
        raise GGUFExportError(f"GGUF export supports {', '.join(sorted(SUPPORTED_ARCHS))} models; this base is "
                              f"'{arch}'. Export merged weights (--to merged) and convert them with llama.cpp's "
                              f"convert_hf_to_gguf.py instead.")
    if outtype not in _OUT_TYPES:
        raise GGUFExportError(f"unknown GGUF type '{outtype}'; choose one of {', '.join(_OUT_TYPES)}")
    qtype_name, ftype_name = _OUT_TYPES[outtype]
    qtype = gguf.GGMLQuantizationType[qtype_name]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(out_path), arch)
    if source_gguf is not None:
        copied = _copy_metadata(writer, Path(source_gguf), skip=("general.name",) if name else ())
    else:
        copied = 0
        _write_hparams(writer, cfg)
        _write_tokenizer(writer, Path(tokenizer_dir), cfg.vocab_size)
    if name:
        writer.add_name(name)
    writer.add_file_type(int(gguf.LlamaFileType[ftype_name]))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    n_tensors = _write_tensors(writer, model, qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"path": str(out_path), "type": outtype, "tensors": n_tensors, "metadata_copied": copied,
            "bytes": out_path.stat().st_size}


def _copy_metadata(writer: Any, source: Path, skip: tuple[str, ...] = ()) -> int:
    import gguf

    reader = gguf.GGUFReader(source)
    arch = reader.fields["general.architecture"].contents()
    if arch not in SUPPORTED_ARCHS:
        raise GGUFExportError(f"source GGUF {source} is '{arch}'; only {sorted(SUPPORTED_ARCHS)} is supported")
    copied = 0
    for key, field in reader.fields.items():
        if key.startswith(_SKIP_KEYS) or key in skip:
            continue
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub_type=sub_type)
        copied += 1
    return copied


def _rope_theta(cfg: Any) -> float:
    params = getattr(cfg, "rope_parameters", None) or {}
    return float(params.get("rope_theta") or getattr(cfg, "rope_theta", None) or 10000.0)


def _write_hparams(writer: Any, cfg: Any) -> None:
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_freq_base(_rope_theta(cfg))
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(cfg.vocab_size)


def _write_tokenizer(writer: Any, tokenizer_dir: Path, vocab_size: int) -> None:
    """Byte-level BPE from tokenizer.json → GGUF's "gpt2" tokenizer (tokens, types, merges, special ids, template)."""
    import gguf

    tok_file = tokenizer_dir / "tokenizer.json"
    if not tok_file.is_file():
        raise GGUFExportError(f"{tokenizer_dir} has no tokenizer.json; GGUF export needs a fast (BPE) tokenizer")
    spec = json.loads(tok_file.read_text(encoding="utf-8"))
    if (spec.get("model") or {}).get("type") != "BPE":
        raise GGUFExportError(f"{tok_file}: only byte-level BPE tokenizers are exported to GGUF "
                              f"(got {(spec.get('model') or {}).get('type')})")
    vocab: dict[str, int] = dict(spec["model"]["vocab"])
    special = {t["content"] for t in spec.get("added_tokens", []) if t.get("special")}
    for t in spec.get("added_tokens", []):
        vocab[t["content"]] = t["id"]
    by_id = {i: t for t, i in vocab.items()}
    tokens, types = [], []
    for i in range(vocab_size):  # embedding rows beyond the tokenizer are padding tokens, as llama.cpp expects
        tok = by_id.get(i)
        if tok is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(tok)
            types.append(gguf.TokenType.CONTROL if tok in special else gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")  # the GPT-2 split regex: what a default ByteLevel pre-tokenizer uses
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special_vocab = gguf.SpecialVocab(tokenizer_dir, load_merges=True, n_vocab=vocab_size)
    special_vocab.add_to_gguf(writer, quiet=True)
    tok_cfg_file = tokenizer_dir / "tokenizer_config.json"
    tok_cfg = json.loads(tok_cfg_file.read_text(encoding="utf-8")) if tok_cfg_file.is_file() else {}
    if "bos" not in special_vocab.add_special_token:
        writer.add_add_bos_token(bool(tok_cfg.get("add_bos_token", False)))
    if special_vocab.chat_template is None and (tokenizer_dir / "chat_template.jinja").is_file():
        writer.add_chat_template((tokenizer_dir / "chat_template.jinja").read_text(encoding="utf-8"))


def _write_tensors(writer: Any, model: Any, qtype: Any) -> int:
    import gguf
    import torch

    cfg = model.config
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    n_head = cfg.num_attention_heads
    n_kv = getattr(cfg, "num_key_value_heads", None) or n_head
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    count = 0
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue  # llama.cpp reuses token_embd when output.weight is absent
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue
        gguf_name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise GGUFExportError(f"no GGUF name for tensor '{hf_name}' (unmerged adapter weights?)")
        data = tensor.detach().to(torch.float32).cpu().numpy()
        if hf_name.endswith("q_proj.weight"):
            data = permute_for_gguf(data, n_head)
        elif hf_name.endswith("k_proj.weight"):
            data = permute_for_gguf(data, n_kv)
        if data.ndim == 1 or qtype == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(gguf_name, np.ascontiguousarray(data, dtype=np.float32))
        elif qtype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(gguf_name, data.astype(np.float16))
        else:
            writer.add_tensor(gguf_name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        count += 1
    return count



def source_gguf_of(base_dir: Path) -> Path | None:
    """The GGUF a cached base directory was converted from (models/convert.py records it), if still there."""
    info = base_dir / SOURCE_FILE
    if not info.is_file():
        return None
    path = Path(json.loads(info.read_text(encoding="utf-8")).get("gguf", ""))
    return path if path.suffix == ".gguf" and path.is_file() else None


def merged_model(model_cfg: Any, adapter_dir: Path | None) -> tuple[Any, Any]:
    """(model, tokenizer) in float32 with ``adapter_dir`` (None: the bare base) merged into the weights, its
    layered parents first: one plain Transformers model, ready for `write_gguf`. Prefix and prompt tuning have no
    weights to merge and are refused."""
    import torch

    from verticalize.models.loading import load_adapter, load_base

    if adapter_dir is None:
        model, tokenizer = load_base(model_cfg, dtype=torch.float32)
        return model.eval(), tokenizer
    model, tokenizer = load_adapter(model_cfg, adapter_dir, dtype=torch.float32)
    if hasattr(model, "peft_config"):
        peft_type = str(getattr(model.peft_config[model.active_adapter], "peft_type", "")).split(".")[-1]
        if peft_type in UNMERGEABLE_PEFT_TYPES or not hasattr(model, "merge_and_unload"):
            raise GGUFExportError(f"adapter {Path(adapter_dir).name} is {peft_type}: it has no weights to merge, so "
                                  "it cannot be written as GGUF; serve it with the embedded engine")
        model = model.merge_and_unload()
    return model.eval(), tokenizer
