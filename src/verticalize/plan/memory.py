"""Training memory per device: weights, gradients, optimizer states, activations, logits, overhead.

States (bytes per parameter, after Rajbhandari et al. 2020, "ZeRO"):
  full FT, fp32:            weights 4 + gradients 4 + AdamW m, v 8                      = 16
  full FT, mixed bf16/fp16: fp32 master weights 4 + the 16-bit copies autocast keeps for forward and backward 2
                            + fp32 gradients 4 + m, v 8                                 = 18
                            (our trainer and PyTorch AMP; DeepSpeed's 16-bit gradients make it the paper's 16)
  frozen-base methods:      base weights at their dtype (4 fp32, 2 bf16/fp16, QLoRA NF4 ≈ 0.516: 0.5 for the
                            4-bit codes + 1/64 for 8-bit block constants + 4/(64·256) for the second-level fp32
                            constants, double quantisation; embeddings and norms stay 16-bit), and for the
                            trainable parameters (kept in fp32) 4 + 4 + 8 = 16.
ZeRO stage 1 shards the optimizer states over the devices, stage 2 also the gradients, stage 3 also the weights
(plus two gathered layers in flight). Plain DDP (stage 0, > 1 device) keeps a second copy of the gradients in its
all-reduce buckets.

Activations: Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models") count
s·b·h·(34 + 5·a·s/h) bytes per layer for a 16-bit GPT layer with dropout and a 4h GeLU MLP. Itemised for the
Llama-style layers used here (t = s·b tokens, e = activation bytes, i = intermediate size, k = KV width with
GQA), every term is a tensor autograd keeps for the backward pass:
  RMSNorm ×2            t·h·4 each (fp32 upcast kept by pow/mul) + t·h·e when the norm weight trains
  attention             t·(h + 2k)·e  for q, k, v after RoPE (kept by the attention kernel)
                        t·h·e + 4·b·a·s  for the output and log-sum-exp of a fused (flash/SDPA) kernel;
                        eager attention keeps the b·a·s² probabilities instead (the 5·a·s/h term)
  SwiGLU MLP            3·t·i·e  (gate output for SiLU, SiLU output and up output for the product)
  linear-layer inputs   kept only when that layer's weight trains: t·h·e for q/k/v (shared), o, gate/up
                        (shared), t·i·e for down. A frozen layer's backward needs only its weight, not its input.
  LoRA per adapted layer with input width d: its fp32 input (t·d·4) and, with dropout, the mask (t·d·1 on
                        CUDA; t·d·4 on CPU, whose dropout keeps a mask of the input's dtype).
  prefix tuning         keys/values grow by the virtual tokens, and the explicit b·s·(s+p) attention mask
                        Transformers builds once a prefix cache exists is kept by every layer's kernel.
There is no dropout in Llama-style layers, and the SwiGLU MLP has three intermediate tensors instead of GeLU's two.
Logits: t·V·(e + 12) at the start of the backward pass: the logits (e), the fp32 log-softmax output kept by the
loss (4), and the two fp32 gradients being formed (8).
Gradient checkpointing keeps only each layer's input (t·h·e per layer) and recomputes one layer at a time, so the
peak is L·t·h·e + one layer's activations + logits.
CPU heap slack: glibc malloc raises its mmap threshold (up to 32 MiB) once a large block is freed, so activation
buffers freed in one step stay in the heap and fragment; measured peak RSS exceeds live tensor bytes by about the
activations once more (bench/estimator_validation.py). The CPU estimate adds that; calling
``mallopt(M_MMAP_THRESHOLD, 128 KiB)`` at start-up removes it (freed buffers return to the OS).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from verticalize.methods import get as get_method
from verticalize.plan.arch import Arch


@dataclass(frozen=True)
class Setting:
    """One training configuration to estimate (everything per device)."""

    method: str                      # a registered method (verticalize.methods): full, lora, qlora, ...
    precision: str                   # fp32, bf16, fp16 (compute)
    weight_bytes: float              # bytes per frozen base weight (4, 2); QLoRA overrides it
    seq_len: int
    micro_batch: int                 # sequences per micro-batch per device
    gradient_checkpointing: bool = False
    lora_r: int = 8
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    lora_dropout: float = 0.1
    virtual_tokens: int = 20
    num_devices: int = 1
    zero_stage: int = 0
    attention: str = "flash"         # flash (fused SDPA/flash kernels) or eager
    dropout_mask_bytes: int = 1      # CUDA keeps a bool mask; the CPU kernel keeps a mask of the input's dtype

    @property
    def act_bytes(self) -> int:
        return 4 if self.precision == "fp32" else 2

    @property
    def tokens(self) -> int:
        return self.seq_len * self.micro_batch


@dataclass(frozen=True)
class MemoryBreakdown:
    weights: float
    gradients: float
    optimizer: float
    activations: float
    logits: float
    overhead: float
    heap_slack: float = 0.0

    @property
    def states(self) -> float:
        return self.weights + self.gradients + self.optimizer

    @property
    def total(self) -> float:
        return self.states + self.activations + self.logits + self.overhead + self.heap_slack

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "total": self.total}


# --------------------------------------------------------------------------------------------- parameters
def trainable_params(arch: Arch, s: Setting) -> int:
    """Parameters the method trains, counted the way PEFT creates them (each method's own formula)."""
    return get_method(s.method).trainable_params(arch, s)


# --------------------------------------------------------------------------------------------- states
def state_bytes(arch: Arch, s: Setting, trainable: int) -> tuple[float, float, float]:
    """(weights, gradients, optimizer) bytes per device before ZeRO sharding of the activations."""
    n = arch.num_params
    if get_method(s.method).trains_base:
        if s.precision == "fp32":
            weights, grads, optim = 4.0 * n, 4.0 * n, 8.0 * n
        else:
            weights, grads, optim = 6.0 * n, 4.0 * n, 8.0 * n
    else:
        base = get_method(s.method).base_weight_bytes(arch, s)
        weights, grads, optim = base + 4.0 * trainable, 4.0 * trainable, 8.0 * trainable
    d, z = s.num_devices, s.zero_stage
    if z >= 1:
        optim /= d
    if z >= 2:
        grads /= d
    if z >= 3:
        gathered = 2 * arch.layer_linear_params() * (2.0 if s.precision != "fp32" else 4.0)
        weights = weights / d + gathered
    if z == 0 and d > 1:
        grads *= 2  # DDP all-reduce buckets hold a second copy of the gradients
    return weights, grads, optim


# --------------------------------------------------------------------------------------------- activations
def layer_activation_bytes(arch: Arch, s: Setting, seq_len: int | None = None) -> float:
    """Bytes one decoder layer keeps for backward (see the module docstring for each term)."""
    s_len = seq_len or s.seq_len
    t = s_len * s.micro_batch
    e = s.act_bytes
    h, i, kv, a = arch.hidden_size, arch.intermediate_size, arch.kv_dim, arch.num_heads
    method = get_method(s.method)
    full = method.trains_base
    prefix = s.virtual_tokens if method.virtual_keys else 0          # virtual keys/values per sequence
    total = 2 * t * h * (4 + (e if full else 0))                    # two RMSNorms
    kv_tokens = t + s.micro_batch * prefix
    total += t * h * e + 2 * kv_tokens * kv * e                      # q, k, v after RoPE
    if s.attention == "eager":
        total += s.micro_batch * a * s_len * (s_len + prefix) * e
        total += 2 * kv_tokens * (h - kv) * e                        # k, v repeated to every query head
    else:
        total += t * h * e + 4 * s.micro_batch * a * s_len           # fused kernel: output + log-sum-exp
    if method.virtual_keys:
        total += s.micro_batch * s_len * (s_len + prefix) * e        # explicit attention mask
    total += 3 * t * i * e                                           # SwiGLU intermediates
    if full:
        total += t * h * e * 3 + t * i * e                           # inputs of q/k/v, o, gate/up, down
    total += method.adapter_activation_bytes(arch, s, t)             # the method's trainable modules
    return float(total)


def _positions(s: Setting) -> int:
    """Positions every layer runs: the sequence, plus the virtual tokens of a method that prepends them."""
    return s.seq_len + (s.virtual_tokens if get_method(s.method).virtual_positions else 0)


def activation_bytes(arch: Arch, s: Setting) -> float:
    seq = _positions(s)
    per_layer = layer_activation_bytes(arch, s, seq)
    t = seq * s.micro_batch
    final_norm = t * arch.hidden_size * (4 + (s.act_bytes if get_method(s.method).trains_base else 0))
    if s.gradient_checkpointing:
        return arch.num_layers * t * arch.hidden_size * s.act_bytes + per_layer + final_norm
    return arch.num_layers * per_layer + final_norm


def logits_bytes(arch: Arch, s: Setting) -> float:
    seq = _positions(s)
    return float(seq * s.micro_batch * arch.vocab_size * (s.act_bytes + 12))


def memory_breakdown(arch: Arch, s: Setting, overhead_bytes: float, heap_slack: bool = False) -> MemoryBreakdown:
    trainable = trainable_params(arch, s)
    weights, grads, optim = state_bytes(arch, s, trainable)
    activations = activation_bytes(arch, s)
    return MemoryBreakdown(weights=weights, gradients=grads, optimizer=optim, activations=activations,
                           logits=logits_bytes(arch, s), overhead=float(overhead_bytes),
                           heap_slack=activations if heap_slack else 0.0)
