"""GGUF → safetensors model directory, converted once and cached.

Transformers reads GGUF (``gguf_file=``) and dequantises the weights, but marks the model as quantized and then
refuses ``save_pretrained``; clearing ``model.hf_quantizer`` and ``config.quantization_config`` lets the plain
weights be saved. Weights are saved in float32 because the dequantised values (scale·q + min in fp16) are exact in
fp32 and not in bf16; loading then casts to the requested dtype.

The conversion writes into a temporary directory next to the cache entry and renames it into place, so a crash
never leaves a half-written model; a lock file makes concurrent processes wait for the first one instead of
converting twice, and the rename stays correct even where locks do not work (network file systems).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator

from verticalize.artifacts import library_versions
from verticalize.models.errors import ModelConversionError

SOURCE_FILE = "verticalize_source.json"  # written into every converted directory: where it came from


def gguf_cache_key(gguf_path: Path) -> str:
    """Stable key for one GGUF file: its resolved path, size and modification time (hashing GBs would be slow)."""
    st = gguf_path.stat()
    blob = f"{gguf_path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def cached_dir_for(gguf_path: Path, cache_root: Path, name: str | None = None) -> Path:
    stem = name or gguf_path.name.removesuffix(".gguf")
    return cache_root / f"{_safe(stem)}-{gguf_cache_key(gguf_path)}"


def convert_gguf_cached(gguf_path: Path, cache_root: Path, name: str | None = None) -> Path:
    """Return the cached safetensors directory for ``gguf_path``, converting it first when missing."""
    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {gguf_path}")
    target = cached_dir_for(gguf_path, cache_root, name)
    if _complete(target):
        return target
    (cache_root / ".locks").mkdir(parents=True, exist_ok=True)
    with _file_lock(cache_root / ".locks" / (target.name + ".lock")):
        if _complete(target):  # another process finished while we waited for the lock
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=cache_root))
        try:
            try:
                seconds = convert_gguf(gguf_path, tmp)
            except Exception as exc:  # the GGUF parser fails in many ways (struct.error, KeyError, ...) on bad files
                raise ModelConversionError(
                    f"cannot convert GGUF file {gguf_path}: {type(exc).__name__}: {exc}. Check that the file is "
                    f"complete and of an architecture Transformers reads from GGUF (llama, mistral, qwen2, ...)"
                ) from exc
            _write_source(tmp, gguf_path, seconds)
            _publish(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def convert_gguf(gguf_path: Path, out_dir: Path) -> float:
    """Dequantise ``gguf_path`` into a Transformers directory (safetensors + tokenizer); returns seconds taken."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    folder, fname = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.float32)
    # The GGUF loader flags the model as quantized; the weights are already plain tensors, so drop the flag.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    max_pos = getattr(model.config, "max_position_embeddings", None)
    if max_pos and tokenizer.model_max_length > max_pos:  # GGUF tokenizers come back with "unlimited" length
        tokenizer.model_max_length = max_pos
    if model.generation_config.pad_token_id is None and tokenizer.pad_token_id is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return time.perf_counter() - start


def _complete(path: Path) -> bool:
    return (path / SOURCE_FILE).is_file() and (path / "config.json").is_file()


def _write_source(out_dir: Path, gguf_path: Path, seconds: float) -> None:
    info = {"gguf": str(gguf_path.resolve()), "gguf_bytes": gguf_path.stat().st_size,
            "convert_seconds": round(seconds, 2), "saved_dtype": "float32",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": library_versions()}
    (out_dir / SOURCE_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")


def _publish(tmp: Path, target: Path) -> None:
    """Rename the finished temp dir into place; if another process won the race, keep its copy."""
    if target.exists() and not _complete(target):
        shutil.rmtree(target, ignore_errors=True)  # debris of a conversion interrupted before our atomic scheme
    _apply_umask(tmp)
    try:
        os.rename(tmp, target)
    except OSError:
        if not _complete(target):
            raise


def _apply_umask(folder: Path) -> None:
    """mkdtemp makes a private (0700) directory; a shared cache should get the usual permissions."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(folder, 0o777 & ~mask)
    for f in folder.iterdir():
        os.chmod(f, 0o666 & ~mask)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX)
        except OSError:  # locks unsupported here: the atomic rename alone keeps the cache correct
            pass
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fh, fcntl.LOCK_UN)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._") or "model"
