"""Adaptation methods (``train.method``), one module per method, each registering itself.

Every module of this package whose name does not start with ``_`` is imported here and registers one or more
``Method`` objects (see ``_registry`` for what a method declares). Adding a method is adding one module: the
config, the trainer, the planner and the help texts ask the registry, never a method's name.

Public API:
    get(name) -> Method          the registered method (UnknownMethodError lists the registered names)
    methods() -> list[Method]     every registered method, in listing order
    method_names() -> tuple[str]  their names
    register(method)              what a method module calls
"""

from __future__ import annotations

import importlib
import pkgutil

from verticalize.methods._registry import Method, UnknownMethodError, get, method_names, methods, register


def _discover() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_discover()

__all__ = ["Method", "UnknownMethodError", "get", "method_names", "methods", "register"]
