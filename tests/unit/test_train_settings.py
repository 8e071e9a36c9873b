"""Precision policy, refused settings and stage planning: decided before any weights load."""

from __future__ import annotations

import pytest
import torch

from verticalize.config import load_config
from verticalize.train import TrainError, plan_stages
from verticalize.train.methods import check_method_supported, layering, lora_targets, resolve_precision

CPU = torch.device("cpu")


def cfg(*overrides: str):
    return load_config(None, list(overrides))


def test_peft_methods_keep_a_bf16_frozen_base_and_full_keeps_fp32_master_weights():
    lora = resolve_precision(cfg("train.precision=bf16").train, CPU)
    assert (lora.base_dtype, lora.autocast) == (torch.bfloat16, None)
    full = resolve_precision(cfg("train.precision=bf16", "train.method=full").train, CPU)
    assert (full.base_dtype, full.autocast) == (torch.float32, torch.bfloat16)
    fp32 = resolve_precision(cfg("train.precision=fp32").train, CPU)
    assert (fp32.base_dtype, fp32.autocast) == (torch.float32, None)


def test_auto_precision_follows_the_hardware():
    from verticalize.models import bf16_supported
    expected = "bf16" if bf16_supported() else "fp32"
    assert resolve_precision(cfg().train, CPU).name == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusals")
def test_cuda_only_settings_are_refused_on_cpu_with_what_to_do():
    with pytest.raises(TrainError, match="qlora needs a CUDA GPU.*use train.method=lora"):
        check_method_supported(cfg("train.method=qlora").train, CPU)
    with pytest.raises(TrainError, match="fp16 needs a CUDA GPU"):
        resolve_precision(cfg("train.precision=fp16").train, CPU)


def test_lora_targets_auto_come_from_the_catalog_or_peft_defaults(tmp_path):
    assert lora_targets(cfg("train.lora.target_modules=[q_proj,k_proj]")) == ["q_proj", "k_proj"]
    from verticalize.models import get_spec
    spec = get_spec("smollm2-135m-instruct")
    assert lora_targets(cfg("train.lora.target_modules=auto")) == list(spec.lora_targets)
    # a local directory that is not in the catalog: PEFT's own default for the architecture (None)
    assert lora_targets(cfg("train.lora.target_modules=auto", f"model.base={tmp_path}")) is None


def test_stage_plan_lineage_and_defaults():
    plans = plan_stages(cfg('train.stages=[{"name": "domain", "task": "pretrain", "data": "corpus", "epochs": 1},'
                            ' {"name": "qa"}, {"name": "tickets", "task": "classification", "learning_rate": 0.001}]',
                            "train.epochs=2", "train.learning_rate=0.0002"))
    assert [(p.name, p.parent, p.ancestors) for p in plans] == [
        ("domain", None, ()), ("qa", "domain", ("domain",)), ("tickets", "qa", ("domain", "qa"))]
    assert [(p.epochs, p.learning_rate) for p in plans] == [(1, 0.0002), (2, 0.0002), (2, 0.001)]
    default = plan_stages(cfg("data.task=classification"))
    assert [(p.name, p.task, p.data) for p in default] == [("task", "classification", "dataset")]
    assert layering("lora") == "merged-parents" and layering("prefix") == layering("full") == "continued"


def test_duplicate_stage_names_are_refused():
    with pytest.raises(TrainError, match="'a' appears twice"):
        plan_stages(cfg('train.stages=[{"name": "a"}, {"name": "a"}]'))
