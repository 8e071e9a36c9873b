"""The ``Method`` base class and the registry the method modules of ``verticalize.methods`` register into.

A method is one subclass instance; every question the trainer, the planner and the config ask about a method
is an attribute or a hook here, so no other module tests a method's name:
  training    ``peft_config`` (the PEFT config it trains), ``load_base`` (a base that needs more than
              ``verticalize.models.load_base``), ``unsupported_reason`` (why this machine cannot train it),
              ``packs`` (examples may be packed into one row), ``merges`` (the adapter merges into the base:
              merged export, layered stages stacked by merging);
  planning    ``trainable_params`` (counted the way PEFT creates them), ``base_weight_bytes`` (frozen base),
              ``adapter_activation_bytes`` (what its trainable modules keep for the backward pass, per layer),
              ``virtual_positions`` / ``virtual_keys`` (virtual tokens as extra positions / extra keys and values),
              ``trains_base`` (every weight trains: full fine-tuning), ``speed_factor``, ``notes``.
Everything heavy (torch, peft, transformers) is imported inside the hooks: the config imports this registry.

Its place in the layers: a shared module (layer 0, beside ``config``), so it imports no other ``verticalize``
module, not even lazily. What a hook needs from a higher layer is handed to it by the caller: the trainer
(``verticalize.train.methods``) resolves the base directory and the LoRA target modules and raises the
``TrainError`` for ``unsupported_reason``; the planner passes its ``Arch`` and ``Setting`` objects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from verticalize.config import Config
    from verticalize.plan.arch import Arch
    from verticalize.plan.memory import Setting


class UnknownMethodError(ValueError):
    """A method name nothing registered; the message lists the registered ones."""


class Method:
    name: str = ""
    summary: str = ""
    order: int = 100               # place in listings (config errors, help texts), then the name
    trains_base: bool = False      # every weight trains (full fine-tuning, no PEFT); else the base stays frozen
    merges: bool = False           # the adapter merges into the base weights (merged export, merged-parents stages)
    quantizes_base: bool = False   # the frozen base is stored quantised (its bytes come from base_weight_bytes)
    needs_cuda: bool = False       # training refuses a machine without a CUDA GPU
    virtual_positions: bool = False  # virtual tokens run through every layer as extra positions (prompt tuning)
    virtual_keys: bool = False       # every layer's keys/values grow by the virtual tokens (prefix tuning)
    speed_factor: float = 1.0      # sustained-throughput factor relative to the device's usual utilisation

    @property
    def peft(self) -> bool:
        """Trained through PEFT (an adapter on a frozen base)."""
        return not self.trains_base

    @property
    def packs(self) -> bool:
        """Examples may be packed into one row; virtual tokens belong to one example, so those methods cannot."""
        return not (self.virtual_positions or self.virtual_keys)

    @property
    def layering(self) -> str:
        """How a layered stage builds on its parent (``verticalize_adapter.json``'s ``layering``)."""
        return "merged-parents" if self.merges else "continued"

    def __repr__(self) -> str:
        return f"<method {self.name}>"

    # ------------------------------------------------------------------------------------------ training
    def peft_config(self, cfg: "Config", base_path: "Path | None", targets: "list[str] | str | None" = None) -> Any:
        """The ``peft.PeftConfig`` this method trains. ``targets``: the LoRA target modules as the trainer resolved
        them (``verticalize.train.methods.lora_targets``); None is PEFT's default for the architecture."""
        raise NotImplementedError(f"train.method={self.name} is not a PEFT method")

    def unsupported_reason(self, device: Any) -> str | None:
        """Why this machine cannot train the method, saying what to change (the trainer raises it as a
        ``TrainError``); None when it can."""
        if self.needs_cuda and getattr(device, "type", None) != "cuda":
            return f"train.method={self.name} needs a CUDA GPU"
        return None

    def load_base(self, cfg: "Config", precision: Any, device: Any, base_path: "Path") -> tuple[Any, Any] | None:
        """(base model, tokenizer) to put the adapter on, for a method whose base needs more than
        ``verticalize.models.load_base`` (which the trainer uses when this returns None); ``base_path`` is the
        resolved base model directory."""
        return None

    # ------------------------------------------------------------------------------------------ planning
    def trainable_params(self, arch: "Arch", s: "Setting") -> int:
        """Parameters the method trains, counted the way PEFT creates them."""
        raise NotImplementedError

    def base_weight_bytes(self, arch: "Arch", s: "Setting") -> float:
        """Bytes of the frozen base weights (methods with ``trains_base`` are counted by the planner)."""
        return arch.num_params * s.weight_bytes

    def adapter_activation_bytes(self, arch: "Arch", s: "Setting", tokens: int) -> float:
        """Extra bytes one decoder layer keeps for the backward pass of this method's trainable modules."""
        return 0.0

    def notes(self, s: "Setting", device_kind: str) -> list[str]:
        """Notes the estimate shows for this method on a device of ``device_kind`` (gpu, cpu)."""
        return []


_METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` to the registry (a method module calls this once); returns it."""
    if not method.name:
        raise ValueError(f"{type(method).__name__} has no name")
    if method.name in _METHODS and type(_METHODS[method.name]) is not type(method):
        raise ValueError(f"method '{method.name}' is registered twice ({type(_METHODS[method.name]).__name__}, "
                         f"{type(method).__name__})")
    _METHODS[method.name] = method
    return method


def methods() -> list[Method]:
    """Every registered method, in listing order."""
    return sorted(_METHODS.values(), key=lambda m: (m.order, m.name))


def method_names() -> tuple[str, ...]:
    return tuple(m.name for m in methods())


def get(name: "str | Method") -> Method:
    """The method called ``name``; UnknownMethodError names the registered ones."""
    if isinstance(name, Method):
        return name
    method = _METHODS.get(name)
    if method is None:
        raise UnknownMethodError(f"unknown method '{name}'; registered methods: {', '.join(method_names())}")
    return method
