"""The ladder end to end on the tiny model: prompt, rag, peft and peft+rag on a handful of examples."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_program

from verticalize.artifacts import RunDir, read_jsonl, write_json, write_jsonl
from verticalize.config import load_config

CHUNKS = [
    ("d1", "cards.md", "The annual fee of the Gold card is 300 yuan and is waived after six purchases a year."),
    ("d2", "loans.md", "A loan application needs proof of income and an identity document."),
    ("d3", "zh.md", "信用卡年费在一年内刷卡六次后免收。逾期超过90天，银行应当停止计息。"),
    ("d4", "ops.md", "Restart the service with systemctl restart app, then check the logs for errors."),
]
QA = [
    ("What is the annual fee of the Gold card?", "300 yuan", "d1"),
    ("What does a loan application need?", "proof of income and an identity document", "d2"),
    ("逾期超过多少天银行停止计息？", "90天", "d3"),
    ("How do you restart the service?", "systemctl restart app", "d4"),
]


def _example(i: int, q: str, a: str, doc: str, kind: str = "synthetic") -> dict:
    return {"id": f"ex{i}", "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
            "meta": {"kind": kind, "task": "qa", "source": f"{doc}.md", "doc_id": doc, "chunk_ids": [f"{doc}:0000"],
                     "generator": "rules:definition", "parent_id": None, "question": q, "answer": a}}


def build_tiny_run(root: Path, tiny_model_dir: Path, *, with_kb: bool = True, with_adapter: bool = True) -> RunDir:
    run = RunDir(root)
    write_jsonl(run.chunks, [{"id": f"{d}:0000", "doc_id": d, "source": s, "title": "", "text": t, "start": 0,
                              "lang": "zh" if d == "d3" else "en"} for d, s, t in CHUNKS])
    write_jsonl(run.dataset_split("train"), [_example(i, q, a, d, "seed") for i, (q, a, d) in enumerate(QA)])
    write_jsonl(run.dataset_split("test"), [_example(10 + i, q, a, d) for i, (q, a, d) in enumerate(QA)])
    if with_kb:
        from verticalize.kb import build_kb
        build_kb(run.chunks, run.kb_dir, load_config().kb)
    if with_adapter:
        _tiny_lora(tiny_model_dir, run.adapters_dir / "task")
    return run


def _tiny_lora(model_dir: Path, out: Path, method: str = "lora") -> None:
    import torch
    from peft import LoraConfig, PrefixTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    # init_lora_weights=False: random B, so the adapter really changes the answers (a zero B would not).
    peft_cfg = (PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4) if method == "prefix" else
                LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model = get_peft_model(base, peft_cfg)
    model.save_pretrained(out)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    write_json(out / "verticalize_adapter.json", {"name": out.name, "method": method, "task": "sft", "parent": None,
                                                  "base": str(model_dir), "trainable_params": trainable,
                                                  "total_params": total, "metrics": {"train_seconds": 12.5}})


def _cfg(run: RunDir, tiny_model_dir: Path, *extra: str):
    return load_config(None, [f"model.base={tiny_model_dir}", f"project.run_dir={run.root}", "eval.max_new_tokens=6",
                              "eval.few_shot=2", "eval.batch_size=3", "kb.top_k=2", *extra])


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> tuple[RunDir, dict]:
    """A tiny run with every artifact the report reads, evaluated with all four rungs once for this module."""
    from verticalize.evaluate import evaluate_run

    run = build_tiny_run(tmp_path_factory.mktemp("ladder") / "run", tiny_model_dir)
    write_json(run.stage("data") / "manifest.json", {"task": "qa", "counts": {
        "splits": {"train": 13, "validation": 0, "test": 4}, "chunks": 4,
        "by_kind": {"train": {"seed": 2, "synthetic": 8, "augmented": 3}, "test": {"synthetic": 4}},
        "filter_drops": {"grounding:low_overlap": 3}, "dedup": {"exact": 1}, "decontamination": 2}})
    write_jsonl(run.stage("train") / "metrics.jsonl",
                [{"stage": "task", "step": i, "epoch": 0, "loss": 3 - 0.1 * i} for i in range(1, 20)]
                + [{"stage": "task", "step": 10, "epoch": 0, "val_loss": 2.5}])
    cfg = _cfg(run, tiny_model_dir, "requirements.gates=[{goal: 响应时延, metric: p99_latency_ms, op: '<', "
                                    "threshold: 600000}]")
    return run, evaluate_run(cfg, run)


def test_ladder_end_to_end_on_tiny_model(evaluated_run: tuple[RunDir, dict]) -> None:
    run, ladder = evaluated_run
    assert ladder["task"] == "qa"
    assert ladder["test_set"] == {"kind": "synthetic", "path": str(run.dataset_split("test")), "n": 4,
                                  "unanswerable": 0, "refused": []}
    assert list(ladder["rungs"]) == ["prompt", "rag", "peft", "peft+rag"]
    for rung, m in ladder["rungs"].items():
        assert 0.0 <= m["f1"] <= 1.0 and 0.0 <= m["exact_match"] <= m["f1"] + 1e-9
        assert m["p50_latency_ms"] <= m["p95_latency_ms"] <= m["p99_latency_ms"]
        assert m["tokens_per_s"] > 0
    # Cost: base-model rungs train nothing; adapter rungs report the adapter's size and training time.
    assert ladder["rungs"]["prompt"]["trainable_params"] == 0
    assert ladder["rungs"]["peft"]["trainable_params"] > 0
    assert ladder["rungs"]["peft"]["adapter_bytes"] > 1000
    assert ladder["rungs"]["peft"]["training_time_s"] == 12.5
    # BM25 finds each question's own chunk in this tiny corpus: gold chunk ids give recall@2 and MRR.
    assert ladder["retrieval"]["basis"] == "chunk"
    assert ladder["rungs"]["rag"]["recall@k"] == ladder["retrieval"]["recall@k"] >= 0.75
    # The gate passes everywhere, so the cheapest rung is recommended.
    assert ladder["recommendation"]["rung"] == "prompt" and ladder["recommendation"]["passes"] is True

    saved = json.loads((run.stage("eval") / "ladder.json").read_text(encoding="utf-8"))
    assert saved["rungs"]["peft"]["f1"] == pytest.approx(ladder["rungs"]["peft"]["f1"])
    prompt_rows = list(read_jsonl(run.stage("eval") / "predictions_prompt.jsonl"))
    rag_rows = list(read_jsonl(run.stage("eval") / "predictions_rag.jsonl"))
    peft_rows = list(read_jsonl(run.stage("eval") / "predictions_peft.jsonl"))
    assert [r["question"] for r in rag_rows] == [q for q, _, _ in QA]
    assert rag_rows[0]["retrieved"][0]["chunk_id"] == "d1:0000"
    assert rag_rows[0]["context"][0] == CHUNKS[0][2] and len(rag_rows[0]["context"]) <= 2
    assert "retrieved" not in prompt_rows[0]
    # The adapter is really switched on for peft and off for the base rungs: the answers differ.
    assert [r["prediction"] for r in peft_rows] != [r["prediction"] for r in prompt_rows] or \
        [r["new_tokens"] for r in peft_rows] != [r["new_tokens"] for r in prompt_rows]
    manifest = json.loads((run.stage("eval") / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["counts"]["examples"] == 4 and manifest["counts"]["rungs"] == 4
    # The forgetting guard: the base and the adapter answer the general probe; the base rungs regress by 0.
    probe_rows = list(read_jsonl(run.general_probe))
    assert {r["model"] for r in probe_rows} == {"base", "task"} and len(probe_rows) == 2 * 26
    assert ladder["rungs"]["prompt"]["general_regression"] == 0.0
    peft = ladder["rungs"]["peft"]
    assert 0.0 <= peft["general_score"] <= 1.0
    assert peft["general_regression"] == pytest.approx(ladder["rungs"]["prompt"]["general_score"]
                                                       - peft["general_score"])
    assert ladder["rungs"]["peft+rag"]["general_score"] == peft["general_score"]  # one model, probed once
    # A LoRA adapter is measured on the base it was trained on, and the ladder says so.
    form = ladder["settings"]["base_form"]
    assert form["trained"] == "unquantised" and form["as_trained"] is True and form["note"] == ""


@pytest.mark.parametrize("engine", ["embedded", "openvino"])
def test_a_qlora_run_measured_without_a_gpu_says_so(tmp_path: Path, tiny_model_dir: Path, engine: str) -> None:
    """QLoRA trains on a 4-bit base; with no CUDA here the ladder answers from the unquantised base and the
    ladder, the report and the model card say it plainly instead of presenting it as the trained model."""
    import torch

    from verticalize.evaluate import evaluate_run
    from verticalize.evaluate.report import write_report

    if torch.cuda.is_available():
        pytest.skip("this machine could load the 4-bit base: the statement is only made without one")
    run = build_tiny_run(tmp_path / "run", tiny_model_dir, with_kb=False)
    _tiny_lora(tiny_model_dir, run.adapters_dir / "task", method="qlora")
    ladder = evaluate_run(_cfg(run, tiny_model_dir, "eval.max_examples=2", "eval.rungs=[prompt,peft]",
                               f"serve.engine={engine}"), run)
    form = ladder["settings"]["base_form"]
    assert ladder["settings"]["engine"]["engine"] == engine
    assert form["trained"] == "nf4" and form["as_trained"] is False
    assert form["loaded"] in (("float32", "bfloat16") if engine == "embedded" else ("q8_0 gguf, adapters merged",))
    assert form["note"].startswith("task trained QLoRA on a 4-bit NF4 base, but this machine cannot load one "
                                   "(no CUDA GPU)")
    html = write_report(run).read_text(encoding="utf-8")
    assert "not from the model as trained" in html
    assert "- Base as measured: task trained QLoRA" in run.model_card.read_text(encoding="utf-8")


def test_missing_adapter_and_kb_skip_rungs_with_reasons(tmp_path: Path, tiny_model_dir: Path) -> None:
    from verticalize.evaluate import evaluate_run

    run = build_tiny_run(tmp_path / "run", tiny_model_dir, with_kb=False, with_adapter=False)
    ladder = evaluate_run(_cfg(run, tiny_model_dir, "eval.max_examples=2"), run)
    assert list(ladder["rungs"]) == ["prompt"]
    assert "verticalize train" in ladder["skipped"]["peft"]
    assert "verticalize kb build" in ladder["skipped"]["rag"]
    assert ladder["test_set"]["n"] == 2


def test_classification_ladder_maps_answers_to_labels(tmp_path: Path, tiny_model_dir: Path) -> None:
    from verticalize.evaluate import evaluate_run

    run = build_tiny_run(tmp_path / "run", tiny_model_dir, with_kb=False, with_adapter=False)
    tickets = [("无法登录网银", "账户"), ("提前还款怎么算利息", "贷款"), ("信用卡被盗刷", "信用卡")]
    write_jsonl(run.dataset_split("test"), [
        {"id": f"t{i}", "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": label}],
         "meta": {"kind": "seed", "task": "classification", "label": label, "question": q, "answer": label,
                  "source": None, "doc_id": None, "chunk_ids": [], "generator": "seed:csv", "parent_id": None}}
        for i, (q, label) in enumerate(tickets)])
    write_json(run.stage("data") / "labels.json", {"labels": ["账户", "贷款", "信用卡"], "counts": {}})
    cfg = _cfg(run, tiny_model_dir, "eval.rungs=[prompt, peft]")
    without_adapter = evaluate_run(cfg, run)
    assert list(without_adapter["rungs"]) == ["prompt"]
    base_answers = [r["prediction"] for r in read_jsonl(run.stage("eval") / "predictions_prompt.jsonl")]
    _tiny_lora(tiny_model_dir, run.adapters_dir / "tickets", method="prefix")  # the seeds' ticket case
    ladder = evaluate_run(cfg, run)
    # With the prefix adapter attached, the prompt rung still runs on the plain base model.
    assert [r["prediction"] for r in read_jsonl(run.stage("eval") / "predictions_prompt.jsonl")] == base_answers
    assert ladder["task"] == "classification" and ladder["labels"] == ["账户", "贷款", "信用卡"]
    assert ladder["test_set"]["kind"] == "human"  # every test row is a human-written seed
    for rung in ("prompt", "peft"):
        m = ladder["rungs"][rung]
        rows = list(read_jsonl(run.stage("eval") / f"predictions_{rung}.jsonl"))
        assert {r["predicted_label"] for r in rows} <= {"账户", "贷款", "信用卡", "(other)"}
        assert m["accuracy"] == sum(r["correct"] for r in rows) / 3
        assert sum(sum(row.values()) for row in m["confusion"].values()) == 3
        assert set(m["per_class"]) == {"账户", "贷款", "信用卡"}
    assert "f1" not in ladder["rungs"]["prompt"]  # QA metrics do not apply


def test_full_finetune_is_measured_as_its_own_rung(tmp_path: Path, tiny_model_dir: Path) -> None:
    import shutil

    from verticalize.evaluate import evaluate_run

    run = build_tiny_run(tmp_path / "run", tiny_model_dir, with_kb=False, with_adapter=False)
    full_dir = run.adapters_dir / "task"
    shutil.copytree(tiny_model_dir, full_dir)  # a full fine-tune is a whole model directory
    write_json(full_dir / "verticalize_adapter.json", {"name": "task", "method": "full", "task": "sft",
                                                       "parent": None, "trainable_params": 117056,
                                                       "total_params": 117056, "metrics": {"train_seconds": 3.0}})
    ladder = evaluate_run(_cfg(run, tiny_model_dir, "eval.max_examples=2"), run)
    assert list(ladder["rungs"]) == ["prompt", "full"]  # added to the default ladder because it exists
    assert ladder["rungs"]["full"]["trainable_params"] == 117056 and ladder["rungs"]["full"]["training_time_s"] == 3
    assert ladder["rungs"]["full"]["adapter_bytes"] > 100_000
    assert "verticalize train" in ladder["skipped"]["peft"]


def test_cli_eval_with_squad_test_set_and_gate_exit_code(tmp_path: Path, tiny_model_dir: Path) -> None:
    run = build_tiny_run(tmp_path / "run", tiny_model_dir, with_kb=False, with_adapter=False)
    squad = {"version": "v1", "data": [{"title": "cards", "paragraphs": [{"context": CHUNKS[0][2], "qas": [
        {"id": "q1", "question": "What is the annual fee?", "answers": [{"text": "300 yuan", "answer_start": 30}]},
        {"id": "q2", "question": "年费多少？", "answers": [{"text": "300元"}, {"text": "三百元"}]},
        {"id": "bad", "question": "no answer here", "answers": []}]}]}]}
    test_file = tmp_path / "human.json"
    test_file.write_text(json.dumps(squad, ensure_ascii=False), encoding="utf-8")
    cmd = [sys.executable, "-m", "verticalize", "eval", str(run.root), "--test-set", str(test_file), "--gate",
           "--set", f"model.base={tiny_model_dir}", "--set", "eval.rungs=[prompt]", "--set", "eval.max_new_tokens=4",
           "--set", "requirements.gates=[{goal: 提升条款解析精度, metric: f1, op: '>=', threshold: 0.99}]"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr
    ladder = json.loads((run.stage("eval") / "ladder.json").read_text(encoding="utf-8"))
    assert ladder["test_set"]["kind"] == "user" and ladder["test_set"]["n"] == 2
    assert ladder["test_set"]["refused"][0]["line"] == "bad"
    assert ladder["recommendation"]["passes"] is False
    assert ladder["recommendation"]["gaps"][0]["goal"] == "提升条款解析精度"
    assert "提升条款解析精度" in proc.stdout and "FAIL" in proc.stdout


def test_cli_eval_bad_test_set_is_one_clear_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    run = build_tiny_run(tmp_path / "run", tiny_model_dir, with_kb=False, with_adapter=False)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n{\"question\": \"q only\"}\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "verticalize", "eval", str(run.root), "--test-set", str(bad),
                           "--set", f"model.base={tiny_model_dir}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    message = " ".join(proc.stderr.split())  # rich wraps long lines at the terminal width
    assert "no usable example" in message and "bad.jsonl:1: invalid JSON" in message
    assert "bad.jsonl:2: missing 'answer'" in message
    assert "Traceback" not in proc.stderr


def test_report_renders_in_headless_chromium(evaluated_run: tuple[RunDir, dict], tmp_path: Path) -> None:
    from PIL import Image, ImageStat

    from verticalize.evaluate import write_report

    chromium = require_program("chromium")
    run, _ = evaluated_run
    report = write_report(run)
    assert report == run.stage("report") / "report.html"
    html = report.read_text(encoding="utf-8")
    assert "<script" not in html and 'src="http' not in html and 'href="http' not in html  # self-contained
    card = (run.stage("report") / "model_card.md").read_text(encoding="utf-8")
    assert "## Licence" in card and "| peft+rag |" in card and "Test set: **synthetic**, 4 examples" in card

    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={tmp_path / 'profile'}",
             "--enable-logging=stderr", "--v=0"]
    shot = tmp_path / "report.png"
    proc = subprocess.run(flags + [f"--screenshot={shot}", "--window-size=1200,2400", "--hide-scrollbars",
                                   report.as_uri()], capture_output=True, text=True, timeout=180)
    assert shot.is_file(), proc.stderr[-2000:]
    dom = subprocess.run(flags + ["--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=180)
    console = [line for line in (proc.stderr + dom.stderr).splitlines() if "CONSOLE" in line]
    assert console == []
    for chart in ("ladder-chart", "latency-chart", "data-composition", "loss-curve"):
        assert f'<svg class="chart {chart}"' in dom.stdout, chart
    assert dom.stdout.count("<rect") > 10 and "<polyline" in dom.stdout
    for heading in ("Business gates", "Ladder", "Latency", "Data", "Knowledge base", "Training", "Sample answers"):
        assert f"<h2>{heading}</h2>" in dom.stdout
    image = Image.open(shot).convert("RGB")
    stat = ImageStat.Stat(image.convert("L"))
    assert stat.stddev[0] > 10, "screenshot is blank"
    assert len(image.getcolors(maxcolors=1 << 20) or []) > 50  # text, bars and lines in many colours


def test_answer_cut_inside_a_multibyte_character_drops_only_the_broken_tail(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from verticalize.batching import decode_whole_chars as _decode_whole_chars

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = tok("年费龘", add_special_tokens=False)["input_ids"]  # 龘 is unseen: byte tokens
    cut = ids[:-1]
    assert tok.decode(cut).endswith("\ufffd")
    assert _decode_whole_chars(tok, cut, cut=True) == "年费"
    assert _decode_whole_chars(tok, ids, cut=True) == "年费龘"
    assert _decode_whole_chars(tok, cut, cut=False).endswith("\ufffd")  # finished answers are left alone


def test_what_the_ladder_measures_is_what_serve_answers(tmp_path: Path, tiny_model_dir: Path) -> None:
    """The same questions to the ladder and to `verticalize serve` (real HTTP, the openai client) at temperature 0:
    every rung's answer text is the served text, with retrieval for the rag rungs."""
    from conftest import ServerProcess

    from verticalize.evaluate import evaluate_run

    run = build_tiny_run(tmp_path / "run", tiny_model_dir)
    overrides = ["eval.batch_size=1", "eval.few_shot=0"]
    cfg = _cfg(run, tiny_model_dir, *overrides)
    evaluate_run(cfg, run)
    (run.root / "config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
    server = ServerProcess(run.root)
    try:
        client = server.client()
        base = client.models.list().data[0].id
        for rung, model, rag in [("prompt", base, False), ("rag", base, True), ("peft", "task", False),
                                 ("peft+rag", "task", True)]:
            for row in read_jsonl(run.stage("eval") / f"predictions_{rung}.jsonl"):
                reply = client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": row["question"]}], temperature=0,
                    max_tokens=cfg.eval.max_new_tokens, extra_body={"rag": rag})
                assert reply.choices[0].message.content.strip() == row["prediction"], (rung, row["question"])
                if rag:
                    assert [s["chunk_id"] for s in reply.model_extra["sources"]] == \
                        [h["chunk_id"] for h in row["retrieved"]]
    finally:
        server.stop()
