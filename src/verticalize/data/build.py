"""`verticalize data build`: chunks + seed data -> RUN/data/{train,validation,test}.jsonl with provenance.

Order of work, and why:
1. distil: generators turn RUN/ingest/chunks.jsonl into synthetic pairs; the grounding filter drops unsupported
   ones (counted by reason), then no generator kind keeps more than ``data.max_kind_share`` of them (the surplus
   is dropped and counted). Skipped when there is no corpus (seed-only) or the task is classification.
2. import seed data (bad rows reported with file:line) and put it first, so human rows win dedup.
3. dedup (exact question / near question+answer), then split by source-document group: test from seed first,
   or the user's test file (project.test_set) instead; a classification dataset is split label by label
   (stratified) so every label reaches training and test where its count allows.
4. augment the training split only. Done after splitting so a variant can never land in another split than its
   parent, validation/test stay the un-augmented distribution they are meant to measure, and the teacher is not
   paid for variants that would be thrown away. New variants are deduplicated against training.
5. decontaminate: training/validation questions that duplicate a test question are removed (counted).
6. write the splits, labels.json (classification) and the manifest.
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from typing import Any, Iterator

from verticalize.artifacts import RunDir, file_fingerprint, read_jsonl, write_json, write_jsonl, write_manifest
from verticalize.config import Config, ConfigError
from verticalize.data.augment import augment
from verticalize.data.balance import cap_kind_shares
from verticalize.data.context import contextualise
from verticalize.data.dedup import decontaminate, dedup_examples
from verticalize.data.general_mix import mix_general
from verticalize.data.generators import make_generators
from verticalize.data.grounding import grounding_filter
from verticalize.data.schema import SPLITS, kind_of, problem_with
from verticalize.data.seed_import import ImportReport, import_seed_files, seed_files
from verticalize.data.splits import overlap_report, split_examples
from verticalize.data.testset import load_test_set
from verticalize.kb import open_kb
from verticalize.openai_client import TeacherClient

_GEN_BATCH = 32  # chunks handed to a generator at once: progress granularity vs. teacher concurrency


class DataBuildError(ConfigError):
    """Nothing to build from, or nothing left after filtering; the message says what to change."""


@contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        yield bar


def distil(chunks: list[dict[str, Any]], cfg: Config, bar: Any = None,
           generators: list[Any] | None = None) -> tuple[list[dict], dict[str, Any]]:
    """Synthetic examples from chunks (generators + grounding filter + kind-share cap) and a report of what
    happened (``kind_cap_drops``: examples dropped per generator kind by ``data.max_kind_share``).

    ``generators`` defaults to the ones ``data.generator`` names.
    """
    generated: list[dict[str, Any]] = []
    by_generator: Counter = Counter()
    malformed: Counter = Counter()
    generators = make_generators(cfg.data) if generators is None else generators
    for gen in generators:
        task = bar.add_task(f"distil ({gen.name})", total=len(chunks)) if bar else None
        for start in range(0, len(chunks), _GEN_BATCH):
            batch = chunks[start:start + _GEN_BATCH]
            for ex in gen.generate(batch):
                by_generator[gen.name] += 1
                problem = problem_with(ex)
                if problem:  # a generator bug must not poison the dataset: count it and go on
                    malformed[f"{gen.name}: {problem}"] += 1
                    continue
                generated.append(ex)
            if bar:
                bar.advance(task, len(batch))
    chunks_by_id = {c["id"]: c for c in chunks}
    kept, drops = grounding_filter(generated, chunks_by_id, cfg.data.grounding_threshold)
    kept, cap_drops = cap_kind_shares(kept, cfg.data.max_kind_share, cfg.project.seed)
    report = {"generated": dict(by_generator), "malformed": dict(malformed), "grounding_drops": dict(drops),
              "kind_cap_drops": dict(sorted(cap_drops.items())), "kept": len(kept),
              "generators": {g.name: _generator_report(g) for g in generators}}
    return kept, report


def _generator_report(gen: Any) -> dict[str, Any]:
    """What a generator tells about itself (rule hits, teacher token usage); read defensively."""
    out: dict[str, Any] = {}
    if callable(getattr(gen, "report", None)):
        try:
            out.update(gen.report() or {})
        except Exception as e:  # a report must never sink a finished build
            out["report_error"] = str(e)
    usage = getattr(getattr(gen, "teacher", None), "usage", None)
    if usage is not None and hasattr(usage, "to_dict"):
        out["teacher_usage"] = usage.to_dict()
    return out


def _teacher_for_augmentation(cfg: Config) -> Any:
    aug = cfg.data.augment
    if not (aug.back_translation or aug.paraphrase):
        return None
    return TeacherClient.from_config(cfg.data.teacher)


def _step(bar: Any, description: str, total: int) -> Any:
    """A progress callback ``advance(n)`` for one step (a no-op without a progress display)."""
    if bar is None:
        return None
    task = bar.add_task(description, total=total)
    return lambda n: bar.advance(task, n)


def _augment_train(train: list[dict], cfg: Config, bar: Any = None) -> tuple[list[dict], dict[str, Any]]:
    teacher = _teacher_for_augmentation(cfg)
    try:
        new, counts = augment(train, cfg.data.augment, teacher=teacher, seed=cfg.project.seed)
    finally:
        if teacher is not None:
            teacher.close()
    malformed = Counter(p for p in map(problem_with, new) if p)
    new = [e for e in new if problem_with(e) is None]
    kept, dropped = dedup_examples(train + list(new), cfg.data.dedup_threshold,
                                   advance=_step(bar, "dedup augmented", len(train) + len(new)))
    report = {"made": len(new), "by_operation": dict(counts), "dropped_as_duplicates": dict(dropped),
              "malformed": dict(malformed)}
    if teacher is not None:
        report["teacher_usage"] = teacher.usage.to_dict()
    return kept, report


def _resolve_task(cfg: Config, seed: list[dict], has_chunks: bool) -> str:
    if cfg.data.task == "classification":
        return "classification"
    if seed and not has_chunks and all((e["meta"].get("task") == "classification") for e in seed):
        return "classification"
    return "qa"


def _inputs(cfg: Config, run: RunDir) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    if run.chunks.is_file():
        inputs["chunks"] = {"path": str(run.chunks), "fingerprint": file_fingerprint(run.chunks)}
    if cfg.project.seed_data:
        inputs["seed_data"] = {str(p): file_fingerprint(p) for p in seed_files(cfg.project.seed_data)}
    if cfg.project.test_set:
        inputs["test_set"] = {"path": cfg.project.test_set, "fingerprint": file_fingerprint(cfg.project.test_set)}
    return inputs


def _check_strict(*reports: ImportReport | None) -> None:
    problems = [p for r in reports if r is not None for p in r.problems]
    if problems:
        raise DataBuildError(f"--strict: {len(problems)} input row(s) refused, e.g. " + "; ".join(problems[:3]))


def build_dataset(cfg: Config, run: RunDir, *, progress: bool = True, strict: bool = False) -> dict[str, Any]:
    """Build the dataset of ``run`` from its chunks and the configured seed/test files; returns the manifest.

    ``strict``: a refused seed or test-set row fails the build instead of being reported and skipped.
    """
    out_dir = run.ensure("data")
    chunks = list(read_jsonl(run.chunks)) if run.chunks.is_file() else []
    seed, seed_report = (import_seed_files(cfg.project.seed_data) if cfg.project.seed_data
                         else ([], ImportReport()))
    # Read the test file before distilling, so a wrong path fails before any teacher token is spent.
    test_examples, test_report = load_test_set(cfg.project.test_set) if cfg.project.test_set else (None, None)
    if strict:
        _check_strict(seed_report, test_report)
    if not chunks and not seed:
        refused = f" (every seed row was refused: {'; '.join(seed_report.problems[:3])})" if seed_report.problems else ""
        raise DataBuildError(f"nothing to build a dataset from: no chunks at {run.chunks} and no seed examples"
                             f"{refused}. Run `verticalize ingest` on your documents, or set project.seed_data.")
    task = _resolve_task(cfg, seed, bool(chunks))
    drops: Counter = Counter()
    distil_report: dict[str, Any] = {"skipped": "no chunks" if not chunks else "classification task"}
    synthetic: list[dict] = []
    with _progress(progress) as bar:
        if chunks and task == "qa":
            synthetic, distil_report = distil(chunks, cfg, bar)
            drops.update({f"grounding:{k}": v for k, v in distil_report["grounding_drops"].items()})
            drops.update({f"malformed:{k}": v for k, v in distil_report["malformed"].items()})
            drops.update({f"kind_cap:{k}": v for k, v in distil_report["kind_cap_drops"].items()})
        if task == "classification":
            seed = _classification_only(seed, cfg.data.labels, drops)
        pool, dedup_counts = dedup_examples(seed + synthetic, cfg.data.dedup_threshold,
                                            advance=_step(bar, "dedup", len(seed) + len(synthetic)))
        result = split_examples(pool, tuple(cfg.data.split), cfg.project.seed, test_examples=test_examples,
                                seed_test_max_share=cfg.data.test_seed_max_share,
                                stratify_by_label=task == "classification")
        splits = result.splits
        splits["train"], augment_report = _augment_train(splits["train"], cfg, bar)
        decontamination = decontaminate(splits, cfg.data.decontaminate_threshold, advance=_step(
            bar, "decontaminate", len(splits["train"]) + len(splits["validation"])))
    context_report = _add_context_forms(splits, chunks, cfg, run, task)
    splits["train"], general_report = (mix_general(splits["train"], cfg.data.general_mix, cfg.project.seed)
                                       if task == "qa" else (splits["train"], {"skipped": "classification task"}))
    if not splits["train"]:
        raise DataBuildError("the training split is empty after filtering (see the drop counts: "
                             f"{dict(drops) or 'none'}, dedup {dict(dedup_counts)}); add documents or seed data")
    for split in SPLITS:
        write_jsonl(run.dataset_split(split), splits[split])
    labels = _write_labels(run, splits, cfg.data.labels)
    counts = {
        **_composition(splits), "groups": result.groups, "chunks": len(chunks), "seed_imported": len(seed),
        "filter_drops": dict(drops), "dedup": dict(dedup_counts), "augmentation": augment_report,
        "decontamination": decontamination["removed"], "context_forms": context_report,
        "general_mix": general_report,
        "teacher_usage": _teacher_usage(distil_report, augment_report),
    }
    return write_manifest(
        out_dir, "data", inputs=_inputs(cfg, run),
        config={"data": cfg.data.model_dump(mode="json"), "seed": cfg.project.seed}, counts=counts,
        extra={"task": task, "labels": labels, "system_prompt": cfg.project.system_prompt,
               "test_source": result.test_source, "stratified_by_label": task == "classification",
               "doc_overlap": overlap_report(splits),
               "distillation": distil_report, "seed_import": seed_report.to_dict(),
               "test_set_import": test_report.to_dict() if test_report else None,
               "decontaminated_examples": decontamination["examples"]})


def _add_context_forms(splits: dict[str, list[dict]], chunks: list[dict[str, Any]], cfg: Config, run: RunDir,
                       task: str) -> dict[str, Any]:
    """Training and validation pairs also in the retrieval-augmented form the model is asked in (data/context.py).
    Needs the knowledge base (built before this stage from the same chunks); the test split is never changed."""
    if not cfg.data.context.enabled or task != "qa":
        return {"skipped": "data.context.enabled is off" if task == "qa" else "classification task"}
    if not chunks or not run.manifest("kb").is_file():
        return {"skipped": f"no knowledge base at {run.kb_dir} (build it before the dataset)"}
    kb = open_kb(run.kb_dir)
    by_id = {c["id"]: c for c in chunks}
    report: dict[str, Any] = {}
    for split in ("train", "validation"):
        splits[split], report[split] = contextualise(splits[split], by_id, kb, cfg, train=split == "train")
    return report


def _classification_only(seed: list[dict], labels: list[str], drops: Counter) -> list[dict]:
    """For a classification dataset: question/answer rows and labels outside a configured set are refused."""
    kept = [e for e in seed if e["meta"].get("task") == "classification"]
    if len(kept) < len(seed):
        drops["not_classification"] += len(seed) - len(kept)
    if labels:
        allowed = [e for e in kept if e["meta"].get("label") in set(labels)]
        if len(allowed) < len(kept):
            drops["unknown_label"] += len(kept) - len(allowed)
        kept = allowed
    return kept


def _composition(splits: dict[str, list[dict]]) -> dict[str, Any]:
    every = [e for s in SPLITS for e in splits[s]]
    return {"splits": {s: len(splits[s]) for s in SPLITS},
            "by_kind": {s: dict(Counter(kind_of(e) for e in splits[s])) for s in SPLITS},
            "by_source": dict(Counter(str(e["meta"].get("source")) for e in every).most_common()),
            "by_generator": dict(Counter(str(e["meta"].get("generator")) for e in every).most_common())}


def _write_labels(run: RunDir, splits: dict[str, list[dict]], configured: list[str]) -> list[str]:
    """labels.json when there is classification data:
    {"labels": [...], "counts": {label: n}, "by_split": {split: {label: n}}}."""
    by_split = {s: Counter(e["meta"].get("label") for e in splits[s] if e["meta"].get("task") == "classification")
                for s in SPLITS}
    counts = sum(by_split.values(), Counter())
    path = run.labels
    if not counts:
        path.unlink(missing_ok=True)
        return []
    labels = list(configured) or sorted(str(k) for k in counts)
    write_json(path, {"labels": labels, "counts": {k: counts.get(k, 0) for k in labels},
                      "by_split": {s: {k: by_split[s].get(k, 0) for k in labels} for s in SPLITS}})
    return labels


def _teacher_usage(distil_report: dict[str, Any], augment_report: dict[str, Any]) -> dict[str, Any]:
    out = {name: r["teacher_usage"] for name, r in (distil_report.get("generators") or {}).items()
           if isinstance(r, dict) and "teacher_usage" in r}
    if "teacher_usage" in augment_report:
        out["augment"] = augment_report["teacher_usage"]
    return out
