"""`ModelRunner`: a Hugging Face causal LM and its tokenizer, run for incremental decoding with a KV cache the
workbench owns, so that the speculative-decoding lab can verify a whole draft tree in one forward pass and keep only
the accepted branch.

One decoding `DecodeSession` per sequence:

* ``prefill(ids)``: run the prompt, cache its keys and values, return the logits after its last token;
* ``extend(tokens, parents=None)``: run new tokens on top of the cache and return their logits (float32 [n, V]).
  ``parents`` (int [n], ``-1`` = attends to the cache only) makes the new tokens a *tree*: each token attends to the
  cache, its ancestors and itself (a 4D boolean attention mask) at position ``cache length + depth - 1``;
  ``parents=None`` is a chain (each token the child of the one before);
* ``commit(path)``: keep the keys and values of those new tokens only (indices into the last ``extend``, a
  root-to-node path) and drop the rest; an ``extend`` that is not committed is rolled back by the next ``extend``.

The forward pass is the model's own, layer by layer (embeddings, decoder layers with PyTorch's SDPA attention,
grouped-query heads handled by the kernel, final norm, LM head; on a CPU the linears run through `cpu_linear`), so
the logits of a tree node equal those of its root-to-node path run as a plain sequence (to float32 rounding).
``layers=L`` runs the first L decoder layers only (plus the final norm and LM head): the self-speculative
(early-exit, LayerSkip/EESD-style) drafter uses this with its own session.

Example::

    runner = ModelRunner()                          # the default SmolLM2-135M-Instruct
    s = runner.session()
    ids = runner.encode("Paris is the capital of")
    s.prefill(ids[:-1])
    logits = s.extend([ids[-1], 4649, 3390], parents=[-1, 0, 0])   # root + two alternative children
    s.commit([0, 2])                                 # keep the root and its second child

Works with Llama-style models (Llama, SmolLM2, Mistral, Qwen2 ...) whose decoder layers take
``(hidden_states, attention_mask, position_ids, position_embeddings, cache)``; only batch size 1.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import numpy as np

from workbench.errors import ModelError
from workbench.models.cpu_linear import cpu_linears

#: One forward pass at a time per process: a pass changes the model's attention implementation for its duration.
MODEL_LOCK = threading.RLock()


def _gqa_sdpa(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """PyTorch's SDPA with grouped-query attention done by the kernel (``enable_gqa``) and the runner's additive
    mask: transformers' own "sdpa" repeats the key/value heads for every pass of more than one token and then runs
    the unfused math path on the CPU."""
    import torch

    groups = getattr(module, "num_key_value_groups", 1)
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, enable_gqa=groups > 1)
    return out.transpose(1, 2).contiguous(), None


def _attention_name() -> str:
    """The name the runner's attention is registered under in transformers' ``AttentionInterface``."""
    if not getattr(_attention_name, "done", False):
        from transformers import AttentionInterface

        AttentionInterface.register("workbench_sdpa", _gqa_sdpa)
        _attention_name.done = True
    return "workbench_sdpa"


class _KVStore:
    """Keys and values of one sequence, preallocated per layer ([1, H, capacity, D]) and grown by doubling.

    Quacks like a transformers ``Cache`` for the attention modules (``update(k, v, layer_idx)``).
    """

    def __init__(self, n_layers: int):
        self.n_layers = n_layers
        self.keys: list = [None] * n_layers
        self.values: list = [None] * n_layers
        self.length = 0        # committed positions
        self.pending = 0       # positions written by the last extend, not committed

    def _ensure(self, layer: int, like, need: int):
        import torch

        k = self.keys[layer]
        if k is not None and k.shape[2] >= need:
            return
        cap = max(64, need, 0 if k is None else 2 * k.shape[2])
        shape = (1, like.shape[1], cap, like.shape[3])
        nk = torch.empty(shape, dtype=like.dtype, device=like.device)
        nv = torch.empty(shape, dtype=like.dtype, device=like.device)
        if k is not None:
            used = self.length + self.pending
            nk[:, :, :used] = k[:, :, :used]
            nv[:, :, :used] = self.values[layer][:, :, :used]
        self.keys[layer], self.values[layer] = nk, nv

    def update(self, key, value, layer_idx, *args, **kwargs):
        n = key.shape[2]
        end = self.length + n
        self._ensure(layer_idx, key, end)
        self.keys[layer_idx][:, :, self.length:end] = key
        self.values[layer_idx][:, :, self.length:end] = value
        return self.keys[layer_idx][:, :, :end], self.values[layer_idx][:, :, :end]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.length

    def keep(self, idx) -> None:
        """Keep pending positions ``idx`` (int tensor, ascending) and drop the others."""
        import torch

        m = int(idx.numel())
        contiguous = m == 0 or bool((idx == torch.arange(m, device=idx.device)).all())
        if not contiguous:   # a prefix of what was written is already in place
            src = (idx + self.length).to(self.keys[0].device)
            for layer in range(self.n_layers):
                if self.keys[layer] is None:
                    continue
                self.keys[layer][:, :, self.length:self.length + m] = self.keys[layer].index_select(2, src)
                self.values[layer][:, :, self.length:self.length + m] = self.values[layer].index_select(2, src)
        self.length += m
        self.pending = 0


class DecodeSession:
    """Incremental decoding of one sequence (see the module docstring). Make one with `ModelRunner.session`."""

    def __init__(self, runner: ModelRunner, layers: int | None = None):
        n = runner.n_layers if layers is None else int(layers)
        if not 1 <= n <= runner.n_layers:
            raise ModelError(f"layers must be in [1, {runner.n_layers}], got {layers}")
        self.runner = runner
        self.n_run_layers = n
        self.store = _KVStore(n)
        self.ids: list[int] = []            # committed token ids, in cache order
        self._pending_tokens: np.ndarray | None = None
        self._pending_parents: np.ndarray | None = None

    @property
    def length(self) -> int:
        """Number of committed (cached) tokens."""
        return self.store.length

    def prefill(self, ids) -> np.ndarray:
        """Run and commit ``ids`` (int [T], T >= 1); return the logits after the last one (float32 [V])."""
        ids = self.runner.check_ids(ids)
        if ids.shape[0] == 0:
            raise ModelError("prefill needs at least one token")
        logits = self.extend(ids, last_only=True)
        self.commit(np.arange(len(ids)))
        return logits[-1]

    def extend(self, tokens, parents=None, *, last_only: bool = False):
        """Logits (float32 [n, V], numpy) after each of ``tokens`` run on top of the committed cache.

        ``parents`` int [n]: ``-1`` for tokens that hang directly below the cache, else the index of the parent
        among ``tokens`` (parents before children). ``None``: a chain. ``last_only`` returns only the last row.
        """
        import torch

        from workbench.speculative.tree import check_parents, tree_attention_mask, tree_depths

        tokens = self.runner.check_ids(tokens)
        n = tokens.shape[0]
        if n == 0:
            raise ModelError("extend needs at least one token")
        if parents is None:
            par = np.arange(-1, n - 1, dtype=np.int32)
        else:
            try:
                par = check_parents(parents)
            except Exception as exc:
                raise ModelError(f"malformed tree of new tokens: {exc}") from exc
            if par.shape[0] != n:
                raise ModelError(f"parents has {par.shape[0]} entries for {n} tokens")
        self.store.pending = 0                       # roll back an uncommitted extend
        past = self.store.length
        depth = tree_depths(par)
        self.runner.check_length(past + int(depth.max()))
        dev = self.runner.device
        pos = torch.as_tensor((past + depth - 1).astype(np.int64)[None], device=dev)
        # an additive float mask (0 / -inf): PyTorch's fused CPU attention takes it, a boolean one falls back to
        # the unfused math path (measured 1.3 ms per pass more for 2-8 new tokens on SmolLM2)
        mask = torch.zeros((1, 1, n, past + n), dtype=torch.float32, device=dev)
        blocked = torch.as_tensor(~tree_attention_mask(par), device=dev)
        mask[0, 0, :, past:].masked_fill_(blocked, float("-inf"))
        x = torch.as_tensor(tokens[None], device=dev)
        out = self.runner.forward(x, pos, mask, self.store, self.n_run_layers, last_only=last_only)
        self.store.pending = n
        self._pending_tokens, self._pending_parents = tokens, par
        return out

    def commit(self, path) -> None:
        """Keep the new tokens at indices ``path`` of the last ``extend`` (a root-to-node path: the first has parent
        -1, each next is a child of the one before) and drop the others from the cache."""
        import torch

        if self._pending_tokens is None:
            raise ModelError("commit without a preceding extend")
        path = np.asarray(path, dtype=np.int64).reshape(-1)
        n = self._pending_tokens.shape[0]
        if path.size and (path.min() < 0 or path.max() >= n):
            raise ModelError(f"commit path {path.tolist()} indexes outside the {n} tokens of the last extend")
        prev = -1
        for i in path:
            if self._pending_parents[i] != prev:
                raise ModelError(f"commit path {path.tolist()} is not a root-to-node path of the last extend's tree")
            prev = int(i)
        self.store.keep(torch.as_tensor(path))
        self.ids.extend(int(t) for t in self._pending_tokens[path])
        self._pending_tokens = self._pending_parents = None

    def truncate(self, length: int) -> None:
        """Forget every committed token after the first ``length`` (and any uncommitted extend)."""
        if not 0 <= length <= self.store.length:
            raise ModelError(f"cannot truncate {self.store.length} committed tokens to {length}")
        self.store.length = int(length)
        self.store.pending = 0
        del self.ids[length:]
        self._pending_tokens = self._pending_parents = None

    def fork(self) -> DecodeSession:
        """An independent copy of this session (same committed cache)."""
        other = DecodeSession(self.runner, self.n_run_layers)
        for layer in range(self.store.n_layers):
            k = self.store.keys[layer]
            if k is not None:
                other.store.keys[layer] = k.clone()
                other.store.values[layer] = self.store.values[layer].clone()
        other.store.length = self.store.length
        other.ids = list(self.ids)
        return other


class ModelRunner:
    """A causal LM plus its tokenizer for cached incremental decoding (see the module docstring).

    ``model``/``tokenizer`` default to the shared SmolLM2-135M-Instruct. Only batch size 1 is supported.
    """

    #: the exception class for bad input; the KV lab's capture runner raises its own
    error = ModelError

    def __init__(self, model=None, tokenizer=None):
        if model is None:
            from workbench.models.loading import shared_default_model

            model, default_tok = shared_default_model()
            tokenizer = tokenizer or default_tok
        if tokenizer is None:
            raise self.error("a custom model needs its tokenizer: ModelRunner(model, tokenizer)")
        self.model = model
        self.tokenizer = tokenizer
        cfg = model.config
        self.n_layers = int(cfg.num_hidden_layers)
        self.n_heads = int(cfg.num_attention_heads)
        self.n_kv_heads = int(getattr(cfg, "num_key_value_heads", None) or self.n_heads)
        self.head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_heads)
        self.max_positions = int(getattr(cfg, "max_position_embeddings", 0) or 0)
        self.vocab_size = int(cfg.vocab_size)

    @property
    def device(self):
        return self.model.device

    def device_name(self) -> str:
        return str(self.model.device)

    # -- tokens ---------------------------------------------------------------------------------------------
    def encode(self, text: str) -> np.ndarray:
        """Token ids (int64 [T]) of ``text`` without special tokens; raises if empty or too long."""
        if not isinstance(text, str) or not text.strip():
            raise self.error("the text is empty; give at least a few words")
        ids = np.asarray(self.tokenizer(text, add_special_tokens=False)["input_ids"], dtype=np.int64)
        self.check_length(ids.shape[0])
        return ids

    def encode_chat(self, user: str, system: str | None = None) -> np.ndarray:
        """Token ids of a one-turn chat prompt in the model's chat template, ending where the assistant speaks."""
        if not isinstance(user, str) or not user.strip():
            raise self.error("the prompt is empty; give at least a few words")
        msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        text = self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        ids = np.asarray(self.tokenizer(text, add_special_tokens=False)["input_ids"], dtype=np.int64)
        self.check_length(ids.shape[0])
        return ids

    def check_length(self, n: int) -> None:
        if n == 0:
            raise self.error("the text has no tokens")
        if self.max_positions and n > self.max_positions:
            raise self.error(
                f"the text is {n} tokens long but the model's context is {self.max_positions} tokens; shorten it")

    def check_ids(self, ids) -> np.ndarray:
        a = np.asarray(ids)
        if a.ndim != 1:
            raise self.error(f"token ids must be a 1-D array, got shape {a.shape}")
        if a.size and not np.issubdtype(a.dtype, np.integer):
            raise self.error(f"token ids must be integers, got dtype {a.dtype}")
        a = a.astype(np.int64, copy=False)
        if a.size and (a.min() < 0 or a.max() >= self.vocab_size):
            bad = int(a.min()) if a.min() < 0 else int(a.max())
            raise self.error(f"token id {bad} is outside the model's vocabulary of {self.vocab_size}")
        return a

    def token_strings(self, ids) -> list[str]:
        return [self.tokenizer.decode([int(i)]) for i in ids]

    def decode(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in ids])

    # -- decoding -----------------------------------------------------------------------------------------------
    def session(self, layers: int | None = None) -> DecodeSession:
        """A fresh `DecodeSession` (``layers``: run only the first L decoder layers, for early-exit drafting)."""
        return DecodeSession(self, layers)

    @contextlib.contextmanager
    def _sdpa(self) -> Iterator[None]:
        import torch

        with MODEL_LOCK:
            cfg = self.model.config
            previous = cfg._attn_implementation
            cfg._attn_implementation = _attention_name()
            try:
                with torch.no_grad():
                    yield
            finally:
                cfg._attn_implementation = previous

    def forward(self, x, position_ids, mask, store, n_layers: int, last_only: bool = False) -> np.ndarray:
        """One forward pass of the first ``n_layers`` decoder layers over ``x`` [1, n] with an additive float attention
        mask [1, 1, n, past + n] (0 = attend, -inf = not); writes keys/values into ``store``; returns float32 logits
        [n, V] (numpy). On a CPU every linear layer runs through oneDNN with its weight packed once (`cpu_linear`:
        a pass of 16 tokens costs little more than one, a prefill about half of ``F.linear``'s time)."""
        base = self.model.model
        with self._sdpa(), cpu_linears(self.model, int(x.shape[1])):
            h = base.embed_tokens(x)
            pos_emb = base.rotary_emb(h, position_ids=position_ids)
            for layer in base.layers[:n_layers]:
                h = layer(h, attention_mask=mask, position_ids=position_ids, position_embeddings=pos_emb,
                          cache=store, use_cache=True)
            if last_only:
                h = h[:, -1:]
            h = base.norm(h)
            logits = self.model.lm_head(h)[0]
        return logits.float().contiguous().cpu().numpy()

    def greedy_cached(self, ids, n_new: int, *, eos: bool = False) -> np.ndarray:
        """Plain greedy decoding through a `DecodeSession` (the speculative lab's exact forward pass): ``ids``
        followed by ``n_new`` tokens (stopping early at EOS when ``eos``)."""
        ids = self.check_ids(ids)
        if n_new < 1:
            raise self.error(f"n_new must be >= 1, got {n_new}")
        self.check_length(len(ids) + n_new)
        s = self.session()
        logits = s.prefill(ids)
        out = list(ids)
        eos_id = self.tokenizer.eos_token_id
        for i in range(n_new):
            t = int(np.argmax(logits))
            out.append(t)
            if (eos and t == eos_id) or i == n_new - 1:
                break
            logits = s.extend([t])[-1]
            s.commit([0])
        return np.asarray(out, dtype=np.int64)

    def greedy(self, ids, n_new: int) -> np.ndarray:
        """``ids`` followed by ``n_new`` greedily generated tokens by Hugging Face ``generate`` (full cache, the
        model's own attention): the reference plain decoding."""
        import torch

        x = torch.as_tensor(np.asarray(ids, dtype=np.int64)[None], device=self.model.device)
        self.check_length(x.shape[1] + n_new)
        with MODEL_LOCK, torch.no_grad():
            out = self.model.generate(x, max_new_tokens=int(n_new), do_sample=False, min_new_tokens=int(n_new),
                                      pad_token_id=self.tokenizer.eos_token_id)
        return out[0].cpu().numpy().astype(np.int64)


_RUNNER_LOCK = threading.Lock()


def default_runner() -> ModelRunner:
    """One shared decoding runner over the shared default model (thread-safe)."""
    with _RUNNER_LOCK:
        if not hasattr(default_runner, "_runner"):
            default_runner._runner = ModelRunner()
        return default_runner._runner
