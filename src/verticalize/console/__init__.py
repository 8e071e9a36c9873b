"""The console: a web app for the people who decide — projects, live runs, the ladder against the gates, a
side-by-side playground and the feedback review queue (docs/console.md).

Public API:
    create_console_app(root, api_keys) -> FastAPI    the JSON API under /api/ and the web app under /
    serve_console(root, host, port, insecure=False)  run it with uvicorn (same exposure rules as the gateway)
"""

from __future__ import annotations

import os
from pathlib import Path

from verticalize.console.app import create_console_app

__all__ = ["create_console_app", "serve_console"]

API_KEY_ENV = "VERTICALIZE_API_KEY"


def serve_console(root: Path, host: str = "127.0.0.1", port: int = 8300, insecure: bool = False) -> None:
    import uvicorn

    from verticalize.serve import check_exposure

    keys = {k.strip() for k in os.environ.get(API_KEY_ENV, "").split(",") if k.strip()}
    check_exposure(host, bool(keys), insecure, API_KEY_ENV)
    uvicorn.run(create_console_app(Path(root), keys), host=host, port=port, log_level="info")
