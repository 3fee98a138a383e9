"""`capture_router_logits`: run texts (or token ids) through a Hugging Face MoE causal LM and keep every MoE
layer's router logits as a `RoutingTrace`.

Two ways to see the router logits, tried in this order (``via="auto"``):

* ``"router_logits"``: ask the model for them (``model(..., output_router_logits=True).router_logits``, one
  ``[tokens, experts]`` tensor per MoE layer, in layer order);
* ``"hooks"``: forward hooks on the router ("gate") module of every MoE layer, taking the gate's own output (its
  first element when it returns ``(logits, scores, indices)``) or, for a gate that returns no logits, the gate's
  linear map applied to its input. Used when the forward takes no ``output_router_logits``, returns none, or returns
  a number of layers that does not match the gates found.

========================  ==========================  =============================================================
family (model_type)       path under transformers 5   router the lab replays (``meta["router"]`` + params)
========================  ==========================  =============================================================
Mixtral (mixtral)         router_logits               ``topk_softmax``, ``renormalize=True`` (always)
Qwen2-MoE (qwen2_moe)     router_logits               ``topk_softmax``, ``renormalize=norm_topk_prob``; plus a
                                                      sigmoid-gated shared expert (``meta["shared_experts"] = 1``)
Qwen3-MoE (qwen3_moe)     router_logits               ``topk_softmax``, ``renormalize=norm_topk_prob``
OLMoE (olmoe)             router_logits               ``topk_softmax``, ``renormalize=norm_topk_prob``
DeepSeek-V3 (deepseek_v3) router_logits               ``deepseek_v3``: ``k=num_experts_per_tok``, ``n_groups=n_group``,
and the families copying                              ``topk_groups=topk_group``, ``route_scale=routed_scaling_factor``,
its gate: GLM-4-MoE                                   ``normalize=norm_topk_prob``; each layer's
(glm4_moe), dots1,                                    ``e_score_correction_bias`` in ``RoutingTrace.bias``
glm4_moe_lite, solar_open,                            (replay: ``route(tr.layer(i), tr.meta["router"],
mimo_v2_flash ...                                     **tr.router_params(i))``)
other MoE models          router_logits, else hooks   ``topk_softmax`` when the config says softmax scoring and
                                                      ``norm_topk_prob``; else ``None`` (see ``meta["router_config"]``)
========================  ==========================  =============================================================

A DeepSeek-V3-style gate is recognised from the gate module (an ``e_score_correction_bias`` buffer and the
``num_group``/``topk_group``/``routed_scaling_factor``/``norm_topk_prob`` attributes, else the config's fields:
``DeepseekV3Config`` has no ``scoring_func``) and confirmed by calling the gate on a fixed random probe and
comparing its own choices and weights with the `deepseek_v3` replay; a biased gate that does not match gets no
suggestion (``meta["router_note"]`` says why) rather than a wrong one.

(These families' routers are ``*TopKRouter`` / ``*TopkRouter`` modules whose first output is
``F.linear(h, weight)``, recorded by transformers for ``output_router_logits``; both paths give the same numbers,
which the tests check.)

Every sequence runs alone (batch size 1, no padding, ``use_cache=False``, the model in eval mode for the duration),
so a token's logits do not depend on the other sequences.

Example::

    from workbench.models import load_model
    from workbench.routing import capture_router_logits, route
    model, tok = load_model("~/models/OLMoE-1B-7B")                       # a local folder, never the hub
    tr = capture_router_logits(["def f(x):", "Le chat dort."], model, tokenizer=tok, tags=["code", "fr"])
    tr.logits.shape                                                       # (16, T, 64)
    r = route(tr.layer(0), tr.meta["router"], **tr.meta["router_params"])  # the model's own top-8 routing
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from workbench.errors import RoutingError
from workbench.progress import Progress, Reporter
from workbench.routing.trace import RoutingTrace

VIA = ("auto", "router_logits", "hooks")

_EXPERT_COUNT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")
_ROUTER_NAMES = ("gate", "router")
# Router-relevant config fields copied into meta["router_config"] when the config has them.
_CONFIG_HINTS = (
    "num_local_experts", "num_experts", "n_routed_experts", "num_experts_per_tok", "norm_topk_prob",
    "router_jitter_noise", "router_aux_loss_coef", "decoder_sparse_step", "mlp_only_layers",
    "shared_expert_intermediate_size", "moe_intermediate_size", "n_shared_experts", "scoring_func", "topk_method",
    "n_group", "topk_group", "routed_scaling_factor", "first_k_dense_replace",
)
# Families whose router renormalises the top-k weights whatever the config says.
_ALWAYS_RENORMALISE = {"mixtral"}
_KNOWN_FAMILIES = {"mixtral", "qwen2_moe", "qwen3_moe", "olmoe"}


# -- the model ------------------------------------------------------------------------------------------------
def _check_model(model):
    if isinstance(model, (str, os.PathLike)):
        raise RoutingError(
            f"capture_router_logits needs a loaded transformers model object, got the name {str(model)!r}; "
            "nothing is downloaded. Load a local folder first: workbench.models.load_model(path) or "
            "AutoModelForCausalLM.from_pretrained(path, local_files_only=True)")
    import torch

    if not isinstance(model, torch.nn.Module) or getattr(model, "config", None) is None:
        raise RoutingError(f"expected a transformers model (a torch module with a .config), got "
                           f"{type(model).__name__}")
    return model


def _config_int(cfg, keys) -> int | None:
    for key in keys:
        value = getattr(cfg, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return int(value)
    return None


def _decoder_layers(model):
    """The ModuleList of decoder layers (the first one with ``num_hidden_layers`` entries), or None."""
    import torch

    n = getattr(model.config, "num_hidden_layers", None)
    for _, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    return None


def _find_routers(model, n_experts: int | None) -> dict[int, tuple[str, object]]:
    """``{model layer index: (module name inside the layer, router module)}`` for every MoE layer.

    A router is a submodule named ``gate`` or ``router`` with a 2-D weight ``[experts, hidden]`` (``experts`` > 1,
    equal to the config's expert count when known), so a Qwen2-MoE ``shared_expert_gate`` [1, hidden] or an
    expert's ``gate_proj`` is never taken for one.
    """
    import torch

    layers = _decoder_layers(model)
    hidden = getattr(model.config, "hidden_size", None)
    found = {}
    for index, layer in enumerate(layers if layers is not None else []):
        candidates = []
        for name, module in layer.named_modules():
            weight = getattr(module, "weight", None)
            if name.rsplit(".", 1)[-1] not in _ROUTER_NAMES or not isinstance(weight, torch.Tensor):
                continue
            if weight.ndim != 2 or weight.shape[0] < 2 or (hidden is not None and weight.shape[1] != hidden):
                continue
            if n_experts is not None and weight.shape[0] != n_experts:
                continue
            candidates.append((name.count("."), name, module))
        if candidates:
            _, name, module = min(candidates, key=lambda c: (c[0], c[1]))
            found[index] = (name, module)
    return found


def _gate_attr(module, cfg, *names):
    """The first of ``names`` set on the gate module, else on the config (None when neither has one)."""
    for source in (module, cfg):
        for name in names:
            value = getattr(source, name, None)
            if value is not None:
                return value
    return None


def _biased_sigmoid_gate(module, cfg, n_experts: int, top_k: int | None) -> dict | None:
    """The `deepseek_v3` router parameters of a DeepSeek-V3-style gate, or None.

    Such a gate (transformers' ``DeepseekV3TopkRouter`` and its copies: ``Glm4MoeTopkRouter``,
    ``Dots1TopkRouter``, ``Glm4MoeLiteTopkRouter``, ``SolarOpenTopkRouter``, ``MiMoV2FlashTopkRouter`` ...) holds
    an ``e_score_correction_bias`` buffer [E] and the attributes ``top_k``, ``num_group``, ``topk_group``,
    ``norm_topk_prob`` and ``routed_scaling_factor`` (copied from the config's ``num_experts_per_tok``,
    ``n_group``, ``topk_group``, ``norm_topk_prob``, ``routed_scaling_factor``); it scores with a sigmoid, selects
    on score + bias inside the best groups and weights with the unbiased scores. The config has no
    ``scoring_func`` field, so the gate module is what tells.
    """
    import torch

    bias = getattr(module, "e_score_correction_bias", None)
    if not isinstance(bias, torch.Tensor) or bias.numel() != n_experts:
        return None
    k = _gate_attr(module, cfg, "top_k", "num_experts_per_tok") or top_k
    n_groups = _gate_attr(module, cfg, "num_group", "n_group")
    topk_groups = _gate_attr(module, cfg, "topk_group")
    if n_groups is None and topk_groups is None:  # no group limit (a gate written for it may say None)
        n_groups = topk_groups = 1
    scale = _gate_attr(module, cfg, "routed_scaling_factor")
    norm = _gate_attr(module, cfg, "norm_topk_prob")
    if not all(_is_int(v) and v > 0 for v in (k, n_groups, topk_groups)) or n_experts % n_groups:
        return None
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not scale > 0:
        return None
    return {"k": int(k), "n_groups": int(n_groups), "topk_groups": int(topk_groups), "route_scale": float(scale),
            "normalize": bool(norm)}


def _gate_agrees(module, params: dict, hidden: int) -> bool:
    """Call the gate on 64 random hidden states (a fixed private generator) and check that its own
    ``(logits, weights, indices)`` are what `deepseek_v3` with ``params`` and the gate's bias makes of its logits:
    the same expert sets, weights to 1e-5. False when the gate returns anything else or disagrees."""
    import torch

    from workbench.routing.routers import deepseek_v3

    gen = torch.Generator().manual_seed(0)
    weight = module.weight
    h = torch.randn(64, hidden, generator=gen).to(device=weight.device, dtype=weight.dtype)
    try:
        with torch.no_grad():
            out = module.forward(h)  # not module(h): the user's hooks on the gate see no extra call
    except Exception:  # a gate with another signature (e.g. the bias passed in by its MoE block)
        return False
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        return False
    logits, weights, idx = (t.detach().float().cpu().numpy() if isinstance(t, torch.Tensor) else None for t in out)
    if logits is None or weights is None or idx is None or idx.shape != (64, params["k"]):
        return False
    bias = module.e_score_correction_bias.detach().double().cpu().numpy()
    try:
        r = deepseek_v3(logits.reshape(64, -1), bias=bias, backend="numba", **params)
    except Exception:
        return False
    mine, theirs = np.argsort(r.assignments, axis=1), np.argsort(idx, axis=1)
    same = np.array_equal(np.take_along_axis(r.assignments, mine, 1), np.take_along_axis(idx, theirs, 1))
    return bool(same and np.allclose(np.take_along_axis(r.weights, mine, 1),
                                     np.take_along_axis(weights.reshape(idx.shape), theirs, 1), rtol=1e-5, atol=1e-5))


def _router_hints(model, n_experts: int, top_k: int | None, gates=()) -> dict:
    """The lab router replaying the model's own (``router`` + ``router_params``) and the config's router fields.

    ``gates``: the MoE layers' router modules. A DeepSeek-V3-style gate (`_biased_sigmoid_gate`) whose own
    choices on a random probe match the `deepseek_v3` replay (`_gate_agrees`) gives ``deepseek_v3``; a gate
    with an ``e_score_correction_bias`` that does not match gives ``None`` (with ``router_note``), never the
    softmax fallback. Otherwise ``topk_softmax`` for softmax-scored families, as before.
    """
    cfg = model.config
    model_type = str(getattr(cfg, "model_type", "") or "")
    norm = getattr(cfg, "norm_topk_prob", None)
    if model_type in _ALWAYS_RENORMALISE:
        norm = True
    scoring = getattr(cfg, "scoring_func", None) or "softmax"
    router, params, note = None, {}, None
    gate = next(iter(gates), None)
    biased = gate is not None and hasattr(gate, "e_score_correction_bias")
    if biased:
        params = _biased_sigmoid_gate(gate, cfg, n_experts, top_k) or {}
        hidden = int(gate.weight.shape[1])
        if params and _gate_agrees(gate, params, hidden):
            router, scoring, norm = "deepseek_v3", "sigmoid", params["normalize"]
        else:
            params = {}
            note = (f"the gate ({type(gate).__name__}) has a selection bias (e_score_correction_bias) but its choices "
                    "do not match the deepseek_v3 router; no replay router is suggested")
    elif top_k is not None and scoring == "softmax" and (norm is not None or model_type in _KNOWN_FAMILIES):
        router, params = "topk_softmax", {"k": int(top_k), "renormalize": bool(norm)}
    shared = int(getattr(cfg, "n_shared_experts", 0) or 0)
    if not shared and int(getattr(cfg, "shared_expert_intermediate_size", 0) or 0) > 0:
        shared = 1
    router_config = {}
    for key in _CONFIG_HINTS:
        value = getattr(cfg, key, None)
        if isinstance(value, (bool, int, float, str)) or (
                isinstance(value, (list, tuple)) and all(isinstance(v, (bool, int, float, str)) for v in value)):
            router_config[key] = list(value) if isinstance(value, tuple) else value
    hints = {"model_type": model_type, "n_experts": int(n_experts), "top_k": None if top_k is None else int(top_k),
             "norm_topk_prob": None if norm is None else bool(norm), "router_score": scoring, "router": router,
             "router_params": params, "shared_experts": shared, "router_config": router_config}
    if note:
        hints["router_note"] = note
    return hints


def _gate_bias(routers: dict, keep: list, numbering: str) -> np.ndarray | None:
    """float32 [L, E]: each kept layer's gate ``e_score_correction_bias``, or None when the gates have none."""
    if not routers:
        return None
    if numbering == "model" and all(layer in routers for layer in keep):
        modules = [routers[layer][1] for layer in keep]
    else:  # MoE-ordinal numbering: the n-th captured layer is the n-th gate
        ordered = [routers[layer][1] for layer in sorted(routers)]
        if any(layer >= len(ordered) for layer in keep):
            return None
        modules = [ordered[layer] for layer in keep]
    biases = [getattr(m, "e_score_correction_bias", None) for m in modules]
    if any(b is None for b in biases):
        return None
    return np.stack([b.detach().float().cpu().numpy().reshape(-1) for b in biases])


# -- the input ------------------------------------------------------------------------------------------------
def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _ids_of(item, where: str) -> np.ndarray:
    import torch

    if isinstance(item, torch.Tensor):
        item = item.detach().cpu().numpy()
    a = np.asarray(item)
    if a.ndim != 1:
        raise RoutingError(f"{where}: token ids must be a flat sequence of integers, got shape {a.shape}")
    if a.size == 0:
        raise RoutingError(f"{where} has no tokens; give at least one token id")
    if not np.issubdtype(a.dtype, np.integer):
        raise RoutingError(f"{where}: token ids must be integers, got dtype {a.dtype}")
    return a.astype(np.int64)


def _split_input(text_or_texts) -> list:
    """A list of items, each a ``str`` (a text) or an int64 array (token ids)."""
    import torch

    x = text_or_texts
    if isinstance(x, str):
        return [x]
    if isinstance(x, (torch.Tensor, np.ndarray)):
        a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x
        if a.ndim == 1:
            return [_ids_of(a, "the sequence")]
        if a.ndim == 2:
            if a.shape[0] == 0:
                raise RoutingError("no sequences given; pass a text, a list of texts or token ids")
            return [_ids_of(row, f"sequence {i}") for i, row in enumerate(a)]
        raise RoutingError(f"token ids must be 1-D (one sequence) or 2-D (one row per sequence), got shape {a.shape}")
    if not isinstance(x, (list, tuple)):
        raise RoutingError(f"expected a text, a list of texts or token ids, got {type(x).__name__}")
    if len(x) == 0:
        raise RoutingError("no sequences given; pass a text, a list of texts or token ids")
    if all(_is_int(v) for v in x):
        return [_ids_of(np.asarray(x, dtype=np.int64), "the sequence")]
    items = []
    for i, item in enumerate(x):
        if isinstance(item, str):
            items.append(item)
        elif isinstance(item, (list, tuple, np.ndarray, torch.Tensor)):
            if isinstance(item, (list, tuple)) and not all(_is_int(v) for v in item):
                raise RoutingError(f"sequence {i} mixes token ids with other things; give ints only")
            items.append(_ids_of(item, f"sequence {i}"))
        else:
            raise RoutingError(f"sequence {i} is a {type(item).__name__}; give a text or a list of token ids")
    return items


def _encode(items: list, tokenizer, add_special_tokens: bool) -> list[np.ndarray]:
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, str):
            out.append(item)
            continue
        if not item.strip():
            raise RoutingError(f"text {i} is empty; give at least a few words")
        if tokenizer is None:
            raise RoutingError("texts need their tokenizer: capture_router_logits(texts, model, tokenizer=tok); "
                               "or pass token ids instead")
        ids = np.asarray(tokenizer(item, add_special_tokens=add_special_tokens)["input_ids"], dtype=np.int64)
        if ids.size == 0:
            raise RoutingError(f"text {i} gives no tokens with this tokenizer")
        out.append(ids)
    return out


def _sequence_tags(tags, n_sequences: int) -> list[str]:
    if tags is None:
        return [""] * n_sequences
    if isinstance(tags, str):
        return [tags] * n_sequences
    tags = list(tags)
    if len(tags) != n_sequences:
        raise RoutingError(f"tags must give one label per sequence ({n_sequences}), got {len(tags)}; "
                           "or pass one string for all")
    return [str(t) for t in tags]


# -- running --------------------------------------------------------------------------------------------------
def _accepts_router_flag(model) -> bool:
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    return "output_router_logits" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _as_layer_logits(tensors, n_tokens: int, n_experts: int) -> list | None:
    """The returned ``router_logits`` as a list of [T, E] tensors, or None when they are missing or odd-shaped."""
    import torch

    if tensors is None:
        return None
    if isinstance(tensors, torch.Tensor):
        tensors = list(tensors) if tensors.ndim == 3 and tensors.shape[1] == n_tokens else [tensors]
    tensors = [t for t in tensors if t is not None]
    if not tensors:
        return None
    out = []
    for t in tensors:
        if not isinstance(t, torch.Tensor) or t.shape[-1] != n_experts or t.numel() != n_tokens * n_experts:
            return None
        out.append(t.reshape(n_tokens, n_experts))
    return out


class _GateHooks:
    """Forward hooks recording each router's logits ``[T, E]`` for the next forward pass."""

    def __init__(self, routers: dict, n_experts: int):
        self.routers = routers
        self.n_experts = n_experts
        self.seen: dict[int, list] = {}
        self.handles = []

    def __enter__(self):
        for layer, (_, module) in self.routers.items():
            self.handles.append(module.register_forward_hook(self._hook(layer)))
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def _hook(self, layer: int):
        import torch
        import torch.nn.functional as F

        def record(module, args, output):
            first = output[0] if isinstance(output, (tuple, list)) and output else output
            if isinstance(first, torch.Tensor) and first.is_floating_point() and first.shape[-1] == self.n_experts:
                logits = first.reshape(-1, self.n_experts)
            else:  # a gate that returns only indices/weights: recompute its linear map from its input
                h = args[0]
                logits = F.linear(h.reshape(-1, h.shape[-1]), module.weight, getattr(module, "bias", None))
            self.seen.setdefault(layer, []).append(logits.detach().float().cpu())

        return record


def _forward(model, ids: np.ndarray, router_flag: bool):
    import torch

    x = torch.as_tensor(ids[None], device=next(model.parameters()).device)
    kwargs = {"output_router_logits": True} if router_flag else {}
    return model(input_ids=x, use_cache=False, **kwargs)


def _run_with_hooks(model, ids: np.ndarray, routers: dict, n_experts: int, arch: str) -> dict:
    with _GateHooks(routers, n_experts) as hooks:
        _forward(model, ids, router_flag=False)
    for layer in routers:
        calls = hooks.seen.get(layer, [])
        if len(calls) != 1 or calls[0].shape != (len(ids), n_experts):
            raise RoutingError(
                f"the router of layer {layer} of {arch} ran {len(calls)} times in one forward pass (expected once "
                "for all tokens), so its logits cannot be attributed to tokens")
    return {layer: hooks.seen[layer][0] for layer in routers}


# -- the public function --------------------------------------------------------------------------------------
def capture_router_logits(text_or_texts, model, *, tokenizer=None, tags=None, layers: Sequence[int] | None = None,
                          max_tokens: int | None = None, add_special_tokens: bool = False, via: str = "auto",
                          progress: Callable[[Progress], None] | None = None) -> RoutingTrace:
    """Router logits of every token of ``text_or_texts`` through ``model``'s MoE layers, as a `RoutingTrace`.

    The text comes first and the model second, as in every capture of the project (`workbench.kvcache.capture`);
    the old order ``(model, text)`` still works with a ``DeprecationWarning``.
    ``model``: a loaded transformers MoE causal LM (Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE ...; never a hub id).
    ``text_or_texts``: a text, a list of texts (needs ``tokenizer``), or token ids: a list of ints or a 1-D tensor
    (one sequence), a list of int lists / 1-D tensors or a 2-D tensor (one sequence per row). Each item is one
    sequence; tokens of all sequences are concatenated in order, ``positions`` count from 0 inside a sequence.
    ``tags``: one label per sequence (or one string for all), repeated onto its tokens.
    ``layers``: model layer indices to keep (default every MoE layer; a dense layer is refused).
    ``max_tokens``: keep only the first ``max_tokens`` tokens of each sequence (longer texts are otherwise refused
    when they exceed the model's ``max_position_embeddings``).
    ``add_special_tokens``: passed to the tokenizer for texts (default False: exactly the text's tokens).
    ``via``: "auto" (returned router logits, else gate hooks), "router_logits" or "hooks" (see the module docstring).
    ``progress`` gets a `Progress` (stage ``"capture"``) after each sequence.

    Returns logits float32 [L, T, E] (before softmax), token ids, and the token strings when a tokenizer is given;
    ``meta`` names the model (``model``, ``architecture``, ``model_type``), ``n_experts``, ``top_k``,
    ``norm_topk_prob``, the lab router replaying the model's own (``router`` + ``router_params``), ``layers``
    (model layer numbers), ``capture_path`` and the router fields of the config (``router_config``).

    ``capture_router_logits([[5, 6, 7], [8, 9]], mixtral).positions -> [0, 1, 2, 0, 1]``.
    """
    import torch

    if isinstance(text_or_texts, torch.nn.Module) and not isinstance(model, torch.nn.Module):
        warnings.warn("capture_router_logits takes (text_or_texts, model): the text comes first, as in "
                      "workbench.kvcache.capture; the (model, text) order will be refused in a later release",
                      DeprecationWarning, stacklevel=2)
        text_or_texts, model = model, text_or_texts
    model = _check_model(model)
    if via not in VIA:
        raise RoutingError(f"via must be one of {VIA}, got {via!r}")
    if max_tokens is not None and (not _is_int(max_tokens) or max_tokens < 1):
        raise RoutingError(f"max_tokens must be a positive integer or None, got {max_tokens!r}")
    cfg = model.config
    arch = type(model).__name__
    n_experts = _config_int(cfg, _EXPERT_COUNT_KEYS)
    routers = _find_routers(model, n_experts)
    if n_experts is None and routers:
        n_experts = int(next(iter(routers.values()))[1].weight.shape[0])
    if n_experts is None:
        raise RoutingError(
            f"{arch} (model_type {getattr(cfg, 'model_type', '?')!r}) is not a mixture-of-experts model: its "
            "config names no experts and it has no router ('gate'/'router') modules, so it has no router logits")
    top_k = _config_int(cfg, ("num_experts_per_tok", "moe_topk", "top_k"))

    seqs = _encode(_split_input(text_or_texts), tokenizer, add_special_tokens)
    seq_tags = _sequence_tags(tags, len(seqs))
    if max_tokens is not None:
        seqs = [s[: int(max_tokens)] for s in seqs]
    report = Reporter(progress, "capture", len(seqs))
    vocab = model.get_input_embeddings().num_embeddings if hasattr(model, "get_input_embeddings") else None
    max_pos = int(getattr(cfg, "max_position_embeddings", 0) or 0)
    for i, s in enumerate(seqs):
        if vocab is not None and (s.min() < 0 or s.max() >= vocab):
            raise RoutingError(f"sequence {i} has token id {int(s.max() if s.max() >= vocab else s.min())} outside "
                               f"the model's vocabulary 0..{vocab - 1}")
        if max_pos and len(s) > max_pos:
            raise RoutingError(f"sequence {i} is {len(s)} tokens long but the model's context is {max_pos} tokens "
                               f"(max_position_embeddings); shorten it or pass max_tokens={max_pos}")

    if layers is not None:
        wanted = sorted({int(x) for x in layers})
        missing = [x for x in wanted if routers and x not in routers]
        if not wanted or missing:
            raise RoutingError(f"layers {missing or list(layers)} are not MoE layers of {arch}; its MoE layers are "
                               f"{sorted(routers)}")

    path = via
    if path == "hooks" and not routers:
        raise RoutingError(f"found no router ('gate'/'router') modules in {arch} to hook; use via='router_logits'")
    if path == "auto" and not _accepts_router_flag(model):
        path = "hooks" if routers else "router_logits"
    modes = {m: m.training for m in model.modules()}
    model.eval()
    per_seq: list[dict[int, torch.Tensor]] = []
    layer_numbers: list[int] | None = sorted(routers) if routers else None
    numbering = "model"
    try:
        with torch.no_grad():
            for done, ids in enumerate(seqs):
                got = None
                if path in ("auto", "router_logits"):
                    try:
                        out = _forward(model, ids, router_flag=True)
                    except TypeError as exc:
                        if path == "router_logits" or not routers:
                            raise RoutingError(f"{arch} does not accept output_router_logits ({exc})") from exc
                        out = None
                    returned = _as_layer_logits(getattr(out, "router_logits", None), len(ids), n_experts)
                    if returned is not None and routers and len(returned) != len(routers):
                        returned = None if path == "auto" else returned
                    if returned is None and (path == "router_logits" or not routers):
                        raise RoutingError(
                            f"{arch} returned no router logits of shape [tokens, {n_experts}] "
                            f"(output_router_logits=True){'' if routers else ' and has no router modules to hook'}"
                            "; it is not a mixture-of-experts model this capture understands")
                    if returned is not None:
                        if layer_numbers is None or len(returned) != len(layer_numbers):
                            n_model = int(getattr(cfg, "num_hidden_layers", 0) or 0)
                            layer_numbers = list(range(len(returned)))
                            numbering = "model" if len(returned) == n_model else "moe-ordinal"
                        got = {layer: t.detach().float().cpu() for layer, t in zip(layer_numbers, returned)}
                        path = "router_logits"
                    else:
                        path = "hooks"
                if got is None:
                    got = _run_with_hooks(model, ids, routers, n_experts, arch)
                per_seq.append(got)
                report(done + 1)
    finally:
        for module, training in modes.items():
            module.training = training

    available = sorted(per_seq[0])
    if layers is None:
        keep = available
    else:
        keep = sorted({int(x) for x in layers})
        missing = [x for x in keep if x not in available]
        if not keep or missing:
            raise RoutingError(f"layers {missing or list(layers)} are not MoE layers of {arch}; its MoE layers are "
                               f"{available}")
    logits = np.concatenate([np.stack([s[layer].numpy() for layer in keep]) for s in per_seq], axis=1)
    token_ids = np.concatenate(seqs)
    lengths = [len(s) for s in seqs]
    tokens = None
    if tokenizer is not None:
        tokens = [tokenizer.decode([int(i)]) for i in token_ids]
    meta = {
        "model": str(getattr(cfg, "_name_or_path", "") or getattr(cfg, "name_or_path", "") or arch),
        "architecture": arch,
        **_router_hints(model, n_experts, top_k, [module for _, module in routers.values()]),
        "layers": [int(x) for x in keep],
        "layer_numbering": numbering,
        "n_model_layers": int(getattr(cfg, "num_hidden_layers", 0) or 0),
        "capture_path": path,
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "sequence_lengths": lengths,
        "add_special_tokens": bool(add_special_tokens),
        "max_tokens": None if max_tokens is None else int(max_tokens),
    }
    return RoutingTrace(
        logits=logits, token_ids=token_ids,
        positions=np.concatenate([np.arange(n) for n in lengths]),
        sequence_ids=np.repeat(np.arange(len(seqs)), lengths),
        tags=[t for t, n in zip(seq_tags, lengths) for _ in range(n)], tokens=tokens, meta=meta,
        bias=_gate_bias(routers, keep, numbering) if meta["router"] == "deepseek_v3" else None)
