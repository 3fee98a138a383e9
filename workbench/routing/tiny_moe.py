"""A tiny decoder-only MoE language model (plain torch), its safetensors checkpoints, router-logit capture.

Every block is pre-norm attention followed by an MoE feed-forward layer: a linear router gives logits over
``E`` experts, each token goes to its top-``k`` experts, and the experts' SwiGLU outputs are summed with the
gate weights. Two gates, each reproduced exactly by a router of `workbench.routing.routers` over the logits:

=======  =============================================================  ===========================
gate     selection / weights                                            same as
=======  =============================================================  ===========================
softmax  top-k of the logits; softmax probabilities renormalised over k  ``topk_softmax(k=k)``
sigmoid  top-k of ``sigmoid(logits) + bias``; sigmoid scores over k      ``deepseek_v3(k=k, bias)``
=======  =============================================================  ===========================

The ``bias`` (one float per expert and layer, a buffer, never trained by gradients) is DeepSeek-V3's
auxiliary-loss-free balancing bias; `workbench.routing.train` updates it with `routers.update_bias`.

Shipped checkpoints (trained by ``workbench moe train`` on the shipped corpora; ``assets/tiny_moe.json``)::

    model = load_tiny_moe("global")                  # "micro", "global" or "bias"
    tok = load_tiny_moe_tokenizer()
    trace = trace_text(model, tok, ["def f(x):\\n    return x", "Der Hund schläft."], tags=["code", "de"])
    trace.logits.shape                                # (4 layers, T tokens, 8 experts)
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from workbench.errors import RoutingError
from workbench.routing.trace import RoutingTrace
from workbench.saving import atomic_path, refuse_existing

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
VARIANTS = ("micro", "global", "bias")
CHECKPOINT_FORMAT = "workbench-tiny-moe-1"
GATES = ("softmax", "sigmoid")


def checkpoint_name(variant: str) -> str:
    """File name of a variant's checkpoint: ``"global" -> "tiny_moe_global.safetensors"``."""
    return f"tiny_moe_{variant}.safetensors"


@dataclass(frozen=True)
class TinyMoEConfig:
    """Shape of a `TinyMoE`. ``d_expert``: hidden width of each SwiGLU expert; ``context``: most tokens a
    sequence may hold (learned positions); ``gate``: "softmax" or "sigmoid" (see the module docstring)."""

    vocab_size: int = 4096
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    n_experts: int = 8
    top_k: int = 2
    d_expert: int = 128
    context: int = 128
    gate: str = "softmax"

    def __post_init__(self):
        for f in fields(self):
            if f.name != "gate":
                value = getattr(self, f.name)
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise RoutingError(f"TinyMoEConfig.{f.name} must be an integer >= 1, got {value!r}")
        if self.d_model % self.n_heads:
            raise RoutingError(f"d_model={self.d_model} must be a multiple of n_heads={self.n_heads}")
        if self.top_k > self.n_experts:
            raise RoutingError(f"top_k={self.top_k} is more than the {self.n_experts} experts")
        if self.gate not in GATES:
            raise RoutingError(f"unknown gate {self.gate!r}; choose one of {', '.join(GATES)}")

    @property
    def router(self) -> str:
        """The `routers` function that reproduces this gate's choices from the logits."""
        return "topk_softmax" if self.gate == "softmax" else "deepseek_v3"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TinyMoEConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class MoEOutput:
    """What `TinyMoE.forward` returns for ``B`` sequences of ``S`` tokens (``N = B * S``), ``L`` layers.

    ``logits`` float [B, S, V] next-token logits; ``router_logits`` float32 [L, N, E] (tokens in row-major
    ``(b, s)`` order, with grad while training); ``experts`` int64 [L, N, k] the experts each token was sent
    to, best first; ``gates`` float [L, N, k] their combine weights.
    """

    logits: torch.Tensor
    router_logits: torch.Tensor
    experts: torch.Tensor
    gates: torch.Tensor


class MoELayer(nn.Module):
    """Router + ``E`` SwiGLU experts over flat tokens ``x`` [N, d] -> ``(y [N, d], logits [N, E],
    experts [N, k], gates [N, k])``. Each expert runs one matmul over the tokens sent to it (no loop over
    tokens)."""

    def __init__(self, cfg: TinyMoEConfig):
        super().__init__()
        self.k, self.gate = cfg.top_k, cfg.gate
        d, h, e = cfg.d_model, cfg.d_expert, cfg.n_experts
        self.router = nn.Linear(d, e, bias=False)
        self.w_in = nn.Parameter(torch.empty(e, d, 2 * h))   # gate and up projections side by side
        self.w_out = nn.Parameter(torch.empty(e, h, d))
        self.register_buffer("bias", torch.zeros(e))          # selection-only bias (aux-loss-free balancing)

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` [N, d] -> router logits float32 [N, E], experts int64 [N, k], gate weights float32 [N, k]."""
        logits = self.router(x).float()
        if self.gate == "softmax":
            scores = torch.softmax(logits, dim=-1)
            select = logits + self.bias
        else:
            scores = torch.sigmoid(logits)
            select = scores + self.bias
        experts = torch.topk(select, self.k, dim=-1).indices
        gates = scores.gather(1, experts)
        return logits, experts, gates / gates.sum(dim=-1, keepdim=True)

    def forward(self, x: torch.Tensor):
        logits, experts, gates = self.route(x)
        n, k = experts.shape
        flat = experts.reshape(-1)
        order = torch.argsort(flat, stable=True)
        token = order // k                                   # the token of each sorted slot
        counts = torch.bincount(flat, minlength=self.w_in.shape[0]).tolist()
        weight = gates.reshape(-1)[order].to(x.dtype)
        y = torch.zeros_like(x)
        # unbind once: indexing w_in[e] per expert would zero-fill a full-size gradient for every expert
        w_in, w_out = self.w_in.unbind(0), self.w_out.unbind(0)
        start = 0
        for e, c in enumerate(counts):
            if c == 0:
                continue
            tok = token[start:start + c]
            a, b = (x[tok] @ w_in[e]).chunk(2, dim=-1)
            out = (F.silu(a) * b) @ w_out[e]
            y.index_add_(0, tok, out * weight[start:start + c, None])
            start += c
        return y, logits, experts, gates


class Block(nn.Module):
    def __init__(self, cfg: TinyMoEConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.norm1 = nn.RMSNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.norm2 = nn.RMSNorm(cfg.d_model)
        self.moe = MoELayer(cfg)

    def forward(self, x: torch.Tensor):
        b, s, d = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, s, 3, self.n_heads, d // self.n_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(att.transpose(1, 2).reshape(b, s, d))
        y, logits, experts, gates = self.moe(self.norm2(x).reshape(b * s, d))
        return x + y.view(b, s, d), logits, experts, gates


class TinyMoE(nn.Module):
    """Decoder-only transformer with an MoE feed-forward layer in every block; tied input/output embeddings.

    ``model(ids)`` with ids int [B, S] (S <= context) -> `MoEOutput`. ``variant``: how it was trained
    ("micro", "global", "bias" or "" for a fresh model).
    """

    def __init__(self, config: TinyMoEConfig | None = None, *, variant: str = ""):
        super().__init__()
        self.config = config or TinyMoEConfig()
        self.variant = variant
        cfg = self.config
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.context, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.RMSNorm(cfg.d_model)
        self.reset_parameters()

    def reset_parameters(self, seed: int | None = None) -> None:
        """GPT-2 style init (normal 0.02; residual outputs scaled by 1/sqrt(2 L)); zero biases."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        resid = 0.02 / math.sqrt(2 * self.config.n_layers)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if "norm" in name:
                    p.fill_(1.0)
                elif name.endswith(("proj.weight", "w_out")):
                    p.normal_(0.0, resid, generator=gen)
                else:
                    p.normal_(0.0, 0.02, generator=gen)
            for block in self.blocks:
                block.moe.bias.zero_()

    @property
    def biases(self) -> np.ndarray:
        """float32 [L, E]: each layer's selection bias (zeros unless trained with the "bias" variant)."""
        return np.stack([b.moe.bias.detach().cpu().numpy() for b in self.blocks]).astype(np.float32)

    def n_params(self, *, active: bool = False) -> int:
        """Parameter count (tied embeddings once); ``active``: those one token uses (k of the E experts)."""
        total = sum(p.numel() for p in self.parameters())
        if active:
            cfg = self.config
            per_expert = 3 * cfg.d_model * cfg.d_expert
            total -= cfg.n_layers * (cfg.n_experts - cfg.top_k) * per_expert
        return total

    def forward(self, ids: torch.Tensor) -> MoEOutput:
        if ids.ndim != 2:
            raise RoutingError(f"ids must be 2-D [batch, sequence], got shape {tuple(ids.shape)}")
        b, s = ids.shape
        if not 1 <= s <= self.config.context:
            raise RoutingError(f"sequence length {s} must be between 1 and the context {self.config.context}")
        x = self.embed(ids) + self.pos(torch.arange(s, device=ids.device))[None]
        router_logits, experts, gates = [], [], []
        for block in self.blocks:
            x, lg, ex, gt = block(x)
            router_logits.append(lg)
            experts.append(ex)
            gates.append(gt)
        logits = self.norm(x) @ self.embed.weight.T
        return MoEOutput(logits, torch.stack(router_logits), torch.stack(experts), torch.stack(gates))

    def __repr__(self) -> str:
        c = self.config
        return (f"TinyMoE({self.variant or 'untrained'}: {c.n_layers} layers, d_model {c.d_model}, "
                f"{c.n_experts} experts top-{c.top_k} ({c.gate} gate), vocab {c.vocab_size}, "
                f"context {c.context}; "
                f"{self.n_params() / 1e6:.2f} M params, {self.n_params(active=True) / 1e6:.2f} M active)")


# ------------------------------------------------------------------------------------------------ checkpoints


def save_tiny_moe(model: TinyMoE, path, *, extra: dict | None = None, overwrite: bool = False) -> Path:
    """Write ``model`` as one safetensors file: weights in float16 (a few MB), the selection biases in
    float32, the config, variant and ``extra`` (JSON-able: training config, metrics) as metadata. Refuses to
    replace an existing file unless ``overwrite``; the old file survives a failed write."""
    from safetensors.torch import save_file

    path = refuse_existing(path, overwrite=overwrite, error=RoutingError, hint=" (CLI: --overwrite)")
    tensors = {}
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        tensors[name] = t.float() if name.endswith(".bias") else t.half()
    meta = {"format": CHECKPOINT_FORMAT, "config": json.dumps(model.config.to_dict()),
            "variant": model.variant, "extra": json.dumps(extra or {})}
    # (atomic_path makes it readable by all: safetensors writes 0600, and a shipped checkpoint must not be)
    with atomic_path(path, overwrite=overwrite, error=RoutingError, hint=" (CLI: --overwrite)") as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def round_to_storage(model: TinyMoE) -> TinyMoE:
    """Round the weights (not the biases) to float16 in place: the model then computes what its checkpoint
    will."""
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not name.endswith(".bias") and t.is_floating_point():
                t.copy_(t.half().float())
    return model


def read_checkpoint_meta(path) -> dict:
    """The metadata of a checkpoint: ``{"config": {...}, "variant": str, "extra": {...}}``."""
    from safetensors import safe_open

    path = _checkpoint_path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own types for corrupt or truncated files
        raise RoutingError(f"could not read the tiny MoE checkpoint {path}: {exc}") from exc
    if header.get("format") != CHECKPOINT_FORMAT:
        raise RoutingError(f"{path} is not a workbench tiny MoE checkpoint (no {CHECKPOINT_FORMAT!r} "
                           "metadata)")
    return {"config": json.loads(header["config"]), "variant": header.get("variant", ""),
            "extra": json.loads(header.get("extra", "{}"))}


def _checkpoint_path(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise RoutingError(f"no tiny MoE checkpoint at {path}; train one with "
                           "`workbench moe train --out DIR` or load a shipped one with "
                           "load_tiny_moe('micro' | 'global' | 'bias')")
    return path


def load_tiny_moe(variant: str = "global", *, path=None, device: str | torch.device = "cpu") -> TinyMoE:
    """A trained `TinyMoE` in eval mode (float32): a shipped variant ("micro", "global", "bias") or the
    checkpoint at ``path`` (a file, or a folder holding ``tiny_moe_<variant>.safetensors``)."""
    from safetensors.torch import load_file

    if path is None:
        if variant not in VARIANTS:
            raise RoutingError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        path = ASSETS_DIR / checkpoint_name(variant)
    path = Path(path)
    if path.is_dir():
        path = path / checkpoint_name(variant)
    meta = read_checkpoint_meta(path)
    model = TinyMoE(TinyMoEConfig.from_dict(meta["config"]), variant=meta["variant"])
    try:
        state = {k: v.float() for k, v in load_file(str(path)).items()}
        model.load_state_dict(state)
    except Exception as exc:
        raise RoutingError(f"the checkpoint {path} does not fit its own config: {exc}") from exc
    return model.to(device).eval()


def load_tiny_moe_tokenizer(path=None):
    """The BPE tokenizer the tiny MoE models were trained with (``assets/tokenizer.json``, or ``path``)."""
    from workbench.tokenization.io import load_tokenizer

    path = Path(path) if path is not None else ASSETS_DIR / "tokenizer.json"
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise RoutingError(f"no tiny MoE tokenizer at {path}; train one with `workbench moe train --out DIR`")
    return load_tokenizer(path)


# --------------------------------------------------------------------------------------------------- capture


@torch.no_grad()
def forward_windows(model: TinyMoE, windows: np.ndarray, *,
                    batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Run ``windows`` int [W, S] through ``model`` -> (router logits float32 [L, W * S, E], per-token
    next-token loss float32 [W, S - 1] in nats)."""
    device = next(model.parameters()).device
    logits_out, losses = [], []
    for i in range(0, len(windows), batch_size):
        ids = torch.as_tensor(np.asarray(windows[i:i + batch_size]), dtype=torch.long, device=device)
        out = model(ids)
        logits_out.append(out.router_logits.float().cpu().numpy())
        ce = F.cross_entropy(out.logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten(), reduction="none")
        losses.append(ce.view(ids.shape[0], -1).cpu().numpy())
    return np.concatenate(logits_out, axis=1), np.concatenate(losses, axis=0)


def trace_meta(model: TinyMoE) -> dict:
    """The `RoutingTrace.meta` of a tiny MoE trace: enough to re-route the logits exactly as the model did."""
    cfg = model.config
    meta = {"model": f"tiny-moe-{model.variant or 'untrained'}", "variant": model.variant,
            "layers": list(range(cfg.n_layers)), "top_k": cfg.top_k, "n_experts": cfg.n_experts,
            "router": cfg.router, "gate": cfg.gate}
    return meta


def trace_bias(model: TinyMoE) -> np.ndarray | None:
    """The `RoutingTrace.bias` of a tiny MoE trace: the sigmoid gate's selection biases [L, E], else None."""
    return model.biases if model.config.gate == "sigmoid" else None


def trace_text(model: TinyMoE, tokenizer, texts: str | Sequence[str],
               tags: str | Sequence[str] | None = None, *, max_tokens: int | None = None,
               batch_size: int = 32) -> RoutingTrace:
    """Router logits of ``texts`` through every MoE layer of ``model`` as a `RoutingTrace`.

    Each text is encoded and cut into sequences of at most ``context`` tokens (each sequence is a separate
    forward pass, positions restart at 0); ``tags`` (one per text, e.g. "code", "de") label their tokens;
    ``max_tokens`` caps each text. ``meta`` says how to re-route (``router``, ``top_k``, ``bias``)::

        tr = trace_text(model, tok, ["hello world"], tags=["en"])
        route(tr.layer(0), tr.meta["router"], k=tr.meta["top_k"])   # what layer 0 did
    """
    texts = [texts] if isinstance(texts, str) else list(texts)
    if tags is None:
        tags = [""] * len(texts)
    tags = [tags] * len(texts) if isinstance(tags, str) else [str(t) for t in tags]
    if len(tags) != len(texts):
        raise RoutingError(f"tags must have one label per text ({len(texts)}), got {len(tags)}")
    ctx = model.config.context
    seqs, seq_tags = [], []
    for text, tag in zip(texts, tags):
        ids = tokenizer.encode(text)[:max_tokens] if max_tokens else tokenizer.encode(text)
        for start in range(0, len(ids), ctx):
            seqs.append(ids[start:start + ctx])
            seq_tags.append(tag)
    if not seqs:
        raise RoutingError("nothing to trace: every text encodes to 0 tokens")
    parts: list = [None] * len(seqs)
    was_training = model.training
    model.eval()
    try:
        # sequences of one length share a forward pass; the trace keeps the texts' token order
        by_len: dict[int, list[int]] = {}
        for i, seq in enumerate(seqs):
            by_len.setdefault(len(seq), []).append(i)
        for length, idx in by_len.items():
            logits, _ = forward_windows(model, np.array([seqs[i] for i in idx], dtype=np.int64),
                                        batch_size=batch_size)
            per_seq = logits.reshape(logits.shape[0], len(idx), length, -1)
            for j, i in enumerate(idx):
                parts[i] = per_seq[:, j]
    finally:
        model.train(was_training)
    token_ids = np.concatenate([np.asarray(s, np.int64) for s in seqs])
    return RoutingTrace(
        logits=np.concatenate(parts, axis=1),
        token_ids=token_ids,
        positions=np.concatenate([np.arange(len(s)) for s in seqs]),
        sequence_ids=np.concatenate([np.full(len(s), i) for i, s in enumerate(seqs)]),
        tags=[t for s, t in zip(seqs, seq_tags) for _ in s],
        tokens=[tokenizer.decode([int(i)]) for i in token_ids],
        meta=trace_meta(model),
        bias=trace_bias(model),
    )
