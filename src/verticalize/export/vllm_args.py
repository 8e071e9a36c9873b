"""What vLLM accepts, for checking engine exports on a machine without vLLM (it needs a GPU).

``RECORDED_ENGINE_ARGS`` are the fields of ``vllm.engine.arg_utils.EngineArgs`` plus ``AsyncEngineArgs`` (the
Triton vLLM backend builds ``AsyncEngineArgs(**model.json)``); ``RECORDED_FRONTEND_ARGS`` the fields of
``vllm.entrypoints.openai.cli_args.FrontendArgs`` (the server options of ``vllm serve``). Both were read from
vLLM's sources of the 0.11 series (arg_utils at commit 99d7eb5d, where ``disable_log_requests`` is gone and
``enable_log_requests`` replaced it). When vLLM is importable the installed version's own fields are used
instead, so the check follows whatever version a user pinned.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

RECORDED_ENGINE_ARGS = frozenset((
    "additional_config", "aggregate_engine_logging", "all2all_backend", "allowed_local_media_path",
    "allowed_media_domains", "async_scheduling", "block_size", "calculate_kv_scales", "code_revision",
    "collect_detailed_traces", "compilation_config", "config_format", "convert", "cpu_offload_gb",
    "cuda_graph_sizes", "cudagraph_capture_sizes", "data_parallel_address", "data_parallel_backend",
    "data_parallel_hybrid_lb", "data_parallel_rank", "data_parallel_rpc_port", "data_parallel_size",
    "data_parallel_size_local", "data_parallel_start_rank", "dbo_decode_token_threshold",
    "dbo_prefill_token_threshold", "decode_context_parallel_size", "default_mm_loras", "disable_cascade_attn",
    "disable_chunked_mm_input", "disable_custom_all_reduce", "disable_hybrid_kv_cache_manager",
    "disable_log_stats", "disable_mm_preprocessor_cache", "disable_nccl_for_dp_synchronization",
    "disable_sliding_window", "distributed_executor_backend", "download_dir", "dtype", "enable_chunked_prefill",
    "enable_dbo", "enable_eplb", "enable_expert_parallel", "enable_log_requests", "enable_lora",
    "enable_mm_embeds", "enable_multimodal_encoder_data_parallel", "enable_prefix_caching",
    "enable_prompt_embeds", "enable_sleep_mode", "enforce_eager", "eplb_config", "eplb_log_balancedness",
    "eplb_step_interval", "eplb_window_size", "expert_placement_strategy",
    "fully_sharded_loras", "generation_config", "gpu_memory_utilization", "guided_decoding_backend",
    "guided_decoding_disable_additional_properties", "guided_decoding_disable_any_whitespace",
    "guided_decoding_disable_fallback", "hf_config_path", "hf_overrides", "hf_token", "ignore_patterns",
    "interleave_mm_strings", "io_processor_plugin", "kv_cache_dtype", "kv_cache_memory_bytes",
    "kv_events_config", "kv_sharing_fast_prefill", "kv_transfer_config", "limit_mm_per_prompt", "load_format",
    "logits_processor_pattern", "logits_processors", "logprobs_mode", "long_prefill_token_threshold",
    "lora_dtype", "lora_extra_vocab_size", "mamba_block_size", "mamba_cache_dtype", "mamba_ssm_cache_dtype",
    "max_cpu_loras", "max_cudagraph_capture_size", "max_logprobs", "max_long_partial_prefills", "max_lora_rank",
    "max_loras", "max_model_len", "max_num_batched_tokens", "max_num_partial_prefills", "max_num_seqs",
    "max_parallel_loading_workers", "media_io_kwargs", "mm_encoder_attn_backend", "mm_encoder_tp_mode",
    "mm_processor_cache_gb", "mm_processor_cache_type", "mm_processor_kwargs",
    "mm_shm_cache_max_object_size_mb", "model", "model_impl", "model_loader_extra_config",
    "num_gpu_blocks_override", "num_lookahead_slots", "num_redundant_experts", "otlp_traces_endpoint",
    "override_attention_dtype", "override_generation_config", "override_pooler_config",
    "pipeline_parallel_size", "pooler_config", "prefix_caching_hash_algo", "pt_load_map_location",
    "quantization", "ray_workers_use_nsight", "reasoning_parser", "revision", "rope_scaling", "rope_theta",
    "runner", "safetensors_load_strategy", "scheduler_cls", "scheduling_policy", "seed", "served_model_name",
    "show_hidden_metrics_for_version", "skip_mm_profiling", "skip_tokenizer_init", "speculative_config",
    "structured_outputs_config", "swap_space", "task", "tensor_parallel_size", "tokenizer", "tokenizer_mode",
    "tokenizer_revision", "trust_remote_code", "use_tqdm_on_load", "video_pruning_rate", "worker_cls",
    "worker_extension_cls"
))

RECORDED_FRONTEND_ARGS = frozenset((
    "allow_credentials", "allowed_headers", "allowed_methods", "allowed_origins", "api_key", "chat_template",
    "chat_template_content_format", "disable_fastapi_docs", "disable_frontend_multiprocessing",
    "disable_uvicorn_access_log", "enable_auto_tool_choice", "enable_force_include_usage", "enable_log_outputs",
    "enable_prompt_tokens_details", "enable_request_id_headers", "enable_server_load_tracking",
    "enable_ssl_refresh", "enable_tokenizer_info_endpoint", "exclude_tools_when_tool_choice_none",
    "h11_max_header_count", "h11_max_incomplete_event_size", "host", "log_config_file", "log_error_stack",
    "lora_modules", "max_log_len", "middleware", "port", "response_role", "return_tokens_as_token_ids",
    "root_path", "ssl_ca_certs", "ssl_cert_reqs", "ssl_certfile", "ssl_keyfile", "tokens_only",
    "tool_call_parser", "tool_parser_plugin", "tool_server", "trust_request_chat_template", "uds",
    "uvicorn_log_level"
))

# `vllm serve` options that are neither engine nor frontend fields.
SERVE_ONLY_FLAGS = frozenset(("headless", "api_server_count", "config"))

# vllm/config/lora.py MaxLoRARanks: the values --max-lora-rank accepts.
SUPPORTED_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


@lru_cache(maxsize=1)
def known_engine_args() -> frozenset[str]:
    """Field names of the installed vLLM's AsyncEngineArgs, else the recorded ones."""
    try:
        from vllm.engine.arg_utils import AsyncEngineArgs
    except Exception:  # not installed, or installed without a GPU runtime: the recorded list stands in
        return RECORDED_ENGINE_ARGS
    return frozenset(f.name for f in dataclasses.fields(AsyncEngineArgs))


@lru_cache(maxsize=1)
def known_serve_flags() -> frozenset[str]:
    """Option names (underscored) `vllm serve` accepts: engine fields, server fields and its own."""
    try:
        from vllm.entrypoints.openai.cli_args import FrontendArgs
        frontend = frozenset(f.name for f in dataclasses.fields(FrontendArgs))
    except Exception:
        frontend = RECORDED_FRONTEND_ARGS
    return known_engine_args() | frontend | SERVE_ONLY_FLAGS
