"""data.general_mix: the shipped general-skill examples, disjoint from the forgetting probe, mixed into training."""

from __future__ import annotations

import json
from collections import Counter
from importlib import resources

from verticalize.data.general_mix import load_general_examples, mix_general
from verticalize.data.schema import make_example, problem_with


def _train(n: int) -> list[dict]:
    return [make_example(f"domain question {i}?", f"answer {i}", kind="synthetic", generator="rules:test")
            for i in range(n)]


def test_the_shipped_set_is_valid_and_bilingual() -> None:
    examples = load_general_examples()
    assert len(examples) >= 60 and len({e["id"] for e in examples}) == len(examples)
    assert all(problem_with(e) is None for e in examples)
    langs = Counter(e["meta"]["lang"] for e in examples)
    assert langs["en"] >= 30 and langs["zh"] >= 30
    kinds = Counter(e["meta"]["general_kind"] for e in examples)
    assert {"fact", "instruction", "arithmetic", "refusal"} <= set(kinds)


def test_it_is_disjoint_from_the_forgetting_probe() -> None:
    probe = resources.files("verticalize").joinpath("evaluate", "probes", "general.jsonl").read_text(encoding="utf-8")
    probe_questions = {json.loads(line)["question"].strip().lower() for line in probe.splitlines() if line.strip()}
    questions = {e["meta"]["question"].strip().lower() for e in load_general_examples()}
    assert not probe_questions & questions


def test_mixing_adds_the_share_and_is_reproducible() -> None:
    train = _train(180)
    mixed, report = mix_general(train, 0.1, seed=7)
    general = [e for e in mixed if e["meta"]["generator"] == "general_mix"]
    assert report["added"] == len(general) == 20 and len(mixed) == 200  # 20 of 200 = 0.1
    assert sum(report["by_kind"].values()) == 20
    again, _ = mix_general(train, 0.1, seed=7)
    assert [e["id"] for e in again] == [e["id"] for e in mixed]
    assert mix_general(train, 0.0, seed=7) == (train, {"share": 0.0, "added": 0})


def test_asking_for_more_than_ships_says_so() -> None:
    _, report = mix_general(_train(2000), 0.5, seed=1)
    assert report["added"] == report["available"] < report["wanted"]
    assert "general examples ship with verticalize" in report["note"]


def test_few_shot_demonstrations_stay_the_domains(tmp_path) -> None:
    from verticalize.evaluate.prompts import few_shot_examples

    mixed, _ = mix_general(_train(40), 0.5, seed=3)  # half of the split general, all of kind "seed"
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(e, ensure_ascii=False) for e in mixed) + "\n", encoding="utf-8")
    shots = few_shot_examples(path, 5, "qa", seed=1)
    assert len(shots) == 5 and all(q.startswith("domain question") for q, _ in shots)
