"""Model architecture numbers for the estimator: from an explicit dict, the model catalog, or a config.json.

Only what memory and FLOPs depend on is kept: layer count, widths, heads, vocabulary, tied embeddings and whether
the MLP is gated (SwiGLU: gate, up, down) or plain (Falcon: two matrices).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from verticalize.config import ConfigError, ModelConfig
from verticalize.models.catalog import get_spec


class UnknownArchitectureError(ConfigError):
    """The estimator cannot find the model's architecture; the message says how to provide it."""


@dataclass(frozen=True)
class Arch:
    name: str
    num_params: int
    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    vocab_size: int
    tie_embeddings: bool
    gated_mlp: bool = True
    source: str = "given"       # where the numbers came from: given, catalog, config.json, num_params

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def matmul_params(self) -> int:
        """Parameters that take part in a matrix product per token (the input embedding is a lookup)."""
        return self.num_params - (0 if self.tie_embeddings else self.embedding_params)

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of each linear layer in one decoder layer, by module name.

        Llama/Qwen/Mistral names and Falcon's fused names both appear so any catalog target resolves.
        """
        h, i, kv = self.hidden_size, self.intermediate_size, self.kv_dim
        return {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h),
                "query_key_value": (h, h + 2 * kv), "dense": (h, h),
                "dense_h_to_4h": (h, i), "dense_4h_to_h": (i, h)}

    def mlp_modules(self) -> tuple[str, ...]:
        return ("gate_proj", "up_proj", "down_proj") if self.gated_mlp else ("dense_h_to_4h", "dense_4h_to_h")

    def attention_modules(self) -> tuple[str, ...]:
        return ("q_proj", "k_proj", "v_proj", "o_proj") if self.gated_mlp else ("query_key_value", "dense")

    def layer_linear_params(self) -> int:
        """Weights of the attention and MLP linear layers of one decoder layer."""
        shapes = self.linear_shapes()
        return sum(a * b for a, b in (shapes[m] for m in self.attention_modules() + self.mlp_modules()))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _from_hf_config(c: dict[str, Any], name: str, source: str) -> Arch:
    """An Arch from a Transformers config.json dict (Llama-style keys, with GPT/Falcon fallbacks)."""
    def pick(*keys: str, default: Any = None) -> Any:
        for k in keys:
            if c.get(k) is not None:
                return c[k]
        return default

    hidden = pick("hidden_size", "n_embd", "d_model")
    layers = pick("num_hidden_layers", "n_layer", "num_layers")
    heads = pick("num_attention_heads", "n_head")
    vocab = pick("vocab_size")
    if not all(isinstance(v, int) for v in (hidden, layers, heads, vocab)):
        raise UnknownArchitectureError(f"{source} of '{name}' lacks hidden_size/num_hidden_layers/"
                                       "num_attention_heads/vocab_size; pass the numbers explicitly")
    kv = pick("num_key_value_heads", "num_kv_heads", default=None)
    if kv is None:
        kv = 1 if c.get("multi_query") else heads
    inter = pick("intermediate_size", "ffn_hidden_size", "n_inner", default=4 * hidden)
    gated = c.get("model_type") not in ("falcon", "gpt2", "gpt_neox", "opt", "bloom")
    tie = bool(c.get("tie_word_embeddings", True))
    arch = Arch(name=name, num_params=0, num_layers=layers, hidden_size=hidden, intermediate_size=inter,
                num_heads=heads, num_kv_heads=kv, vocab_size=vocab, tie_embeddings=tie, gated_mlp=gated,
                source=source)
    return _with_params(arch, c.get("num_params"))


def count_params(arch: Arch) -> int:
    """Weights + norms computed from the shapes (biases ignored: < 0.1 % for these models)."""
    shapes = arch.linear_shapes()
    names = arch.attention_modules() + arch.mlp_modules()
    per_layer = sum(a * b for a, b in (shapes[n] for n in names)) + 2 * arch.hidden_size
    embed = arch.embedding_params * (1 if arch.tie_embeddings else 2)
    return arch.num_layers * per_layer + embed + arch.hidden_size


def _with_params(arch: Arch, num_params: int | None) -> Arch:
    n = int(num_params) if num_params else count_params(arch)
    return Arch(**{**asdict(arch), "num_params": n})


def shape_from_num_params(num_params: int, name: str = "model") -> Arch:
    """A Llama-like shape of about ``num_params`` parameters, for when only the size is known.

    Uses the aspect ratio of the Llama/Qwen families (hidden ≈ 128·layers, SwiGLU intermediate ≈ 2.7·hidden,
    32k vocabulary): per layer ≈ 12·h² parameters, so h ≈ (128·N/12)^(1/3).
    """
    h = max(64, int(round((128 * num_params / 12) ** (1 / 3) / 64)) * 64)
    layers = max(1, round(h / 128))
    heads = max(1, h // 128)
    arch = Arch(name=name, num_params=int(num_params), num_layers=layers, hidden_size=h,
                intermediate_size=int(math.ceil(2.7 * h / 64) * 64), num_heads=heads, num_kv_heads=heads,
                vocab_size=32000, tie_embeddings=False, source="num_params")
    return arch


def resolve_arch(model_cfg: ModelConfig, arch: dict[str, Any] | None = None,
                 num_params: int | None = None) -> Arch:
    """Architecture of the configured base model.

    Order: an explicit ``arch`` dict (our field names or a Transformers config dict), the catalog entry for
    ``model.base``, a local model directory's config.json, and finally a generic shape of ``num_params``.
    """
    name = model_cfg.base
    if arch:
        if "num_layers" in arch and "num_heads" in arch:
            fields = {k: arch[k] for k in Arch.__dataclass_fields__ if k in arch}
            fields.setdefault("name", name)
            fields.setdefault("num_params", 0)
            fields.setdefault("tie_embeddings", True)
            fields["source"] = "given"
            return _with_params(Arch(**fields), num_params or fields["num_params"] or None)
        given = _from_hf_config(arch, name, "given config")
        return _with_params(given, num_params) if num_params else given
    spec = _catalog_spec(name)
    if spec is not None:
        return Arch(name=spec.name, num_params=int(num_params or spec.params), num_layers=spec.num_layers,
                    hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
                    num_heads=spec.num_heads, num_kv_heads=spec.num_kv_heads, vocab_size=spec.vocab_size,
                    tie_embeddings=spec.tie_embeddings, gated_mlp=getattr(spec, "gated_mlp", True),
                    source="catalog")
    config_json = Path(name).expanduser() / "config.json"
    if config_json.is_file():
        try:
            data = json.loads(config_json.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise UnknownArchitectureError(f"cannot read {config_json}: {e}") from e
        found = _from_hf_config(data, str(name), "config.json")
        return _with_params(found, num_params) if num_params else found
    if num_params:
        return shape_from_num_params(num_params, name)
    raise UnknownArchitectureError(
        f"model.base '{name}' is neither in the catalog (see `verticalize models`) nor a local model directory "
        "with a config.json; set model.base to one of them")


def _catalog_spec(name: str) -> Any:
    return get_spec(name)
