"""The method registry (verticalize.methods): discovery, what each method declares, config validation, and the
planner estimating every registered method with PEFT's own trainable counts."""

from __future__ import annotations

import pkgutil

import pytest

import verticalize.methods as registry
from verticalize.config import ConfigError, load_config
from verticalize.methods import UnknownMethodError, get, method_names, methods
from verticalize.plan import estimate

ARCH = {"num_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 4, "num_kv_heads": 2,
        "vocab_size": 100, "tie_embeddings": True}


def test_registry_lists_every_method_module():
    modules = {i.name for i in pkgutil.iter_modules(registry.__path__) if not i.name.startswith("_")}
    assert set(method_names()) == modules  # one module per method, each found without an import list
    assert {"lora", "dora", "qlora", "prefix", "prompt", "ia3", "loha", "full"} <= set(method_names())
    assert method_names()[:6] == ("lora", "dora", "qlora", "prefix", "prompt", "ia3")  # the config's order
    assert method_names()[-1] == "full"
    assert [m.name for m in methods()] == list(method_names())


def test_methods_declare_packing_merging_and_layering():
    assert {m.name for m in methods() if not m.packs} == {"prefix", "prompt"}
    assert {m.name for m in methods() if m.merges} == {"lora", "dora", "qlora", "ia3", "loha"}
    assert {m.name for m in methods() if m.trains_base} == {"full"}
    assert {m.name for m in methods() if m.needs_cuda} == {"qlora"}
    assert get("lora").layering == "merged-parents" and get("prefix").layering == "continued"
    assert get("full").layering == "continued" and not get("full").peft
    assert get(get("ia3")) is get("ia3")


def test_unknown_method_names_the_registered_ones():
    with pytest.raises(UnknownMethodError) as e:
        get("lorax")
    assert "lorax" in str(e.value) and all(n in str(e.value) for n in method_names())


def test_config_validation_asks_the_registry():
    assert load_config(None, ["train.method=loha"]).train.method == "loha"
    with pytest.raises(ConfigError) as e:
        load_config(None, ["train.method=lorax"])
    msg = str(e.value)
    assert "train.method" in msg and "lorax" in msg
    assert "registered methods: " + ", ".join(method_names()) in msg
    from verticalize.config import TrainConfig
    assert all(n in TrainConfig.model_fields["method"].description for n in method_names())


@pytest.mark.parametrize("name", method_names())
def test_planner_estimates_every_registered_method(name):
    cfg = load_config(None, ["plan.device=a100-80g", "train.precision=bf16", "train.batch_tokens=256",
                             "model.max_seq_len=128", f"train.method={name}"])
    est = estimate(cfg, arch=ARCH, tokens=1000)
    assert est.setting.method == name
    assert 0 < est.trainable <= est.arch.num_params
    assert est.memory.activations > 0 and est.memory.logits > 0 and est.memory.weights > 0
    assert est.memory.optimizer == pytest.approx(8.0 * est.trainable)  # AdamW m, v in fp32
    assert est.flops_per_token > 0 and est.seconds > 0
    d = est.to_dict()
    assert d["setting"]["method"] == name and d["params"]["trainable"] == est.trainable


def test_planner_rejects_an_unregistered_method():
    with pytest.raises(UnknownMethodError):
        estimate(load_config(None, ["plan.device=a100-80g"]), arch=ARCH, tokens=1, method="lorax")


def test_every_peft_method_counts_trainable_params_the_way_peft_creates_them(tiny_model_dir):
    """Each registered method's PEFT config, applied to the tiny model, trains what its planner formula says."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    cfg = load_config(None, [f"model.base={tiny_model_dir}", "plan.device=cpu", "model.max_seq_len=64",
                             "train.batch_tokens=64"])
    for m in methods():
        if not m.peft:
            continue
        one = load_config(None, [f"model.base={tiny_model_dir}", "plan.device=cpu", "model.max_seq_len=64",
                                 "train.batch_tokens=64", f"train.method={m.name}"])
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                               m.peft_config(one, tiny_model_dir))
        trainable, _ = model.get_nb_trainable_parameters()
        assert trainable == estimate(cfg, tokens=1, method=m.name).trainable, m.name
