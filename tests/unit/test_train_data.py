"""Chat encoding (assistant-only loss masks), row validation, batching plans and packed attention isolation."""

from __future__ import annotations

import json

import pytest
import torch

from verticalize.train.batching import IGNORE, collate, plan_batches, shard, windows
from verticalize.train.data import ChatEncoder, Example, TrainError, holdout_split, load_chat_examples, \
    load_text_examples


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _chat(q: str, a: str, task: str = "qa") -> dict:
    return {"id": q[:8], "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
            "meta": {"task": task}}


def test_loss_mask_covers_exactly_the_assistant_turn(tok):
    enc = ChatEncoder(tok, "SYSTEM RULES", max_len=512)
    ids, mask, truncated = enc.encode([{"role": "user", "content": "What is the fee?"},
                                       {"role": "assistant", "content": "100 yuan."}])
    trained = tok.decode([t for t, m in zip(ids, mask) if m])
    prompt = tok.decode([t for t, m in zip(ids, mask) if not m])
    assert trained.startswith("100 yuan.<|im_end|>")
    assert "SYSTEM RULES" in prompt and "What is the fee?" in prompt and "100 yuan" not in prompt
    assert prompt.rstrip().endswith("<|im_start|>assistant")
    assert not truncated


def test_every_assistant_turn_of_a_multi_turn_chat_is_trained(tok):
    enc = ChatEncoder(tok, None, max_len=512)
    ids, mask, _ = enc.encode([{"role": "user", "content": "a?"}, {"role": "assistant", "content": "first"},
                               {"role": "user", "content": "b?"}, {"role": "assistant", "content": "second"}])
    trained = tok.decode([t for t, m in zip(ids, mask) if m])
    assert "first" in trained and "second" in trained and "b?" not in trained


def test_full_loss_mode_trains_every_token(tok):
    enc = ChatEncoder(tok, None, max_len=512, assistant_only=False)
    ids, mask, _ = enc.encode([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])
    assert mask == [1] * len(ids)


def test_bad_rows_are_reported_with_line_and_reason_and_the_rest_is_kept(tok, tmp_path):
    path = tmp_path / "train.jsonl"
    rows = [json.dumps(_chat("good question", "good answer")), "{not json",
            json.dumps({"messages": [{"role": "user", "content": "no answer"}]}),
            json.dumps({"messages": "text"}), json.dumps(_chat("label me", "spam", task="classification"))]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    examples, report = load_chat_examples(path, ChatEncoder(tok, None, 256), task="sft")
    assert [e.id for e in examples] == ["good que"]
    assert report.other_task == 1
    assert len(report.refused) == 3
    assert f"{path}:2: not valid JSON" in report.refused[0]
    assert "no non-empty assistant message" in report.refused[1]
    assert "'messages' must be a non-empty list" in report.refused[2]
    cls, cls_report = load_chat_examples(path, ChatEncoder(tok, None, 256), task="classification")
    assert [e.id for e in cls] == ["label me"] and cls_report.other_task == 3


def test_an_answer_cut_off_by_max_seq_len_is_refused(tok, tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(_chat("long question " * 40, "answer")) + "\n", encoding="utf-8")
    examples, report = load_chat_examples(path, ChatEncoder(tok, None, 32))
    assert examples == [] and "beyond model.max_seq_len (32 tokens)" in report.refused[0]


def test_text_examples_train_every_token_and_end_with_eos(tok, tmp_path):
    path = tmp_path / "chunks.jsonl"
    path.write_text(json.dumps({"id": "d:0000", "text": "The loan fee is waived."}) + "\n"
                    + json.dumps({"id": "d:0001", "text": ""}) + "\n", encoding="utf-8")
    examples, report = load_text_examples(path, ChatEncoder(tok, None, 64))
    assert len(examples) == 1 and examples[0].input_ids[-1] == tok.eos_token_id
    assert sum(examples[0].loss_mask) == len(examples[0]) and len(report.refused) == 1


def test_missing_chat_template_is_a_clear_error(tok):
    import copy
    bare = copy.deepcopy(tok)
    bare.chat_template = None
    with pytest.raises(TrainError, match="no chat template"):
        ChatEncoder(bare, None, 64)


def _examples(lengths: list[int]) -> list[Example]:
    return [Example(f"e{i}", list(range(1, n + 1)), [0] * (n // 2) + [1] * (n - n // 2))
            for i, n in enumerate(lengths)]


def test_packing_plan_respects_the_budget_is_deterministic_and_covers_every_example():
    exs = _examples([30, 50, 10, 70, 20, 40, 90, 5, 60, 15])
    a = plan_batches(exs, 100, packing=True, seed=7, epoch=0)
    assert a == plan_batches(exs, 100, packing=True, seed=7, epoch=0)
    assert a != plan_batches(exs, 100, packing=True, seed=7, epoch=1)
    assert sorted(i for b in a for i in b.indices) == list(range(10))
    assert all(b.n_tokens <= 100 for b in a)
    padded = plan_batches(exs, 100, packing=False, seed=7, epoch=0)
    assert all(len(b.indices) * max(len(exs[i]) for i in b.indices) <= 100 for b in padded)


def test_packed_micro_batches_run_as_rows_no_longer_than_pack_len():
    exs = _examples([30, 50, 10, 70, 20, 40, 90, 5, 60, 15, 120])
    batches = plan_batches(exs, 200, packing=True, seed=3, epoch=0, pack_len=64)
    assert sorted(i for b in batches for i in b.indices) == list(range(11))
    for b in batches:
        assert b.n_tokens <= 200 or len(b.parts) == 1
        for part in b.parts:  # a row holds several examples only while they fit in pack_len
            assert sum(len(exs[i]) for i in part) <= 64 or len(part) == 1
    assert max(len(b.parts) for b in batches) > 1


def test_shards_are_disjoint_and_even():
    batches = plan_batches(_examples([10] * 11), 20, packing=True, seed=0, epoch=0)  # 6 batches
    s0, s1 = shard(batches, 0, 2), shard(batches, 1, 2)
    assert len(s0) == len(s1) == 3
    assert not {i for b in s0 for i in b.indices} & {i for b in s1 for i in b.indices}
    assert [len(w) for w in windows(s0, 2)] == [2, 1]


def test_packed_targets_never_cross_example_boundaries():
    exs = _examples([4, 6])
    batch = plan_batches(exs, 100, packing=True, seed=0, epoch=0, shuffle=False)[0]
    t = collate(exs, batch, packing=True, pad_id=0)
    assert t["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2, 3, 4, 5]]
    # example 0: positions 1..2 predict tokens 3..4 (trained half); its last position predicts nothing
    assert t["targets"].tolist() == [[IGNORE, 3, 4, IGNORE, IGNORE, IGNORE, 4, 5, 6, IGNORE]]


def test_packed_examples_do_not_attend_to_each_other(tiny_model_dir):
    """Loss of a packed row == sum of the losses of the same examples run one by one."""
    from transformers import AutoModelForCausalLM

    from verticalize.train.loop import loss_sum

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    exs = [Example(f"e{i}", torch.randint(3, 400, (n,)).tolist(), [0] * 3 + [1] * (n - 3))
           for i, n in enumerate([12, 20, 7])]
    packed = plan_batches(exs, 1000, packing=True, seed=0, epoch=0, shuffle=False)
    assert len(packed) == 1 and len(packed[0].indices) == 3
    with torch.no_grad():
        together = loss_sum(model, collate(exs, packed[0], packing=True, pad_id=0), 0, torch.device("cpu"))
        alone = sum(loss_sum(model, collate(exs, b, packing=True, pad_id=0), 0, torch.device("cpu"))
                    for b in plan_batches(exs, 1, packing=True, seed=0, epoch=0, shuffle=False))
        padded = loss_sum(model, collate(exs, packed[0], packing=False, pad_id=0), 0, torch.device("cpu"))
    assert together.item() == pytest.approx(alone.item(), rel=1e-5)
    assert padded.item() == pytest.approx(alone.item(), rel=1e-5)


def test_holdout_is_stable_and_never_empty_for_small_sets():
    exs = _examples([5] * 10)
    train, val = holdout_split(exs)
    assert len(val) >= 1 and len(train) + len(val) == 10
    assert [e.id for e in holdout_split(exs)[1]] == [e.id for e in val]
