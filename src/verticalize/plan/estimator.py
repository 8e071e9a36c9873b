"""Estimate one training setting from the config: memory per device, time and cost; refuse what cannot fit.

Time comes from FLOPs (Kaplan et al. 2020; PaLM appendix B for attention), per training token:
  full fine-tuning       6·N + 12·L·h·s    forward 2·N, backward 4·N (gradients of activations and of weights)
  frozen-base methods    4·N + 6·T + 12·L·h·s
                         the backward still propagates activation gradients through every frozen matrix
                         (2·N) but computes no weight gradients for them; only the T trainable parameters get
                         those. That is why LoRA saves memory far more than time.
  gradient checkpointing one more forward pass: + 2·N + 4·L·h·s
N counts parameters that take part in a matrix product (the input-embedding lookup does not); s is the sequence
length, 12·L·h·s the attention score and value products (forward 4·L·h·s, backward twice that).
Throughput: plan.device_tflops when set (taken as sustained), else the profile's dense peak for the precision
times a model-FLOPs-utilisation assumption (MFU 0.35 on GPUs, 0.30 on CPUs — typical of Transformers training
without custom kernels; QLoRA × 0.7 for the dequantisation of every 4-bit weight in forward and backward), times
the ratio measured on this machine when runs were calibrated (plan/calibration.py: the assumption alone was
1.1–4.7× off on this CPU; calibrated from the other settings, 28 % mean error).

Memory refusal: the memory estimate's measured error is up to ~24 % high (bench/estimator_validation.py), so
`check_fits` refuses only when the estimate less ``plan.memory_margin`` does not fit either, warns in between,
and only warns when ``plan.refuse_unfit`` is off (``verticalize train --force``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from verticalize.artifacts import RunDir
from verticalize.config import Config
from verticalize.errors import UserError
from verticalize.methods import get as get_method
from verticalize.models.catalog import get_spec
from verticalize.plan.arch import Arch, resolve_arch
from verticalize.plan.calibration import Calibration, calibration_path, lookup
from verticalize.plan.devices import GIB, DeviceProfile, get_profile
from verticalize.plan.memory import MemoryBreakdown, Setting, memory_breakdown, trainable_params
from verticalize.text import CJK_CHAR

MFU = {"gpu": 0.35, "cpu": 0.30}
DEFAULT_TOKENS_PER_EPOCH = 1_000_000
COMPARE_METHODS = ("full", "lora", "qlora", "prefix")


class DoesNotFitError(UserError, ValueError):
    """The setting needs more memory than the device has; the message says what to change (user-fixable: the CLI
    shows it as one line; train re-raises it as a ``TrainError`` that names the training setting)."""


@dataclass
class Estimate:
    arch: Arch
    setting: Setting
    device: DeviceProfile
    memory: MemoryBreakdown
    available_bytes: float
    trainable: int
    tokens: int
    tokens_source: str
    flops_per_token: float
    sustained_tflops: float
    price_per_device_hour: float
    notes: list[str] = field(default_factory=list)
    calibration: Calibration | None = None   # the measured throughput ratio applied to sustained_tflops

    @property
    def fits(self) -> bool:
        return self.memory.total <= self.available_bytes

    @property
    def trainable_share(self) -> float:
        return self.trainable / self.arch.num_params

    @property
    def seconds(self) -> float:
        return self.tokens * self.flops_per_token / (self.setting.num_devices * self.sustained_tflops * 1e12)

    @property
    def tokens_per_second(self) -> float:
        return self.setting.num_devices * self.sustained_tflops * 1e12 / self.flops_per_token

    @property
    def cost(self) -> float:
        return self.seconds / 3600 * self.setting.num_devices * self.price_per_device_hour

    def to_dict(self) -> dict[str, Any]:
        s = self.setting
        return {
            "model": self.arch.to_dict(),
            "setting": {**s.__dict__, "lora_targets": list(s.lora_targets)},
            "device": {"name": self.device.name, "kind": self.device.kind, "note": self.device.note,
                       "available_gib": self.available_bytes / GIB},
            "params": {"total": self.arch.num_params, "trainable": self.trainable,
                       "trainable_share": self.trainable_share},
            "memory_gib": {k: v / GIB for k, v in self.memory.to_dict().items()},
            "memory_bytes": self.memory.to_dict(),
            "fits": self.fits,
            "time": {"tokens": self.tokens, "tokens_source": self.tokens_source,
                     "flops_per_token": self.flops_per_token, "sustained_tflops": self.sustained_tflops,
                     "tokens_per_second": self.tokens_per_second, "hours": self.seconds / 3600,
                     "device_hours": self.seconds / 3600 * s.num_devices, "cost": self.cost,
                     "calibration": self.calibration.to_dict() if self.calibration else None},
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------------------------- setting
def _precision(cfg: Config, device: DeviceProfile, notes: list[str]) -> str:
    p = cfg.train.precision
    if p == "auto":
        half = device.best_half_precision()
        return half if device.peak_tflops.get(half, 0) > device.peak_tflops["fp32"] else "fp32"
    if not device.supports(p):
        notes.append(f"{device.name} has no {p}; the estimate assumes it anyway")
    return p


def _weight_bytes(cfg: Config, precision: str) -> float:
    dtype = cfg.model.dtype
    if dtype == "auto":
        return 4.0 if precision == "fp32" else 2.0
    return 4.0 if dtype == "float32" else 2.0


def _lora_targets(cfg: Config, arch: Arch) -> tuple[str, ...]:
    targets = cfg.train.lora.target_modules
    if isinstance(targets, list):
        return tuple(targets)
    if targets == "auto":
        spec = get_spec(cfg.model.base)
        if spec is not None:
            return tuple(spec.lora_targets)
    return arch.attention_modules() + arch.mlp_modules()


def build_setting(cfg: Config, arch: Arch, device: DeviceProfile, notes: list[str], **overrides: Any) -> Setting:
    precision = _precision(cfg, device, notes)
    batch_tokens = cfg.train.batch_tokens
    seq = min(cfg.model.max_seq_len, batch_tokens)
    setting = Setting(method=cfg.train.method, precision=precision, weight_bytes=_weight_bytes(cfg, precision),
                      seq_len=seq, micro_batch=max(1, batch_tokens // seq),
                      gradient_checkpointing=cfg.train.gradient_checkpointing, lora_r=cfg.train.lora.r,
                      lora_targets=_lora_targets(cfg, arch), lora_dropout=cfg.train.lora.dropout,
                      virtual_tokens=cfg.train.prefix.num_virtual_tokens, num_devices=cfg.plan.num_devices,
                      zero_stage=cfg.plan.zero_stage, dropout_mask_bytes=1 if device.kind == "gpu" else 4)
    return replace(setting, **overrides) if overrides else setting


# --------------------------------------------------------------------------------------------- time
def flops_per_token(arch: Arch, s: Setting, trainable: int) -> float:
    n = arch.matmul_params
    method = get_method(s.method)
    seq = s.seq_len + (s.virtual_tokens if method.virtual_positions or method.virtual_keys else 0)
    attention = 12 * arch.num_layers * arch.hidden_size * seq
    if method.trains_base:
        flops = 6 * n + attention
    else:
        # Prompt tuning runs its virtual tokens through every layer along with the real ones.
        stretch = seq / s.seq_len if method.virtual_positions else 1.0
        flops = 4 * n * stretch + 6 * trainable + attention
    if s.gradient_checkpointing:
        flops += 2 * n + attention / 3
    return float(flops)


def _sustained_tflops(cfg: Config, device: DeviceProfile, s: Setting) -> float:
    if cfg.plan.device_tflops:
        return float(cfg.plan.device_tflops)
    peak = device.peak_tflops.get(s.precision, device.peak_tflops["fp32"])
    return peak * MFU[device.kind] * get_method(s.method).speed_factor


def training_tokens(cfg: Config, s: Setting) -> tuple[int, str]:
    """Tokens the run will train on (all epochs, all devices) and where the number came from."""
    t = cfg.train
    if t.max_steps:
        n = t.max_steps * t.grad_accum * s.num_devices * s.tokens
        return n, f"train.max_steps={t.max_steps} × {s.tokens} tokens × grad_accum {t.grad_accum}"
    train_file = RunDir(cfg.project.run_dir).dataset_split("train")
    if train_file.is_file():
        per_epoch = _approx_tokens(train_file)
        return int(per_epoch * t.epochs), f"{train_file} (≈{per_epoch:,} tokens/epoch) × {t.epochs:g} epochs"
    return (int(DEFAULT_TOKENS_PER_EPOCH * t.epochs),
            f"assumed {DEFAULT_TOKENS_PER_EPOCH:,} tokens/epoch × {t.epochs:g} epochs (no dataset yet; pass --tokens)")


def _approx_tokens(path: Path) -> int:
    """BPE token count of a dataset without loading a tokenizer: ~1.5 CJK characters or ~4 other characters per
    token (the ratios of Qwen/Llama-3 style vocabularies), plus ~10 tokens of chat template per message."""
    total = 0.0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            cjk = len(CJK_CHAR.findall(line))
            total += cjk / 1.5 + (len(line) - cjk) / 4 + 20
    return int(total)


# --------------------------------------------------------------------------------------------- public
def available_memory(cfg: Config, device: DeviceProfile) -> float:
    if cfg.train.device_memory_gb:
        return cfg.train.device_memory_gb * 1e9
    return float(device.memory_bytes)


def estimate(cfg: Config, *, num_params: int | None = None, arch: dict[str, Any] | None = None,
             tokens: int | None = None, calibrated: bool = True, **setting_overrides: Any) -> Estimate:
    """Memory, time and cost of training ``cfg`` (setting fields such as ``method=`` may be overridden).
    ``calibrated=False``: the FLOPs model alone, without this machine's measured throughput ratio."""
    notes: list[str] = []
    model = resolve_arch(cfg.model, arch, num_params)
    device = get_profile(cfg.plan.device)
    setting = build_setting(cfg, model, device, notes, **setting_overrides)
    trainable = trainable_params(model, setting)
    if tokens is not None:
        n_tokens, source = int(tokens), "given"
    else:
        n_tokens, source = training_tokens(cfg, setting)
    method = get_method(setting.method)
    notes.extend(method.notes(setting, device.kind))
    if not method.trains_base and not method.quantizes_base and setting.weight_bytes == 4 \
            and setting.precision != "fp32":
        notes.append("the frozen base is kept in fp32 (model.dtype=float32)")
    sustained = _sustained_tflops(cfg, device, setting)
    calibration = None
    if calibrated and not cfg.plan.device_tflops:  # a throughput the user set is taken as it is
        calibration = lookup(calibration_path(cfg.plan.calibration_file), device.name, setting.method,
                             setting.precision)
        if calibration is not None:
            sustained *= calibration.factor
            notes.append(f"time calibrated ×{calibration.factor:.2f} from {calibration.samples} measured stage(s) "
                         f"({calibration.key}; `verticalize estimate --calibrate RUN` adds more)")
    return Estimate(arch=model, setting=setting, device=device,
                    memory=memory_breakdown(model, setting, device.overhead_bytes, device.kind == "cpu"),
                    available_bytes=available_memory(cfg, device), trainable=trainable, tokens=n_tokens,
                    tokens_source=source, flops_per_token=flops_per_token(model, setting, trainable),
                    sustained_tflops=sustained, price_per_device_hour=cfg.plan.price_per_device_hour, notes=notes,
                    calibration=calibration)


def compare(cfg: Config, *, num_params: int | None = None, arch: dict[str, Any] | None = None,
            tokens: int | None = None, methods: tuple[str, ...] = COMPARE_METHODS) -> list[Estimate]:
    """The seeds' comparison table, computed: the same setting under each method."""
    return [estimate(cfg, num_params=num_params, arch=arch, tokens=tokens, method=m) for m in methods]


def check_fits(cfg: Config, *, num_params: int | None = None, arch: dict[str, Any] | None = None) -> dict:
    """The estimate as a dict, with a ``warning`` when it may not fit; raises DoesNotFitError (saying what to
    change) when even the estimate less its measured error (``plan.memory_margin``) does not fit and
    ``plan.refuse_unfit`` is on."""
    est = estimate(cfg, num_params=num_params, arch=arch, tokens=0)
    result = est.to_dict()
    if est.fits:
        return result
    optimistic = est.memory.total * (1 - cfg.plan.memory_margin)
    message = does_not_fit_message(cfg, est, num_params=num_params, arch=arch)
    if optimistic > est.available_bytes and cfg.plan.refuse_unfit:
        raise DoesNotFitError(message + f" (Refused: even {100 * cfg.plan.memory_margin:.0f} % below the estimate, "
                              "its measured error, it does not fit; `verticalize train --force` tries anyway.)")
    result["warning"] = ("may not fit: " + message if optimistic <= est.available_bytes else
                         "does not fit by the estimate, trained anyway (plan.refuse_unfit off): " + message)
    return result


def does_not_fit_message(cfg: Config, est: Estimate, *, num_params: int | None = None,
                         arch: dict[str, Any] | None = None) -> str:
    s = est.setting
    head = (f"training does not fit: estimated peak {est.memory.total / GIB:.1f} GiB per device "
            f"(weights {est.memory.weights / GIB:.1f}, gradients {est.memory.gradients / GIB:.1f}, optimizer "
            f"{est.memory.optimizer / GIB:.1f}, activations {(est.memory.activations + est.memory.logits) / GIB:.1f})"
            f" > {est.available_bytes / GIB:.1f} GiB available on {est.device.name} "
            f"({est.arch.name}, method={s.method}, {s.precision}, batch_tokens={s.tokens}).")
    tries: list[tuple[str, dict[str, Any]]] = []
    if not s.gradient_checkpointing:
        tries.append(("train.gradient_checkpointing=true", {"gradient_checkpointing": True}))
    if s.tokens > 256:
        smaller = max(128, s.tokens // 4)
        seq = min(s.seq_len, smaller)
        tries.append((f"train.batch_tokens={smaller}", {"seq_len": seq, "micro_batch": max(1, smaller // seq)}))
    method = get_method(s.method)
    if method.trains_base:
        tries.append(("train.method=lora", {"method": "lora"}))
    if not method.quantizes_base:
        tries.append(("train.method=qlora (CUDA)", {"method": "qlora"}))
    for d in (2, 4, 8):
        if d > s.num_devices:
            tries.append((f"plan.num_devices={d} with plan.zero_stage=3", {"num_devices": d, "zero_stage": 3}))
    options = []
    for label, change in tries:
        alt = memory_breakdown(est.arch, replace(s, **change), est.device.overhead_bytes,
                               heap_slack=est.memory.heap_slack > 0)
        mark = "fits" if alt.total <= est.available_bytes else "still too large"
        options.append(f"{label} → {alt.total / GIB:.1f} GiB ({mark})")
    return (head + " Change one of: " + "; ".join(options)
            + ". Or set train.device_memory_gb if the device has more memory than detected.")
