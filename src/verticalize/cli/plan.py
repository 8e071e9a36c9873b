"""Plan commands: ``estimate`` (memory, time, cost of a training setting) and ``advise`` (which route)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from verticalize.artifacts import RunDir
from verticalize.cli.common import ConfigOpt, SetOpt, friendly, load, load_for_run
from verticalize.methods import method_names
from verticalize.plan.commands import advice_report, calibration_report, estimate_report

METHODS = ", ".join(method_names())


@friendly
def estimate(config: Optional[Path] = ConfigOpt, set_: Optional[list[str]] = SetOpt,
             method: Optional[str] = typer.Option(None, help=f"Estimate this method instead of train.method "
                                                             f"({METHODS})."),
             compare: bool = typer.Option(False, "--compare", help="Also print full FT vs LoRA vs QLoRA vs prefix "
                                                                   "tuning for the same setting."),
             tokens: Optional[int] = typer.Option(None, help="Training tokens (all epochs) for the time estimate; "
                                                             "default: from the dataset or train.max_steps."),
             as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
             calibrate: Optional[Path] = typer.Option(None, "--calibrate", help="A trained run: record its "
                                                      "measured throughput against the estimate, so later time "
                                                      "estimates on this machine use it.")) -> None:
    """Memory per device, time and cost of training before you train (plan.device, plan.num_devices, ...)."""
    if calibrate is not None:
        cfg = load_for_run(calibrate, config, set_)  # the run's own resolved settings (--config replaces them)
        print(calibration_report(cfg, RunDir(calibrate), as_json=as_json))
        return
    cfg = load(config, set_, [f"train.method={method}"] if method else None)
    print(estimate_report(cfg, with_comparison=compare, tokens=tokens, as_json=as_json))


@friendly
def advise(facts: Optional[Path] = typer.Option(None, "--facts", help="YAML file of facts: task, doc_tokens, "
                                                                      "doc_pages, labelled_examples, compute, "
                                                                      "latency_ms, knowledge_changes_often, "
                                                                      "style_or_format, budget, model_params."),
           task: Optional[str] = typer.Option(None, help="qa, classification or generation."),
           doc_tokens: Optional[int] = typer.Option(None, help="Domain documents, in tokens."),
           doc_pages: Optional[int] = typer.Option(None, help="Domain documents, in pages (≈500 tokens each)."),
           labelled: Optional[int] = typer.Option(None, "--labelled", help="Human-labelled examples you have."),
           compute: Optional[str] = typer.Option(None, help="none, cpu, or NxPROFILE, e.g. 2xa100-80g."),
           latency_ms: Optional[float] = typer.Option(None, help="P99 latency target per answer (ms)."),
           changes_often: Optional[bool] = typer.Option(None, "--changes-often/--stable",
                                                        help="Whether the domain knowledge changes often."),
           style: Optional[bool] = typer.Option(None, "--style/--no-style",
                                                help="Whether a style, format or terminology must be learnt."),
           budget: Optional[str] = typer.Option(None, help="low, medium or high."),
           model_params: Optional[float] = typer.Option(None, help="Base model size in parameters, e.g. 7e9."),
           run: Optional[Path] = typer.Option(None, help="Run directory whose eval/ladder.json refines the advice."),
           config: Optional[Path] = ConfigOpt, set_: Optional[list[str]] = SetOpt,
           as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text.")) -> None:
    """Recommend a route (prompt, rag, peft, peft+rag, full, pretrain) from your facts, with reasons."""
    cfg = load(config, set_) if config is not None else None
    run_dir = run if run is not None or cfg is None else Path(cfg.project.run_dir)
    flags = {"task": task, "doc_tokens": doc_tokens, "doc_pages": doc_pages, "labelled_examples": labelled,
             "compute": compute, "latency_ms": latency_ms, "knowledge_changes_often": changes_often,
             "style_or_format": style, "budget": budget, "model_params": model_params}
    print(advice_report(facts, flags, run_dir, cfg=cfg, as_json=as_json))


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.command("estimate")(estimate)
    app.command("advise")(advise)
