"""Next-token predictions of a causal language model.

>>> model, tok = shared_default_model()                                    # doctest: +SKIP
>>> top = next_token_topk(model, tok, "The capital of France is", k=3)     # doctest: +SKIP
>>> top.tokens[0], round(float(top.probs[0]), 2)                           # doctest: +SKIP
(' Paris', 0.77)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.errors import ConfigurationError

MAX_CONTEXT_TOKENS = 2048


@dataclass(frozen=True)
class TopK:
    """The ``k`` most likely next tokens after ``text``.

    ``ids``, ``probs``: int64[k], float32[k], most likely first; ``tokens``: their decoded strings;
    ``entropy``: of the full next-token distribution, in bits; ``n_context``: tokens the model saw.
    """

    text: str
    ids: np.ndarray
    probs: np.ndarray
    tokens: list[str]
    entropy: float
    n_context: int

    def rows(self) -> list[dict]:
        """One dict per candidate: rank, token, id, probability (for tables)."""
        return [
            {"rank": r + 1, "token": t, "id": int(i), "probability": float(p)}
            for r, (t, i, p) in enumerate(zip(self.tokens, self.ids, self.probs))
        ]


def _context_ids(tokenizer: Any, text: str) -> list[int]:
    ids = tokenizer.encode(text, add_special_tokens=False) if text else []
    if not ids:
        # An empty prompt: condition on the beginning-of-sequence token when the tokenizer has one.
        bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        if bos is None:
            raise ConfigurationError("Empty text and the tokenizer has no BOS/EOS token to start from; type some text.")
        ids = [bos]
    return ids[-MAX_CONTEXT_TOKENS:]


def next_token_topk(model: Any, tokenizer: Any, text: str, *, k: int = 10) -> TopK:
    """The ``k`` most probable next tokens after ``text`` (the last 2,048 tokens are used)."""
    import torch

    if not isinstance(text, str):
        raise ConfigurationError(f"text must be a str, got {type(text).__name__}.")
    if not 1 <= k <= model.config.vocab_size:
        raise ConfigurationError(f"k must be between 1 and the vocabulary size ({model.config.vocab_size}), got {k}.")
    from workbench.models.runner import MODEL_LOCK

    ids = _context_ids(tokenizer, text)
    # the lock: a decoding runner or a KV capture in another thread (the dashboard's background warm-up, a lab's
    # decode) switches the model's attention implementation for the duration of its pass
    with MODEL_LOCK, torch.inference_mode():
        logits = model(torch.tensor([ids]), use_cache=False).logits[0, -1].float()
    logp = torch.log_softmax(logits, dim=-1)
    probs = logp.exp()
    entropy = float(-(probs * logp).sum() / np.log(2))
    top = torch.topk(probs, k)
    top_ids = top.indices.numpy().astype(np.int64)
    return TopK(
        text=text,
        ids=top_ids,
        probs=top.values.numpy().astype(np.float32),
        tokens=[tokenizer.decode([int(i)]) for i in top_ids],
        entropy=entropy,
        n_context=len(ids),
    )


def model_summary(model: Any) -> dict[str, Any]:
    """The configuration figures a user wants to see first (layers, heads, sizes, parameter count)."""
    cfg = model.config
    n_params = sum(p.numel() for p in model.parameters())
    return {
        "name": getattr(cfg, "name_or_path", "") or type(model).__name__,
        "architecture": type(model).__name__,
        "parameters": n_params,
        "layers": cfg.num_hidden_layers,
        "attention heads": cfg.num_attention_heads,
        "KV heads": getattr(cfg, "num_key_value_heads", cfg.num_attention_heads),
        "hidden size": cfg.hidden_size,
        "vocabulary": cfg.vocab_size,
        "context length": getattr(cfg, "max_position_embeddings", None),
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "attention": getattr(cfg, "_attn_implementation", None),
    }
