"""The ladder on the real embedded SmolLM2-135M-Instruct (slow): retrieval must visibly help on fictional facts."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_eval_ladder import QA, build_tiny_run

from verticalize.config import load_config


@pytest.mark.slow
def test_rag_beats_prompt_on_fictional_facts_with_smollm2(tmp_path: Path, tiny_model_dir: Path) -> None:
    from verticalize.evaluate import evaluate_run

    run = build_tiny_run(tmp_path / "run", tiny_model_dir, with_adapter=False)
    cfg = load_config(None, [f"project.run_dir={run.root}", "eval.rungs=[prompt, rag]", "eval.max_new_tokens=24",
                             "eval.few_shot=0", "kb.top_k=1",
                             "project.system_prompt=Answer briefly from the reference passages."])
    ladder = evaluate_run(cfg, run)
    prompt, rag = ladder["rungs"]["prompt"], ladder["rungs"]["rag"]
    assert ladder["test_set"]["n"] == len(QA)
    # The facts are invented, so the base model cannot know them; with the passage in the prompt it can copy them.
    assert rag["f1"] > prompt["f1"] + 0.2, (prompt, rag)
    assert rag["recall@k"] == 1.0
