"""Errors of the models package: user errors (UserError and FileNotFoundError), shown by the CLI as one line."""

from __future__ import annotations

from verticalize.errors import UserError


class ModelNotFoundError(UserError, FileNotFoundError):
    """The base model cannot be found locally; the message says how to provide it."""


class ModelConversionError(ModelNotFoundError):
    """A GGUF file exists but cannot be converted (truncated file, unsupported architecture)."""
