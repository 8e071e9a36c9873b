"""One console run, in its own process: `python -m verticalize.console.worker CONFIG RUN_DIR [--iterate] [--set k=v]`.

It runs the main job (or an iteration) exactly as `verticalize run` does and appends each stage's progress to
``RUN_DIR/events.jsonl`` as it happens; the console tails that file for the page's live view. Its own output goes
to the console's log file for the run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="verticalize.console.worker")
    ap.add_argument("config", type=Path)
    ap.add_argument("events", type=Path)
    ap.add_argument("--iterate", action="store_true")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args(argv)

    from verticalize.config import load_config
    from verticalize.pipeline import run_iteration, run_pipeline

    def progress(stage: str, status: str) -> None:
        with open(args.events, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"stage": stage, "status": status, "t": time.time()}) + "\n")
        print(f"{stage:>7} {status}", flush=True)

    cfg = load_config(args.config, args.overrides)
    if args.iterate:
        result, _ = run_iteration(cfg, progress=progress)
    else:
        result = run_pipeline(cfg, progress=progress)
    print(f"done: {result.run_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
