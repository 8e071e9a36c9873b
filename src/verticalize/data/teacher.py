"""The data stage's teacher is the shared OpenAI-compatible client, ``verticalize.openai_client``.

Kept as a re-export only for ``data/generators.py`` and ``data/build.py``, which import ``TeacherClient`` from
here; import from ``verticalize.openai_client`` everywhere else (and there once those two are switched).
"""

from __future__ import annotations

from verticalize.openai_client import TeacherClient, TeacherConfigError, TeacherError, TeacherUsage

__all__ = ["TeacherClient", "TeacherConfigError", "TeacherError", "TeacherUsage"]
