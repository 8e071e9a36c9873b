"""Device profiles for the estimator: memory and dense peak throughput per precision.

GPU figures are the vendors' dense (no sparsity) tensor-core peaks; fp32 is the plain (non-TF32) peak. The CPU
profile is measured from this machine: memory from psutil, throughput per core from a bf16/fp32 matrix product
(~0.19 / ~0.048 TFLOP/s per core on an AVX-512-bf16 Xeon; without bf16 instructions bf16 is no faster than fp32).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from verticalize.config import ConfigError

GIB = 1024 ** 3


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    kind: str                              # "gpu" or "cpu"
    memory_bytes: int
    peak_tflops: dict[str, float] = field(default_factory=dict)   # by precision: fp32, bf16, fp16
    overhead_bytes: int = 0                # runtime context that is there before any tensor
    note: str = ""

    @property
    def memory_gib(self) -> float:
        return self.memory_bytes / GIB

    def supports(self, precision: str) -> bool:
        return precision in self.peak_tflops

    def best_half_precision(self) -> str:
        return "bf16" if "bf16" in self.peak_tflops else ("fp16" if "fp16" in self.peak_tflops else "fp32")


def _gpu(name: str, mem_gb: float, fp32: float, half: float, bf16: bool = True, note: str = "") -> DeviceProfile:
    peaks = {"fp32": fp32, "fp16": half}
    if bf16:
        peaks["bf16"] = half
    # CUDA context, cuBLAS/cuDNN workspaces and the caching allocator's reserve: ~1 GiB before any tensor.
    return DeviceProfile(name, "gpu", int(mem_gb * 1e9), peaks, overhead_bytes=GIB, note=note)


GPU_PROFILES: dict[str, DeviceProfile] = {p.name: p for p in (
    _gpu("a100-40g", 40, 19.5, 312, note="NVIDIA A100 40GB"),
    _gpu("a100-80g", 80, 19.5, 312, note="NVIDIA A100 80GB"),
    _gpu("h100-80g", 80, 67, 989, note="NVIDIA H100 SXM 80GB"),
    _gpu("h200-141g", 141, 67, 989, note="NVIDIA H200 141GB"),
    _gpu("l4-24g", 24, 30, 121, note="NVIDIA L4 24GB"),
    _gpu("rtx4090-24g", 24, 82.6, 165, note="GeForce RTX 4090 (bf16 with fp32 accumulation)"),
    _gpu("v100-32g", 32, 15.7, 125, bf16=False, note="NVIDIA V100 32GB (no bf16)"),
)}

# Python, torch, transformers and peft loaded: RSS of the process before the model (measured 0.37 GiB in
# bench/estimator_validation.py).
CPU_OVERHEAD_BYTES = int(0.4 * GIB)
CPU_TFLOPS_PER_CORE = {"fp32": 0.048, "bf16": 0.19}


def _cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_profile() -> DeviceProfile:
    import psutil

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    fp32 = CPU_TFLOPS_PER_CORE["fp32"] * cores
    peaks = {"fp32": fp32, "bf16": CPU_TFLOPS_PER_CORE["bf16"] * cores if _cpu_has_bf16() else fp32}
    # What this process may use: the free RAM plus what it already holds (a loaded model counts as usable).
    usable = psutil.virtual_memory().available + psutil.Process().memory_info().rss
    return DeviceProfile("cpu", "cpu", int(usable), peaks, overhead_bytes=CPU_OVERHEAD_BYTES,
                         note=f"this machine: {cores} cores, {usable / GIB:.1f} GiB RAM usable")


def profile_names() -> list[str]:
    return ["auto", "cpu", *GPU_PROFILES]


def get_profile(name: str) -> DeviceProfile:
    """A profile by name; prefixes are accepted when unambiguous (``rtx4090`` → ``rtx4090-24g``)."""
    key = name.strip().lower()
    if key == "auto":
        return _detect()
    if key == "cpu":
        return cpu_profile()
    if key in GPU_PROFILES:
        return GPU_PROFILES[key]
    matches = [n for n in GPU_PROFILES if n.startswith(key)]
    if len(matches) == 1:
        return GPU_PROFILES[matches[0]]
    raise ConfigError(f"unknown device profile '{name}' in plan.device; choose one of {', '.join(profile_names())}")


def _detect() -> DeviceProfile:
    """The GPU this process sees (matched to a profile by name and memory), else the CPU."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        try:
            import torch  # noqa: F811 - only imported when auto-detection needs it
        except ImportError:
            return cpu_profile()
    if not torch.cuda.is_available():
        return cpu_profile()
    props = torch.cuda.get_device_properties(0)
    gpu_name = props.name.lower().replace(" ", "")
    mem_gb = props.total_memory / 1e9
    for prof in GPU_PROFILES.values():
        family = prof.name.split("-")[0]
        if family in gpu_name and abs(prof.memory_bytes / 1e9 - mem_gb) < 0.2 * mem_gb:
            return DeviceProfile(prof.name, "gpu", props.total_memory, prof.peak_tflops, prof.overhead_bytes,
                                 note=f"detected {props.name}")
    return DeviceProfile("gpu", "gpu", props.total_memory, {"fp32": 20.0, "bf16": 100.0, "fp16": 100.0}, GIB,
                         note=f"detected {props.name} (unknown profile: assumed 100 TFLOP/s bf16; "
                              "set plan.device_tflops)")
