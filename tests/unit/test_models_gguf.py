"""GGUF → cached safetensors conversion, on a GGUF written from the tiny model with the `gguf` library."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from verticalize.config import ModelConfig
from verticalize.models import load_base, resolve_base
from verticalize.models.convert import SOURCE_FILE

CONTROL, NORMAL = 3, 1  # gguf TokenType values


def _permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """llama.cpp's q/k row permutation (its rotary layout); Transformers' GGUF loader undoes it."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(model_dir: Path, out: Path) -> Path:
    """Write the tiny Llama model + its byte-level BPE tokenizer as an F32 GGUF, the way llama.cpp lays it out."""
    import gguf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(model_dir)
    cfg = model.config
    w = gguf.GGUFWriter(str(out), "llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_embedding_length(cfg.hidden_size)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)

    vocab = tok.backend_tokenizer.get_vocab(with_added_tokens=True)
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    special = set(tok.all_special_tokens)
    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([CONTROL if t in special else NORMAL for t in tokens])
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    w.add_bos_token_id(tok.bos_token_id)
    w.add_eos_token_id(tok.eos_token_id)
    w.add_pad_token_id(tok.pad_token_id)
    w.add_unk_token_id(tok.unk_token_id)
    w.add_chat_template(tok.chat_template)

    sd = model.state_dict()
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"].numpy())
    w.add_tensor("output_norm.weight", sd["model.norm.weight"].numpy())
    names = {"self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate",
             "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
             "post_attention_layernorm": "ffn_norm"}
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        w.add_tensor(f"blk.{i}.attn_q.weight",
                     _permute(sd[p + "self_attn.q_proj.weight"], cfg.num_attention_heads).numpy())
        w.add_tensor(f"blk.{i}.attn_k.weight",
                     _permute(sd[p + "self_attn.k_proj.weight"], cfg.num_key_value_heads).numpy())
        for hf, gg in names.items():
            w.add_tensor(f"blk.{i}.{gg}.weight", sd[p + hf + ".weight"].numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


@pytest.fixture(scope="module")
def tiny_gguf(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tiny_model_dir, tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def test_gguf_converts_once_into_an_equivalent_safetensors_model(tiny_gguf, tiny_model_dir, tmp_path):
    cfg = ModelConfig(base=str(tiny_gguf), cache_dir=str(tmp_path / "cache"), dtype="float32")
    path = resolve_base(cfg)

    assert path.parent == tmp_path / "cache" and path.name.startswith("tiny-")
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    source = json.loads((path / SOURCE_FILE).read_text())
    assert source["gguf"] == str(tiny_gguf.resolve()) and source["saved_dtype"] == "float32"
    assert not json.loads((path / "config.json").read_text()).get("quantization_config")
    assert not list((tmp_path / "cache").glob(".tmp-*")), "temp directory left behind"
    assert (tmp_path / "cache" / ".locks" / f"{path.name}.lock").is_file()

    # Cached: a second resolution returns the same directory without converting again.
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert resolve_base(cfg) == path and (path / "model.safetensors").stat().st_mtime_ns == stamp

    converted, tok = load_base(cfg)
    original, tok0 = load_base(ModelConfig(base=str(tiny_model_dir), dtype="float32"))
    text = "The credit card annual fee is waived. 信用卡年费"
    ids = tok(text, return_tensors="pt").input_ids
    assert ids.tolist() == tok0(text, return_tensors="pt").input_ids.tolist()
    with torch.no_grad():
        torch.testing.assert_close(converted(ids).logits, original(ids).logits, atol=1e-4, rtol=1e-4)
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.eos_token == "<|im_end|>"


def test_directory_with_one_gguf_and_gguf_file_option(tiny_gguf, tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    os.symlink(tiny_gguf, folder / "model-f32.gguf")
    by_folder = resolve_base(ModelConfig(base=str(folder), cache_dir=str(tmp_path / "c")))
    by_name = resolve_base(ModelConfig(base=str(folder), gguf_file="model-f32.gguf", cache_dir=str(tmp_path / "c")))
    assert by_folder == by_name and (by_folder / "config.json").is_file()


def _resolve_in_child(args: tuple[str, str]) -> str:
    gguf_path, cache = args
    return str(resolve_base(ModelConfig(base=gguf_path, cache_dir=cache)))


def test_two_processes_racing_get_one_complete_conversion(tiny_gguf, tmp_path):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    cache = tmp_path / "race"
    with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as pool:
        paths = list(pool.map(_resolve_in_child, [(str(tiny_gguf), str(cache))] * 2))
    assert paths[0] == paths[1]
    entries = sorted(p.name for p in cache.iterdir() if not p.name.startswith("."))
    assert entries == [Path(paths[0]).name], f"expected one cache entry, found {entries}"
    assert (Path(paths[0]) / SOURCE_FILE).is_file()


def test_truncated_gguf_gives_a_clear_error_and_leaves_no_cache_entry(tiny_gguf, tmp_path):
    from typer.testing import CliRunner

    from verticalize.cli import app
    from verticalize.models import ModelConversionError

    broken = tmp_path / "broken.gguf"
    broken.write_bytes(tiny_gguf.read_bytes()[:5000])
    cache = tmp_path / "cache"
    with pytest.raises(ModelConversionError, match="cannot convert GGUF file .*broken.gguf"):
        resolve_base(ModelConfig(base=str(broken), cache_dir=str(cache)))
    assert [p.name for p in cache.iterdir()] == [".locks"]  # no half-written model, no temp directory
    result = CliRunner().invoke(app, ["models", "prepare", "--set", f"model.base={broken}",
                                      "--set", f"model.cache_dir={cache}"])
    assert result.exit_code == 2 and "cannot convert GGUF file" in result.output
