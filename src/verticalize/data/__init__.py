"""The dataset stage: seed import, distillation, augmentation, provenance, splits, decontamination, formats.

Public API (other stages use only this and the files it writes under RUN/data/):
    build_dataset(cfg, run, progress=True) -> manifest     RUN/data/{train,validation,test}.jsonl, labels.json
    dataset_stats(run) -> dict                             counts, length distributions, drops, KB quality
    export_dataset(data_dir, fmt, out_dir, system_prompt=None) -> dict   alpaca | sharegpt | llamafactory
    import_seed_files(paths) -> (examples, ImportReport)   the user's labelled examples, bad rows reported
    load_test_set(path) -> (examples, ImportReport)        our JSONL / any seed form / SQuAD JSON
    split_examples(examples, shares, seed, ...) -> SplitResult
    dedup_examples(examples, threshold), decontaminate(splits, threshold)
    make_example(question, answer, kind=..., generator=..., ...) -> dict   the contract schema

Imports are lazy so that importing one module of this package (e.g. the generators) stays cheap.
"""

from __future__ import annotations

from typing import Any

_API = {
    "build_dataset": "verticalize.data.build",
    "DataBuildError": "verticalize.data.build",
    "dataset_stats": "verticalize.data.stats",
    "export_dataset": "verticalize.data.formats",
    "FORMATS": "verticalize.data.formats",
    "import_seed_files": "verticalize.data.seed_import",
    "ImportReport": "verticalize.data.seed_import",
    "load_test_set": "verticalize.data.testset",
    "split_examples": "verticalize.data.splits",
    "SplitResult": "verticalize.data.splits",
    "dedup_examples": "verticalize.data.dedup",
    "decontaminate": "verticalize.data.dedup",
    "make_example": "verticalize.data.schema",
    "question_of": "verticalize.data.schema",
    "answer_of": "verticalize.data.schema",
}

__all__ = list(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'verticalize.data' has no attribute {name!r}")
