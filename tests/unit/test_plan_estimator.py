"""The memory/time estimator: a hand-computed case, orderings, ZeRO, checkpointing, refusals, PEFT's own counts."""

from __future__ import annotations

import pytest

from verticalize.config import load_config
from verticalize.plan import DoesNotFitError, check_fits, compare, estimate
from verticalize.plan.arch import count_params, resolve_arch

GIB = 1024 ** 3

# A small Llama-style architecture whose numbers are easy to follow by hand.
ARCH = {"num_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 4, "num_kv_heads": 4,
        "vocab_size": 100, "tie_embeddings": True}


def cfg_for(*overrides: str):
    return load_config(None, ["plan.device=a100-80g", "train.precision=fp32", "train.batch_tokens=256",
                              "model.max_seq_len=128", *overrides])


def test_hand_computed_lora_fp32_case():
    est = estimate(cfg_for(), arch=ARCH, tokens=1000)
    # Parameters: per layer q,k,v,o 4·64·64 = 16384, gate/up/down 3·64·128 = 24576, two norms 128 → 41088;
    # 2 layers 82176 + tied embedding 100·64 = 6400 + final norm 64 → 88640.
    assert est.arch.num_params == 88_640
    # LoRA r=8 on q_proj, v_proj: 8·(64+64) = 1024 per module, 2 modules × 2 layers → 4096.
    assert est.trainable == 4096
    m = est.memory
    assert m.weights == 4 * 88_640 + 4 * 4096          # frozen fp32 base + fp32 adapters
    assert m.gradients == 4 * 4096
    assert m.optimizer == 8 * 4096                     # AdamW m and v in fp32
    # Activations, t = s·b = 128·2 = 256 tokens, e = 4 bytes, per layer:
    norms = 2 * 256 * 64 * 4                           # fp32 RMSNorm inputs          131072
    qkv = 256 * 64 * 4 + 2 * 256 * 64 * 4              # q, k, v after RoPE           196608
    attention = 256 * 64 * 4 + 4 * 2 * 4 * 128         # fused output + log-sum-exp    69632
    mlp = 3 * 256 * 128 * 4                            # SwiGLU intermediates         393216
    lora = 2 * (256 * 64 * (4 + 1) + 256 * 8 * 4)      # fp32 input + bool mask, A out 180224
    per_layer = norms + qkv + attention + mlp + lora   # 970752
    assert per_layer == 970_752
    assert m.activations == 2 * per_layer + 256 * 64 * 4   # + final norm → 2007040
    assert m.logits == 256 * 100 * (4 + 12)                # 409600
    assert m.overhead == GIB
    assert m.heap_slack == 0                               # GPU profile: no CPU heap slack
    assert m.total == 370_944 + 16_384 + 32_768 + 2_007_040 + 409_600 + GIB
    # FLOPs per token: 4·N + 6·T + 12·L·h·s = 354560 + 24576 + 196608.
    assert est.flops_per_token == 575_744
    # Throughput: A100 fp32 peak 19.5 TFLOP/s × MFU 0.35.
    assert est.sustained_tflops == pytest.approx(19.5 * 0.35)
    assert est.seconds == pytest.approx(1000 * 575_744 / (19.5 * 0.35e12))


def test_full_finetuning_states_per_parameter():
    fp32 = estimate(cfg_for("train.method=full"), arch=ARCH, tokens=1)
    bf16 = estimate(cfg_for("train.method=full", "train.precision=bf16"), arch=ARCH, tokens=1)
    n = 88_640
    assert (fp32.memory.weights, fp32.memory.gradients, fp32.memory.optimizer) == (4 * n, 4 * n, 8 * n)
    # Mixed precision (autocast): fp32 master + 16-bit working copy, fp32 gradients, m + v.
    assert (bf16.memory.weights, bf16.memory.gradients, bf16.memory.optimizer) == (6 * n, 4 * n, 8 * n)
    assert fp32.flops_per_token == 6 * n + 12 * 2 * 64 * 128


def test_memory_ordering_full_lora_qlora_for_a_7b_model():
    cfg = load_config(None, ["plan.device=a100-80g", "model.base=qwen2.5-7b-instruct"])
    by_method = {e.setting.method: e for e in compare(cfg, tokens=1)}
    assert set(by_method) == {"full", "lora", "qlora", "prefix"}
    assert by_method["full"].memory.total > by_method["lora"].memory.total > by_method["qlora"].memory.total
    # QLoRA stores the base layers at ≈0.516 byte per parameter instead of 2.
    assert by_method["qlora"].memory.weights < 0.4 * by_method["lora"].memory.weights
    assert by_method["full"].trainable_share == 1.0
    assert 0 < by_method["lora"].trainable_share < 0.01
    # Frozen-base methods cost ≈ 4N FLOPs per token instead of 6N.
    assert by_method["lora"].flops_per_token < 0.75 * by_method["full"].flops_per_token


def test_zero_stages_divide_states_by_device_count():
    one = estimate(cfg_for("train.method=full", "train.precision=bf16"), arch=ARCH, tokens=1)
    z1 = estimate(cfg_for("train.method=full", "train.precision=bf16", "plan.num_devices=4", "plan.zero_stage=1"),
                  arch=ARCH, tokens=1)
    z2 = estimate(cfg_for("train.method=full", "train.precision=bf16", "plan.num_devices=4", "plan.zero_stage=2"),
                  arch=ARCH, tokens=1)
    z3 = estimate(cfg_for("train.method=full", "train.precision=bf16", "plan.num_devices=4", "plan.zero_stage=3"),
                  arch=ARCH, tokens=1)
    assert z1.memory.optimizer == one.memory.optimizer / 4
    assert z1.memory.gradients == one.memory.gradients            # stage 1 shards only optimizer states
    assert z2.memory.gradients == one.memory.gradients / 4
    layer_linear = 40_960                                         # two layers gathered in 16-bit while computing
    assert z3.memory.weights == one.memory.weights / 4 + 2 * layer_linear * 2
    assert z3.memory.activations == one.memory.activations        # activations are not sharded
    ddp = estimate(cfg_for("train.method=full", "train.precision=bf16", "plan.num_devices=4"), arch=ARCH, tokens=1)
    assert ddp.memory.gradients == 2 * one.memory.gradients       # DDP buckets copy the gradients
    assert z3.seconds == pytest.approx(one.seconds / 4)


def test_gradient_checkpointing_lowers_activations_and_costs_a_forward():
    cfg = load_config(None, ["plan.device=h100-80g", "model.base=llama-3.1-8b-instruct", "train.batch_tokens=8192",
                             "model.max_seq_len=4096"])
    plain = estimate(cfg, tokens=1)
    ckpt = estimate(cfg, tokens=1, gradient_checkpointing=True)
    assert ckpt.memory.activations < plain.memory.activations / 4
    # Kept: each layer's 16-bit input (t·h·2) plus one recomputed layer.
    t, h, layers = 8192, 4096, 32
    assert ckpt.memory.activations > layers * t * h * 2
    assert ckpt.flops_per_token == pytest.approx(plain.flops_per_token + 2 * plain.arch.matmul_params
                                                 + 4 * layers * h * 4096)


def test_does_not_fit_error_says_totals_and_what_to_change():
    cfg = load_config(None, ["plan.device=l4-24g", "model.base=qwen2.5-7b-instruct", "train.method=full"])
    with pytest.raises(DoesNotFitError) as err:
        check_fits(cfg)
    msg = str(err.value)
    assert "GiB per device" in msg and "22.4 GiB available on l4-24g" in msg
    for hint in ("train.gradient_checkpointing=true", "train.batch_tokens=", "train.method=lora",
                 "train.method=qlora", "plan.zero_stage=3"):
        assert hint in msg
    assert "(fits)" in msg                      # at least one suggestion is computed to fit
    assert isinstance(err.value, ValueError)


def test_check_fits_returns_the_estimate_as_a_dict():
    d = check_fits(cfg_for(), arch=ARCH)
    assert d["fits"] is True
    assert d["params"] == {"total": 88_640, "trainable": 4096, "trainable_share": 4096 / 88_640}
    assert d["memory_gib"]["total"] == pytest.approx(d["memory_bytes"]["total"] / GIB)


def test_device_memory_override_makes_a_setting_refused():
    with pytest.raises(DoesNotFitError, match="0.0 GiB available"):
        check_fits(cfg_for("train.device_memory_gb=0.001"), arch=ARCH)


def test_cpu_estimate_adds_heap_slack_and_cpu_overhead():
    est = estimate(load_config(None, ["plan.device=cpu"]), arch=ARCH, tokens=1)
    assert est.memory.heap_slack == est.memory.activations
    assert est.device.kind == "cpu" and est.available_bytes > 0


def test_unknown_model_and_device_give_clear_errors():
    from verticalize.config import ConfigError

    with pytest.raises(ConfigError, match="neither in the catalog"):
        estimate(load_config(None, ["model.base=no-such-model"]))
    with pytest.raises(ConfigError, match="unknown device profile 'tpu'"):
        estimate(load_config(None, ["plan.device=tpu"]), arch=ARCH)


def test_hf_config_dict_and_num_params_are_accepted():
    hf = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
          "intermediate_size": 128, "vocab_size": 100, "tie_word_embeddings": False, "model_type": "llama"}
    arch = resolve_arch(load_config(None, []).model, hf)
    assert (arch.kv_dim, arch.tie_embeddings) == (32, False)
    assert arch.num_params == count_params(arch)
    sized = resolve_arch(load_config(None, ["model.base=somewhere/unknown"]).model, None, num_params=7_000_000_000)
    assert sized.num_params == 7_000_000_000 and sized.source == "num_params"


def test_trainable_counts_match_peft(tiny_model_dir):
    """The estimator's trainable-parameter count equals what PEFT creates, for each method."""
    from peft import IA3Config, LoraConfig, PrefixTuningConfig, PromptTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    cfg_of = lambda m: load_config(None, [f"model.base={tiny_model_dir}", f"train.method={m}", "plan.device=cpu"])
    peft_configs = {
        "lora": LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
        "dora": LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"], use_dora=True,
                           task_type="CAUSAL_LM"),
        "prefix": PrefixTuningConfig(num_virtual_tokens=20, task_type="CAUSAL_LM"),
        "prompt": PromptTuningConfig(num_virtual_tokens=20, task_type="CAUSAL_LM"),
        "ia3": IA3Config(task_type="CAUSAL_LM"),
    }
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert estimate(cfg_of("full"), tokens=1).arch.num_params == base.num_parameters()
    for method, pc in peft_configs.items():
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), pc)
        real = sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert estimate(cfg_of(method), tokens=1).trainable == real, method


def test_training_tokens_from_max_steps_and_from_the_dataset(tmp_path):
    steps = estimate(cfg_for("train.max_steps=10", "train.grad_accum=2"), arch=ARCH)
    assert steps.tokens == 10 * 2 * 256 and "train.max_steps=10" in steps.tokens_source
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    line = '{"messages": [{"role": "user", "content": "信用卡年费"}]}\n'   # 5 CJK characters
    (run / "data" / "train.jsonl").write_text(line * 3, encoding="utf-8")
    est = estimate(cfg_for(f"project.run_dir={run}", "train.epochs=2"), arch=ARCH)
    per_line = 5 / 1.5 + (len(line) - 5) / 4 + 20        # CJK ≈1.5 chars/token, other ≈4, + template
    assert est.tokens == int(int(3 * per_line) * 2)
    assert "train.jsonl" in est.tokens_source and "2 epochs" in est.tokens_source
    none = estimate(cfg_for(f"project.run_dir={tmp_path / 'empty'}"), arch=ARCH)
    assert none.tokens == 3_000_000 and "pass --tokens" in none.tokens_source


def test_refusal_leaves_the_estimates_measured_error_as_a_margin():
    total = estimate(cfg_for(), arch=ARCH, tokens=0).memory.total
    just_short = f"train.device_memory_gb={0.9 * total / 1e9}"   # 10 % short: within the 25 % error margin
    d = check_fits(cfg_for(just_short), arch=ARCH)
    assert d["fits"] is False and d["warning"].startswith("may not fit: training does not fit: estimated peak")
    far_short = f"train.device_memory_gb={0.5 * total / 1e9}"
    with pytest.raises(DoesNotFitError, match=r"even 25 % below the estimate.*verticalize train --force"):
        check_fits(cfg_for(far_short), arch=ARCH)
    forced = check_fits(cfg_for(far_short, "plan.refuse_unfit=false"), arch=ARCH)
    assert forced["warning"].startswith("does not fit by the estimate, trained anyway")
    with pytest.raises(DoesNotFitError):
        check_fits(cfg_for(just_short, "plan.memory_margin=0.05"), arch=ARCH)


def test_calibration_from_a_measured_run_scales_the_time_estimate(tmp_path, tiny_model_dir):
    import json

    from verticalize.artifacts import RunDir
    from verticalize.plan.calibration import CalibrationError
    from verticalize.plan.commands import calibration_report

    calib = tmp_path / "calibration.json"
    cfg = cfg_for(f"plan.calibration_file={calib}", f"project.run_dir={tmp_path / 'run'}",
                  f"model.base={tiny_model_dir}")
    plain = estimate(cfg, tokens=1000)
    assert plain.calibration is None and plain.to_dict()["time"]["calibration"] is None
    run = RunDir(tmp_path / "run")
    with pytest.raises(CalibrationError, match="no trained stages"):
        calibration_report(cfg, run)
    stage = run.adapters_dir / "task"
    stage.mkdir(parents=True)
    (stage / "adapter_config.json").write_text("{}")
    measured = plain.tokens_per_second / 4  # this machine runs at a quarter of what the FLOPs model assumes
    (stage / "verticalize_adapter.json").write_text(json.dumps({
        "name": "task", "method": "lora", "precision": "fp32",
        "metrics": {"real_tokens": 5000, "train_seconds": 5000 / measured, "tokens_per_s": measured}}))
    text = calibration_report(cfg, run)
    assert f"recorded 1 stage(s) in {calib}" in text and "a100-80g/lora/fp32 (task)" in text and "×0.25" in text
    stored = json.loads(calib.read_text())["samples"]["a100-80g/lora/fp32"]
    assert len(stored) == 1 and stored[0]["factor"] == pytest.approx(0.25)
    calibration_report(cfg, run)  # the same stage again replaces its sample, it does not count twice
    assert len(json.loads(calib.read_text())["samples"]["a100-80g/lora/fp32"]) == 1
    after = estimate(cfg, tokens=1000)
    assert after.tokens_per_second == pytest.approx(measured)
    assert after.seconds == pytest.approx(4 * plain.seconds)
    assert any("time calibrated ×0.25 from 1 measured stage(s) (a100-80g/lora/fp32" in n for n in after.notes)
    # Another method on the same device falls back to the device's median; a set device_tflops is left alone.
    assert estimate(cfg, tokens=1000, method="full").calibration.key == "a100-80g/*"
    assert estimate(cfg_for(f"plan.calibration_file={calib}", "plan.device_tflops=100"), arch=ARCH,
                    tokens=1000).calibration is None
    calib.write_text("not json")
    with pytest.raises(CalibrationError, match="is unreadable"):
        estimate(cfg, tokens=1000)
