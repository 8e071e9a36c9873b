"""Training: the methods registered in ``verticalize.methods`` (LoRA and its variants, prefix/prompt tuning, IA3,
full, ...), SFT with assistant-only loss and packing, early stopping, checkpoints with exact resume, layered
stages, and distributed runs through Accelerate.

Public API:
    train(cfg, run, resume=False, on_step=None) -> dict   train every stage of cfg.train into RUN/train/
    list_adapters(run_root) -> list[dict]                   the stage adapters of a run, parents first
    TrainError                                             a setting or input that cannot be trained (message says
                                                           what to change); DatasetFileError for a missing file
"""

from verticalize.train.data import DatasetFileError, TrainError
from verticalize.train.loop import DivergedError
from verticalize.train.report import list_adapters
from verticalize.train.trainer import plan_stages, train

__all__ = ["train", "list_adapters", "plan_stages", "TrainError", "DatasetFileError", "DivergedError"]
