"""The base-model catalog: coverage, architecture numbers consistent with the published sizes, licences."""

from __future__ import annotations

import pytest

from verticalize.models import CATALOG, DEFAULT_MODEL, get_spec, list_specs

REQUIRED = [
    "smollm2-135m-instruct",
    *(f"qwen2.5-{s}-instruct" for s in ("0.5b", "1.5b", "3b", "7b", "14b", "32b", "72b")),
    *(f"deepseek-r1-distill-qwen-{s}" for s in ("1.5b", "7b", "14b", "32b")),
    "llama-3.1-8b-instruct", "llama-3.1-70b-instruct", "llama-3.2-1b-instruct", "llama-3.2-3b-instruct",
    "mistral-7b-instruct", "falcon-7b-instruct", "llama-2-7b-chat", "llama-2-13b-chat",
]


def test_catalog_covers_the_required_models():
    assert set(REQUIRED) <= set(CATALOG)
    assert DEFAULT_MODEL == "smollm2-135m-instruct"
    assert [s.name for s in list_specs()][0] == DEFAULT_MODEL


@pytest.mark.parametrize("name", REQUIRED)
def test_spec_fields_are_complete_and_consistent(name):
    s = CATALOG[name]
    assert s.lora_targets and all(isinstance(t, str) for t in s.lora_targets)
    assert s.licence and len(s.licence_note) > 30
    assert s.chat_template in {"chatml", "llama3", "llama2", "mistral", "falcon", "deepseek-r1"}
    assert s.hidden_size % s.num_heads == 0 and s.num_heads % s.num_kv_heads == 0
    assert s.context_length >= 2048 and s.vocab_size > 30000
    # The seed-style estimate 12·L·h² + V·h is only rough for GQA/SwiGLU models with big vocabularies...
    rough = 12 * s.num_layers * s.hidden_size ** 2 + s.vocab_size * s.hidden_size
    assert 0.55 < rough / s.params < 1.25
    # ...while the exact architecture count must reproduce the published parameter count.
    assert abs(s.estimated_params() / s.params - 1) < 0.001


def test_known_architecture_numbers():
    q7 = CATALOG["qwen2.5-7b-instruct"]
    assert (q7.num_layers, q7.hidden_size, q7.intermediate_size, q7.num_heads, q7.num_kv_heads, q7.vocab_size) == \
        (28, 3584, 18944, 28, 4, 152064)
    l8 = CATALOG["llama-3.1-8b-instruct"]
    assert (l8.num_layers, l8.hidden_size, l8.num_kv_heads, l8.vocab_size, l8.context_length) == \
        (32, 4096, 8, 128256, 131072)
    smol = CATALOG["smollm2-135m-instruct"]
    assert (smol.num_layers, smol.hidden_size, smol.num_heads, smol.num_kv_heads, smol.tie_embeddings) == \
        (30, 576, 9, 3, True)
    assert CATALOG["falcon-7b-instruct"].lora_targets[0] == "query_key_value"


def test_licences_and_commercial_use():
    assert not CATALOG["qwen2.5-3b-instruct"].commercial_use  # Qwen research licence
    assert CATALOG["qwen2.5-72b-instruct"].licence == "qwen" and "100 million" in CATALOG[
        "qwen2.5-72b-instruct"].licence_note
    for name in ("llama-2-7b-chat", "llama-3.1-8b-instruct", "llama-3.2-1b-instruct"):
        assert CATALOG[name].commercial_use and "700 million" in CATALOG[name].licence_note
    assert CATALOG["deepseek-r1-distill-qwen-7b"].licence == "mit"
    assert CATALOG["mistral-7b-instruct"].licence == "apache-2.0"


def test_get_spec_accepts_names_hub_ids_and_aliases():
    assert get_spec("Qwen/Qwen2.5-7B-Instruct").name == "qwen2.5-7b-instruct"
    assert get_spec("QWEN2.5-7B-INSTRUCT").name == "qwen2.5-7b-instruct"
    assert get_spec("smollm2").name == DEFAULT_MODEL
    assert get_spec("no-such-model") is None
    assert hash(CATALOG[DEFAULT_MODEL])  # specs stay hashable despite the list field
