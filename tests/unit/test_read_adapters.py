"""read_adapters: the one reader of RUN/train/adapters/ (eval, serve and export pick their adapters through it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from verticalize.artifacts import (ADAPTER_META, AdapterMetadataError, RunDir, final_adapter, read_adapters,
                                   write_manifest)


def _adapter(run: RunDir, name: str, parent: str | None = None, *, method: str = "lora",
             layering: str | None = None, created: str = "2025-01-01T00:00:00", **meta) -> Path:
    d = run.adapter_dir(name)
    d.mkdir(parents=True)
    if method != "full":
        (d / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    (d / ADAPTER_META).write_text(json.dumps({"name": name, "method": method, "parent": parent,
                                              "layering": layering, "created": created, "complete": True, **meta}))
    return d


def _train_manifest(run: RunDir, stages: list[str]) -> None:
    write_manifest(run.stage("train"), "train", inputs={s: "dataset" for s in stages}, config={}, counts={},
                   extra={"stages": stages})


def test_no_adapters_directory_is_an_empty_list(tmp_path: Path):
    assert read_adapters(RunDir(tmp_path / "run")) == []
    assert final_adapter([]) is None


def test_single_stage(tmp_path: Path):
    run = RunDir(tmp_path / "run")
    path = _adapter(run, "task", metrics={"train_seconds": 1.5})
    _train_manifest(run, ["task"])
    [a] = read_adapters(run)
    assert (a.name, a.path, a.method, a.final, a.is_full, a.layered) == ("task", path, "lora", True, False, False)
    assert a.ancestors == () and [x.name for x in a.lineage] == ["task"]
    assert a.meta["metrics"]["train_seconds"] == 1.5
    assert final_adapter([a]) is a and final_adapter([a], full=True) is None


def test_two_layered_stages_final_is_the_last_stage_of_the_train_manifest(tmp_path: Path):
    run = RunDir(tmp_path / "run")
    # Names sort the other way round, and the parent was written later: neither decides which stage is final.
    _adapter(run, "zdomain", created="2025-01-02T00:00:00")
    _adapter(run, "atickets", parent="zdomain", layering="merged-parents", created="2025-01-01T00:00:00")
    _train_manifest(run, ["zdomain", "atickets"])
    adapters = read_adapters(run)
    assert [a.name for a in adapters] == ["zdomain", "atickets"]
    root, leaf = adapters
    assert (root.final, leaf.final) == (False, True) and final_adapter(adapters) is leaf
    assert [a.name for a in leaf.lineage] == ["zdomain", "atickets"] and leaf.ancestors[0] is root
    assert leaf.layered and not root.layered


def test_without_a_train_manifest_parents_come_first_then_created_then_name(tmp_path: Path):
    run = RunDir(tmp_path / "run")
    _adapter(run, "b-child", parent="a-root")
    _adapter(run, "a-root")
    _adapter(run, "c-other", created="2024-12-31T00:00:00")  # an unrelated stage, created before the others
    assert [a.name for a in read_adapters(run)] == ["c-other", "a-root", "b-child"]
    assert final_adapter(read_adapters(run)).name == "b-child"
    # The same run dir read twice gives the same answer (nothing depends on file times).
    assert [a.name for a in read_adapters(run)] == [a.name for a in read_adapters(run)]


def test_full_fine_tune_is_final_of_its_own_kind(tmp_path: Path):
    run = RunDir(tmp_path / "run")
    _adapter(run, "task")
    _adapter(run, "whole", method="full")
    adapters = read_adapters(run)
    assert final_adapter(adapters).name == "task" and final_adapter(adapters, full=True).name == "whole"
    assert [a.name for a in adapters if not a.is_full] == ["task"]


def test_an_interrupted_stage_is_left_out(tmp_path: Path):
    run = RunDir(tmp_path / "run")
    _adapter(run, "task")
    _adapter(run, "half", parent="task", complete=False)
    assert [a.name for a in read_adapters(run)] == ["task"]


def test_missing_metadata_names_the_file(tmp_path: Path):
    run = RunDir(tmp_path / "run")
    _adapter(run, "task")
    (run.adapter_dir("copied")).mkdir()
    (run.adapter_dir("copied") / "adapter_config.json").write_text("{}")
    with pytest.raises(AdapterMetadataError, match=f"{run.adapter_meta('copied')} is missing"):
        read_adapters(run)


def test_corrupt_metadata_names_the_file(tmp_path: Path):
    run = RunDir(tmp_path / "run")
    _adapter(run, "task")
    run.adapter_meta("task").write_text("{truncated", encoding="utf-8")
    with pytest.raises(AdapterMetadataError, match=f"{run.adapter_meta('task')} cannot be read"):
        read_adapters(run)
    run.adapter_meta("task").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(AdapterMetadataError, match="is not a JSON object"):
        read_adapters(run)


def test_peft_stage_without_weights_config_and_missing_parent_are_errors(tmp_path: Path):
    run = RunDir(tmp_path / "run")
    _adapter(run, "task")
    (run.adapter_dir("task") / "adapter_config.json").unlink()
    with pytest.raises(AdapterMetadataError, match="has no adapter_config.json"):
        read_adapters(run)
    run2 = RunDir(tmp_path / "run2")
    _adapter(run2, "tickets", parent="domain", layering="merged-parents")
    with pytest.raises(AdapterMetadataError, match=f"{run2.adapter_meta('tickets')} names parent stage 'domain'"):
        read_adapters(run2)


def test_a_train_manifest_without_stages_is_read_in_its_inputs_order(tmp_path: Path):
    run = RunDir(tmp_path / "run")  # run directories written before the manifest recorded "stages"
    _adapter(run, "b")
    _adapter(run, "a")
    write_manifest(run.stage("train"), "train", inputs={"b": "dataset", "a": "corpus"}, config={}, counts={})
    assert [a.name for a in read_adapters(run)] == ["b", "a"] and final_adapter(read_adapters(run)).name == "a"
