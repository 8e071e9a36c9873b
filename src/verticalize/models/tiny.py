"""A tiny random Llama-architecture model and tokenizer, built offline in about a second.

Tests and CI smoke runs use it in place of real weights: same architecture family (q_proj/v_proj, chat template
in ChatML like SmolLM2), so every code path that works on it works on the real model.
"""

from __future__ import annotations

from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_TRAINING_TEXT = [
    "The credit card annual fee is waived when the card is used six times a year.",
    "A loan application must include proof of income and an identity document.",
    "信用卡年费在一年内刷卡六次后免收。贷款申请应当提供收入证明和身份证件。",
    "第十二条 借款人不得将贷款用于股票投资。如果逾期超过90天，银行应当停止计息。",
    "Restart the service with systemctl restart app, then check the logs for errors.",
    "Question: What is the fee? Answer: 100 yuan. 问题：期限是多少？答案：30天。",
    "0123456789 , . ; : ! ? ( ) [ ] { } < > / \\ - _ + = * & % $ # @ ' \"",
]


def build_tiny_model(out_dir: str | Path, *, vocab_size: int = 512, hidden: int = 64, layers: int = 2,
                     heads: int = 4, seed: int = 0, weight_std: float | None = None) -> Path:
    """Write a tiny LlamaForCausalLM + byte-level BPE tokenizer with a ChatML template to ``out_dir``.

    ``weight_std``: matrices drawn with this spread (embeddings with 1.0) instead of the default init, whose tiny
    model answers every prompt with one repeated token; a spread of ~0.3 makes its greedy answers depend on the
    prompt, which engine-equality tests need."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_TRAINING_TEXT * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    fast.chat_template = CHATML_TEMPLATE
    fast.save_pretrained(out)

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=hidden, intermediate_size=hidden * 2,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=2048, bos_token_id=fast.bos_token_id,
                         eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    if weight_std is not None:
        with torch.no_grad():
            for name, param in model.named_parameters():
                if param.ndim == 2:
                    param.normal_(0.0, 1.0 if "embed" in name else weight_std)
    model.generation_config.pad_token_id = fast.pad_token_id
    model.save_pretrained(out)
    return out
