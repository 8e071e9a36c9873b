"""Errors of the models package. Both are FileNotFoundError subclasses, so the CLI shows them as one clear line."""

from __future__ import annotations


class ModelNotFoundError(FileNotFoundError):
    """The base model cannot be found locally; the message says how to provide it."""


class ModelConversionError(ModelNotFoundError):
    """A GGUF file exists but cannot be converted (truncated file, unsupported architecture)."""
