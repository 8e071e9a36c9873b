"""Layered stages (pretrain on the corpus → classification on top) with lineage, `adapters list`, and the CLI's
one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from verticalize.artifacts import RunDir, read_jsonl
from verticalize.cli import app
from verticalize.config import load_config
from verticalize.train import train


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_run(run: Path) -> None:
    (run / "ingest").mkdir(parents=True)
    (run / "data").mkdir(parents=True)
    texts = ["The annual fee is waived after six uses of the card.", "Loans need proof of income.",
             "逾期超过90天停止计息。", "Restart the service with systemctl restart app.", "第十二条 借款人不得炒股。"]
    (run / "ingest" / "chunks.jsonl").write_text("".join(
        json.dumps({"id": f"d{i}:0000", "doc_id": f"d{i}", "source": f"doc{i}.txt", "title": "", "text": t,
                    "start": 0, "lang": "en"}) + "\n" for i, t in enumerate(texts * 2)))
    labels = ["billing", "outage"]

    def row(i: int) -> dict:
        label = labels[i % 2]
        text = "My card fee is wrong" if label == "billing" else "The app is down again"
        return {"id": f"c{i}", "messages": [{"role": "user", "content": f"{text} #{i}"},
                                            {"role": "assistant", "content": label}],
                "meta": {"kind": "seed", "task": "classification", "label": label}}
    for split, rows in (("train", range(16)), ("validation", range(100, 104))):
        (run / "data" / f"{split}.jsonl").write_text("".join(json.dumps(row(i)) + "\n" for i in rows))
    (run / "data" / "labels.json").write_text(json.dumps(labels))


def stage_overrides(model: Path, run: Path) -> list[str]:
    stages = ('[{"name": "domain", "task": "pretrain", "data": "corpus", "learning_rate": 0.02}, '
              '{"name": "tickets", "task": "classification", "data": "dataset"}]')
    return [f"model.base={model}", f"project.run_dir={run}", "train.max_steps=3", "train.batch_tokens=256", "train.precision=fp32",
            "train.learning_rate=0.01", f"train.stages={stages}"]


def test_layered_stages_continue_from_the_parent_and_record_lineage(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    run = tmp_path / "run"
    write_run(run)
    summary = train(load_config(None, stage_overrides(tiny_model_dir, run)), RunDir(run))
    assert [s["name"] for s in summary["stages"]] == ["domain", "tickets"]
    domain, tickets = summary["stages"]
    assert domain["task"] == "pretrain" and domain["parent"] is None and domain["data"] == "corpus"
    assert tickets["task"] == "classification" and tickets["parent"] == "domain"
    assert tickets["layering"] == "merged-parents" and domain["layering"] is None
    assert tickets["labels"] == ["billing", "outage"]
    adapters = run / "train" / "adapters"
    assert (adapters / "tickets" / "labels.json").is_file()
    a = load_file(str(adapters / "domain" / "adapter_model.safetensors"))
    b = load_file(str(adapters / "tickets" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)
    # the task stage trained on base+domain: its validation loss at step 0 is the domain-merged model's, and the
    # models package's loader rebuilds that stack (parents merged, then the stage adapter)
    from verticalize.models import load_adapter
    from verticalize.train.batching import collate, plan_batches
    from verticalize.train.data import ChatEncoder, load_chat_examples
    from verticalize.train.loop import loss_sum

    cfg = load_config(None, stage_overrides(tiny_model_dir, run))
    model, tok = load_adapter(cfg.model, adapters / "tickets", dtype=torch.float32)
    val, _ = load_chat_examples(run / "data" / "validation.jsonl",
                                ChatEncoder(tok, cfg.project.system_prompt, 1024), task="classification")
    batch = plan_batches(val, 10**6, packing=True, seed=0, epoch=0, shuffle=False)[0]
    with torch.no_grad():
        reloaded = loss_sum(model.eval(), collate(val, batch, packing=True, pad_id=0), 0, torch.device("cpu"))
    assert reloaded.item() / batch.n_targets == pytest.approx(tickets["metrics"]["best_val_loss"], rel=1e-4)
    stages_logged = {r["stage"] for r in read_jsonl(run / "train" / "metrics.jsonl")}
    assert stages_logged == {"domain", "tickets"}

    result = CliRunner().invoke(app, ["adapters", "list", str(run)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.output.splitlines() if "domain" in ln or "tickets" in ln]
    assert "domain" in lines[0] and "pretrain" in lines[0]
    assert "tickets" in lines[1] and "classification" in lines[1] and "domain" in lines[1]

    # --resume on a finished run skips the complete stages (same fingerprints) and trains nothing again
    again = train(load_config(None, stage_overrides(tiny_model_dir, run)), RunDir(run), resume=True)
    assert again["stages"][1]["created"] == tickets["created"]


def _cli(*args: str):
    return CliRunner().invoke(app, list(args))


def _one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in result.output.replace("\n", " "), result.output


def test_cli_train_trains_and_prints_the_summary(tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    write_run(run)
    result = _cli("train", "--run", str(run), "--set", f"model.base={tiny_model_dir}", "--set",
                  "data.task=classification", "--set", "train.max_steps=2", "--set", "train.batch_tokens=256")
    assert result.exit_code == 0, result.output
    assert "task: lora classification" in result.output and "2 steps" in result.output
    assert (run / "train" / "adapters" / "task" / "adapter_model.safetensors").is_file()


def test_cli_errors_are_one_clear_line(tiny_model_dir, tmp_path):
    empty_run = tmp_path / "empty"
    _one_line_error(_cli("train", "--run", str(empty_run), "--set", f"model.base={tiny_model_dir}"),
                    "no training data at", "run `verticalize data` first")

    bad = tmp_path / "bad"
    (bad / "data").mkdir(parents=True)
    (bad / "data" / "train.jsonl").write_text("{broken\n[1, 2]\n")
    _one_line_error(_cli("train", "--run", str(bad), "--set", f"model.base={tiny_model_dir}"),
                    "no usable training examples", "not valid JSON")

    (bad / "data" / "train.jsonl").write_text("")
    _one_line_error(_cli("train", "--run", str(bad), "--set", f"model.base={tiny_model_dir}"), "the file is empty")

    ok = tmp_path / "ok"
    write_run(ok)
    _one_line_error(_cli("train", "--run", str(ok), "--set", f"model.base={tmp_path / 'no-such-model'}"),
                    "no-such-model")
    _one_line_error(_cli("train", "--run", str(ok), "--set", f"model.base={tiny_model_dir}", "--set",
                         "train.method=qlora"), "qlora needs a CUDA GPU")
    _one_line_error(_cli("train", "--run", str(ok), "--set", "train.method=sgd"), "train.method")
    _one_line_error(_cli("train", "--run", str(ok), "--set", f"model.base={tiny_model_dir}", "--set",
                         'train.stages=[{"name": "a", "data": "/nowhere.jsonl"}]'), "/nowhere.jsonl not found")
    _one_line_error(_cli("train", "--run", str(ok), "--set", f"model.base={tiny_model_dir}", "--set",
                         "train.device_memory_gb=0.0001"), "does not fit", "Change one of")
    _one_line_error(_cli("adapters", "list", str(empty_run)), "no adapters in")


def test_the_ladder_and_the_gateway_run_a_layered_stage_with_its_whole_lineage(tiny_model_dir, tmp_path):
    """Stage 2 was trained on the base with stage 1 merged in: the ladder's engine (the gateway's engine) must give
    the logits and the answer of exactly that stack, not of stage 2 alone on the bare base."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from verticalize.engine import GenerationRequest
    from verticalize.artifacts import final_adapter, read_adapters
    from verticalize.evaluate.generation import LadderEngines

    run = tmp_path / "run"
    write_run(run)
    common = stage_overrides(tiny_model_dir, run) + ["train.learning_rate=0.05", "model.dtype=float32"]
    cfg = load_config(None, common + ["serve.engine=embedded"])
    train(cfg, RunDir(run))
    adapter = final_adapter(read_adapters(RunDir(run)))
    assert [a.name for a in adapter.lineage] == ["domain", "tickets"]
    ladder = LadderEngines(cfg, adapter, None, RunDir(run).engine_cache)
    engine = ladder.engine
    assert engine.stacks == {"tickets": ["domain", "tickets"]}

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, run / "train" / "adapters" / "domain").merge_and_unload()
    trained = PeftModel.from_pretrained(merged, run / "train" / "adapters" / "tickets").eval()
    alone = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
                                      run / "train" / "adapters" / "tickets").eval()
    ids = torch.tensor([[1, 5, 9, 13, 17, 21]])
    with torch.inference_mode():
        expected = trained(input_ids=ids).logits
        engine.model.base_model.set_adapter(engine.stacks["tickets"])
        got = engine.model(input_ids=ids).logits
        wrong = alone(input_ids=ids).logits
    assert torch.allclose(got, expected, atol=1e-4)
    assert not torch.allclose(wrong, expected, atol=1e-4)  # stage 2 alone is another model

    conv = [{"role": "user", "content": "My card fee is wrong #3"}]
    served = engine.generate(GenerationRequest(model="tickets", messages=conv, max_tokens=5, temperature=0.0))
    prompt = engine.tokenizer.apply_chat_template(conv, add_generation_prompt=True, return_tensors="pt",
                                                  return_dict=True)
    with torch.inference_mode():
        out = trained.generate(**prompt, max_new_tokens=5, do_sample=False)
    want = engine.tokenizer.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    assert served.text == want
    ladder.close()
    # The split engine's halves serve the stage as one merged model with its parents merged in: the same answer
    # from the ONNX Runtime half (a lone request) and from the OpenVINO half (fp32 / f16 + f32: exact).
    split = LadderEngines(load_config(None, common + ["serve.engine=split", "serve.openvino_weights=f16",
                                                      "serve.openvino_precision=f32",
                                                      "serve.onnxruntime_precision=fp32"]),
                          adapter, None, RunDir(run).engine_cache)
    try:
        assert split.choice["engine"] == "openvino+onnxruntime"
        for half in (split.engine.single, split.engine.batch):
            assert half.generate(GenerationRequest(model="tickets", messages=conv, max_tokens=5,
                                                   temperature=0.0)).text == want
    finally:
        split.close()
