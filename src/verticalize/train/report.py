"""What training leaves behind besides weights: metrics.jsonl, the loss-curve PNG and per-adapter metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from verticalize.artifacts import ADAPTER_META, RunDir, read_adapters, read_jsonl, write_json, write_jsonl


class MetricsLog:
    """Append-only JSONL of training and evaluation rows; on resume, rows after the checkpoint are dropped."""

    def __init__(self, path: Path, enabled: bool = True):
        self.path = path
        self.enabled = enabled

    def truncate_after(self, stage: str, step: int) -> None:
        if not self.enabled or not self.path.is_file():
            return
        rows = [r for r in read_jsonl(self.path) if not (r.get("stage") == stage and r.get("step", 0) > step)]
        write_jsonl(self.path, rows)

    def drop_stage(self, stage: str) -> None:
        if self.enabled and self.path.is_file():
            write_jsonl(self.path, [r for r in read_jsonl(self.path) if r.get("stage") != stage])

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def plot_loss_curve(metrics_path: Path, out_png: Path) -> Path | None:
    """Training loss (per step) and validation loss (per evaluation), one colour per stage."""
    if not metrics_path.is_file():
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(read_jsonl(metrics_path))
    stages = list(dict.fromkeys(r["stage"] for r in rows))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    offset = 0
    for i, stage in enumerate(stages):
        colour = f"C{i}"
        train = [r for r in rows if r["stage"] == stage and "loss" in r]
        val = [r for r in rows if r["stage"] == stage and "val_loss" in r]
        if train:
            ax.plot([offset + r["step"] for r in train], [r["loss"] for r in train], color=colour, alpha=0.6,
                    label=f"{stage} train")
        if val:
            ax.plot([offset + r["step"] for r in val], [r["val_loss"] for r in val], "o--", color=colour,
                    label=f"{stage} validation")
        offset += max([r["step"] for r in train + val] or [0])
    ax.set_xlabel("optimizer step (stages in order)")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title("verticalize training loss")
    ax.grid(alpha=0.3)
    if stages:
        ax.legend()
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def write_adapter_meta(adapter_dir: Path, meta: dict[str, Any]) -> None:
    write_json(adapter_dir / ADAPTER_META, meta)


def list_adapters(run_root: str | Path) -> list[dict[str, Any]]:
    """Every stage adapter of a run, in training order (``artifacts.read_adapters``), with its recorded metadata."""
    run = RunDir(run_root)
    if not run.adapters_dir.is_dir():
        raise FileNotFoundError(f"no adapters in {run.adapters_dir}: run `verticalize train` first")
    return [{**a.meta, "path": str(a.path)} for a in read_adapters(run)]
