"""Errors the user can fix: one base class, so the CLI shows every one of them as one line (exit code 2).

Every stage's user-facing error derives from ``UserError`` and keeps the built-in base it had before
(``ValueError``, ``FileNotFoundError``, ...), so ``except ValueError`` around a call still works. Errors that a
stage catches itself (a bad row that is refused and counted, a corrupt file that is skipped) are not user errors.

Errors raised by more than one stage live here, as one class each:
    ExportError    a dataset export (data) or a model export (export) that cannot be made
    TestSetError   a test set that is missing or has no usable question (data, evaluate)
"""

from __future__ import annotations

__all__ = ["UserError", "ExportError", "TestSetError"]


class UserError(Exception):
    """An error caused by input the user can fix; the message says what to change. The CLI prints it as one line
    and exits with code 2."""


class ExportError(UserError, ValueError, FileNotFoundError):
    """A dataset or model export that cannot be made: nothing to export yet, an unknown format or adapter, an
    invalid result (user-fixable)."""


class TestSetError(UserError, FileNotFoundError):
    """A test set that cannot be used at all: missing, unreadable, or without a usable question (user-fixable)."""

    __test__ = False  # not a pytest test class despite the name
