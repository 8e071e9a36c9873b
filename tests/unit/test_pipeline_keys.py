"""The pipeline's stage keys: what makes a stage run again on a rerun."""

from __future__ import annotations

from pathlib import Path

import pytest

from verticalize.config import load_config
from verticalize.pipeline import Pipeline


def _key(tmp_path: Path, stage: str, *overrides: str) -> str:
    cfg = load_config(None, [f"project.run_dir={tmp_path / 'run'}", *overrides])
    return Pipeline(cfg)._key(stage)


@pytest.mark.parametrize("runtime", ["kb.top_k=7", "kb.index_workers=1"])
def test_query_and_build_speed_settings_do_not_rebuild_the_kb(tmp_path: Path, runtime: str):
    assert _key(tmp_path, "kb", runtime) == _key(tmp_path, "kb")
    assert _key(tmp_path, "data", runtime) == _key(tmp_path, "data")  # nor the dataset built from the kb


def _kb_key(tmp_path: Path, *overrides: str) -> str:
    """The kb key as ``execute`` computes it: after the ingest key (which hashes ingest's chunking settings)."""
    p = Pipeline(load_config(None, [f"project.run_dir={tmp_path / 'run'}", *overrides]))
    p.keys["ingest"] = p._key("ingest")
    return p._key("kb")


@pytest.mark.parametrize("index", ["kb.bm25_k1=1.2", "kb.bm25_b=0.5", "kb.rrf_k=30", "ingest.chunk_chars=300",
                                   "ingest.chunk_overlap=0"])
def test_index_and_chunking_settings_rebuild_the_kb(tmp_path: Path, index: str):
    assert _kb_key(tmp_path, index) != _kb_key(tmp_path)
    assert _kb_key(tmp_path, "kb.top_k=7") == _kb_key(tmp_path)


def test_top_k_still_reruns_the_evaluation(tmp_path: Path):
    assert _key(tmp_path, "eval", "kb.top_k=7") != _key(tmp_path, "eval")
