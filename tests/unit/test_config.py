from pathlib import Path

import pytest
import yaml

from verticalize.config import Config, ConfigError, commented_yaml, load_config


def test_defaults_are_the_seeds_values():
    cfg = Config()
    assert (cfg.train.lora.r, cfg.train.lora.alpha, cfg.train.lora.dropout) == (8, 32, 0.1)
    assert cfg.train.lora.target_modules == ["q_proj", "v_proj"]
    assert cfg.train.early_stopping_patience == 3
    assert cfg.train.max_grad_norm == 1.0
    assert cfg.train.prefix.num_virtual_tokens == 20


def test_yaml_then_overrides(tmp_path: Path):
    p = tmp_path / "p.yaml"
    p.write_text("train:\n  lora:\n    r: 16\nproject:\n  docs: [docs]\n", encoding="utf-8")
    cfg = load_config(p, ["train.lora.alpha=64", "train.method=dora", "eval.rungs=[prompt, rag]"])
    assert cfg.train.lora.r == 16 and cfg.train.lora.alpha == 64 and cfg.train.method == "dora"
    assert cfg.eval.rungs == ["prompt", "rag"]
    assert cfg.project.docs == [str(tmp_path / "docs")]  # relative to the config file


def test_unknown_key_names_path_and_closest():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["train.lora.rank=4"])
    msg = str(e.value)
    assert "train.lora.rank" in msg and "train.lora.r" in msg


def test_unknown_nested_section_in_yaml(tmp_path: Path):
    p = tmp_path / "p.yaml"
    p.write_text("trian:\n  epochs: 2\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "'trian'" in str(e.value) and "train" in str(e.value)


def test_bad_value_says_key_and_value():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["train.method=lorax"])
    assert "train.method" in str(e.value) and "lorax" in str(e.value)
    with pytest.raises(ConfigError, match="add up to 1"):
        load_config(None, ["data.split=[0.5, 0.2, 0.2]"])


def test_override_into_non_section_fails():
    with pytest.raises(ConfigError, match="unknown config key 'model.base.x'|model.base"):
        load_config(None, ["model.base.x=1"])


def test_commented_yaml_round_trips():
    text = commented_yaml(Config())
    assert "# LoRA rank r" in text
    data = yaml.safe_load(text)
    assert Config.model_validate(data) == Config()


def test_missing_file_message(tmp_path: Path):
    with pytest.raises(ConfigError, match="verticalize init"):
        load_config(tmp_path / "nope.yaml")
