"""Export the canonical dataset (``messages`` JSONL with ``meta``) to the formats other tools read.

- ``alpaca``: {"instruction", "input": "", "output", "system"?, "history"?: [[user, assistant], ...]}
- ``sharegpt``: {"conversations": [{"from": "human"|"gpt", "value"}], "system"?}
- ``llamafactory``: the sharegpt files plus a ``dataset_info.json`` that registers one dataset per split, in the
  schema of LLaMA-Factory's data/README.md (``file_name``, ``formatting``, ``columns``, ``tags``), so
  ``dataset: <name>_train`` in a LLaMA-Factory config trains on it directly.
Exports keep ``id`` but drop ``meta`` (other tools load rows as flat tables and nested provenance gets in the way);
the canonical files remain the source of truth.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from verticalize.artifacts import read_jsonl, write_json, write_jsonl
from verticalize.data.schema import SPLITS, answer_of, question_of
from verticalize.errors import ExportError

FORMATS = ("alpaca", "sharegpt", "llamafactory")


def _turn_pairs(example: dict[str, Any]) -> list[tuple[str, str]]:
    msgs = [m for m in example.get("messages", []) if m.get("role") in ("user", "assistant")]
    pairs = [(msgs[i]["content"], msgs[i + 1]["content"]) for i in range(0, len(msgs) - 1, 2)
             if msgs[i]["role"] == "user" and msgs[i + 1]["role"] == "assistant"]
    return pairs or [(question_of(example), answer_of(example))]


def to_alpaca(example: dict[str, Any], system: str | None = None) -> dict[str, Any]:
    pairs = _turn_pairs(example)
    row: dict[str, Any] = {"id": example.get("id"), "instruction": pairs[-1][0], "input": "",
                           "output": pairs[-1][1]}
    if system:
        row["system"] = system
    if len(pairs) > 1:
        row["history"] = [list(p) for p in pairs[:-1]]
    return row


def to_sharegpt(example: dict[str, Any], system: str | None = None) -> dict[str, Any]:
    conversations = []
    for user, assistant in _turn_pairs(example):
        conversations += [{"from": "human", "value": user}, {"from": "gpt", "value": assistant}]
    row: dict[str, Any] = {"id": example.get("id"), "conversations": conversations}
    if system:
        row["system"] = system
    return row


def llamafactory_entry(file_name: str) -> dict[str, Any]:
    return {
        "file_name": file_name,
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "system": "system"},
        "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"},
    }


def export_dataset(data_dir: str | Path, fmt: str, out_dir: str | Path, *, system_prompt: str | None = None,
                   name: str = "verticalize") -> dict[str, Any]:
    """Write every split found in ``data_dir`` to ``out_dir`` in ``fmt``; returns {"files": [...], "rows": {...}}."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    present = [s for s in SPLITS if (data_dir / f"{s}.jsonl").is_file()]
    if not present:
        raise ExportError(f"no dataset in {data_dir} (expected train/validation/test.jsonl): "
                          "run `verticalize data build` first")
    convert: Callable[[dict[str, Any], str | None], dict[str, Any]] = to_alpaca if fmt == "alpaca" else to_sharegpt
    files, rows, info = [], {}, {}
    for split in present:
        target = out_dir / f"{split}.jsonl"
        rows[split] = write_jsonl(target, (convert(ex, system_prompt) for ex in read_jsonl(data_dir / f"{split}.jsonl")))
        files.append(str(target))
        info[f"{name}_{split}"] = llamafactory_entry(target.name)
    if fmt == "llamafactory":
        write_json(out_dir / "dataset_info.json", info)
        files.append(str(out_dir / "dataset_info.json"))
    return {"format": fmt, "out_dir": str(out_dir), "files": files, "rows": rows}
