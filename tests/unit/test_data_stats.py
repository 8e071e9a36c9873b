"""`data stats`: counts by kind/source/split, token-length distribution, drops and the KB quality score."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from verticalize.artifacts import RunDir, write_json, write_jsonl
from verticalize.data.schema import make_example
from verticalize.data.stats import approx_tokens, dataset_stats, distribution


def test_approx_tokens_counts_cjk_characters_and_words():
    assert approx_tokens("LoRA 的秩 r=8") == 6  # LoRA, 的, 秩, r, =, 8
    assert approx_tokens("") == 0
    assert distribution([5, 1, 3]) == {"n": 3, "min": 1, "p50": 3, "p90": 5, "p99": 5, "max": 5, "mean": 3.0}


def test_stats_of_a_run(tmp_path: Path):
    run = RunDir(tmp_path / "run")
    syn = make_example("年费多少？", "100元", kind="synthetic", generator="rules:number", source="card.md", doc_id="d1")
    aug = make_example("年费是多少钱？", "100元", kind="augmented", generator="augment:paraphrase", parent_id=syn["id"])
    seed = make_example("Refund?", "refund", kind="seed", generator="seed:classification", task="classification",
                        source="s.csv")
    write_jsonl(run.dataset_split("train"), [syn, aug])
    write_jsonl(run.dataset_split("validation"), [])
    write_jsonl(run.dataset_split("test"), [seed])
    write_json(run.stage("data") / "manifest.json", {"counts": {
        "filter_drops": {"grounding:answer_not_in_chunk": 4}, "dedup": {"exact": 2},
        "decontamination": {"train": 1, "validation": 0}}})
    write_json(run.kb_dir / "manifest.json", {"quality": {"score": 7.5, "effective_tokens": 1200}})
    s = dataset_stats(run)
    assert s["splits"] == {"train": 2, "validation": 0, "test": 1}
    assert s["by_kind"] == {"train": {"synthetic": 1, "augmented": 1}, "validation": {}, "test": {"seed": 1}}
    assert s["by_source"] == {"card.md": 1, "(none)": 1, "s.csv": 1}
    assert s["labels"] == {"refund": 1}
    assert s["lengths"]["question_chars"]["max"] == 7 and s["lengths"]["answer_tokens"]["p50"] == 2
    assert s["filter_drops"] == {"grounding:answer_not_in_chunk": 4}
    assert s["decontamination"] == {"train": 1, "validation": 0}
    assert s["kb_quality"] == {"score": 7.5, "effective_tokens": 1200}
    (run.kb_dir / "manifest.json").write_text("{broken", encoding="utf-8")
    assert dataset_stats(run)["kb_quality"] is None


def test_stats_without_dataset_says_what_to_do(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="run `verticalize data build` first"):
        dataset_stats(tmp_path)
