"""How the experts' load differs between groups of tokens of a tagged `RoutingTrace` (domains, languages):
`specialization` re-routes every layer and measures, per layer, each group's distribution of expert slots and the
mutual information between group and expert (in bits), with the balance of the loads (`Specialization`).

Written for the tiny MoE's held-out evaluation (`workbench.routing.train.evaluation`); works on any trace whose
tokens carry tags (``trace_text(..., tags=...)``, `capture_router_logits`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workbench.errors import RoutingError
from workbench.routing.metrics import load_cv, max_violation
from workbench.routing.routers import route
from workbench.routing.trace import RoutingTrace


@dataclass
class Specialization:
    """How the experts' load differs between groups of tokens (domains, languages), per layer.

    ``groups`` [D] group labels; ``counts`` int64 [L, D, E] expert slots per group; ``distributions``
    float64 [L, D, E] the same as fractions of each group's slots; ``kl_bits`` [L, D] KL(group || average of
    the groups' distributions) in bits; ``mutual_information_bits`` [L] their mean over groups
    (= I(group; expert) with every group weighted equally: 0 when every group routes alike, at most
    min(log2 D, log2 E)); ``topk_share`` [L, D] the share of a group's slots held by its ``k`` busiest
    experts (k / E when uniform); ``max_violation`` [L] MaxVio of all tokens' loads;
    ``group_max_violation`` [L, D] MaxVio inside each group; ``load_cv`` [L].
    """

    groups: list[str]
    k: int
    counts: np.ndarray
    distributions: np.ndarray
    kl_bits: np.ndarray
    mutual_information_bits: np.ndarray
    topk_share: np.ndarray
    max_violation: np.ndarray
    group_max_violation: np.ndarray
    load_cv: np.ndarray

    @property
    def score(self) -> float:
        """Mutual information between group and expert in bits, mean over layers."""
        return float(self.mutual_information_bits.mean())

    def summary(self) -> dict:
        return {"specialization_bits": self.score,
                "specialization_bits_by_layer": self.mutual_information_bits.round(4).tolist(),
                "topk_share": float(self.topk_share.mean()),
                "max_violation": float(self.max_violation.mean()),
                "group_max_violation": float(self.group_max_violation.mean()),
                "load_cv": float(self.load_cv.mean())}

    def __repr__(self) -> str:
        return (f"Specialization({len(self.groups)} groups x {self.counts.shape[-1]} experts, "
                f"{self.counts.shape[0]} layers: {self.score:.3f} bits, top-{self.k} share "
                f"{self.topk_share.mean():.3f}, MaxVio {self.max_violation.mean():.3f})")


def specialization(trace: RoutingTrace, *, groups: dict[str, str] | None = None, router: str | None = None,
                   k: int | None = None, bias=None) -> Specialization:
    """Route every layer of ``trace`` again (by default ``router`` and ``k`` from ``trace.meta`` and ``bias``
    [L, E] from ``trace.bias``, else top-2 softmax) and measure `Specialization` over its tags, or over ``groups`` (tag -> group
    label; tags not in it keep their own name). Tokens tagged "" are left out.

    Two tags whose tokens use disjoint expert pairs ``{0, 1}`` and ``{2, 3}`` of 4 experts (k=2) give
    distributions ``[.5, .5, 0, 0]`` and ``[0, 0, .5, .5]``, KL 1 bit each, mutual information 1 bit,
    top-2 share 1.0.
    """
    meta = trace.meta or {}
    router = router or meta.get("router", "topk_softmax")
    k = int(k or meta.get("top_k", 2))
    if bias is None:
        bias = trace.bias if trace.bias is not None else np.zeros((trace.n_layers, trace.n_experts))
    bias = np.asarray(bias, dtype=np.float64)
    if bias.shape != (trace.n_layers, trace.n_experts):
        raise RoutingError(f"bias must be [layers, experts] = {(trace.n_layers, trace.n_experts)}, "
                           f"got {bias.shape}")
    labels = np.array([(groups or {}).get(t, t) for t in trace.tags], dtype=object)
    keep = labels != ""
    if not keep.any():
        raise RoutingError("no token of the trace has a tag; give tags when capturing "
                           "(trace_text(..., tags=...))")
    names = list(dict.fromkeys(labels[keep]))
    index = {name: i for i, name in enumerate(names)}
    gid = np.array([index.get(x, -1) for x in labels])
    n_layers, e = trace.n_layers, trace.n_experts
    counts = np.zeros((n_layers, len(names), e), np.int64)
    for layer in range(n_layers):
        params = {"k": k, "bias": bias[layer]} if router == "deepseek_v3" else {"k": k}
        assigned = route(trace.layer(layer), router, **params).requested          # [T, k]
        rows = np.repeat(gid, assigned.shape[1])
        flat = assigned.ravel()
        ok = (rows >= 0) & (flat >= 0)
        np.add.at(counts[layer], (rows[ok], flat[ok]), 1)
    dist = counts / np.maximum(counts.sum(axis=-1, keepdims=True), 1)
    avg = dist.mean(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(dist > 0, dist * np.log2(dist / avg), 0.0).sum(axis=-1)
    topk = np.sort(dist, axis=-1)[..., ::-1][..., :k].sum(axis=-1)
    loads = counts.sum(axis=1)
    group_mv = np.array([[max_violation(c) if c.sum() else 0.0 for c in layer] for layer in counts])
    return Specialization(groups=names, k=k, counts=counts, distributions=dist, kl_bits=kl,
                          mutual_information_bits=kl.mean(axis=1), topk_share=topk,
                          max_violation=np.array([max_violation(ld) for ld in loads]),
                          group_max_violation=group_mv, load_cv=np.array([load_cv(ld) for ld in loads]))
