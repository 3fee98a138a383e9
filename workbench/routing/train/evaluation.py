"""Held-out measurement of a trained tiny MoE (`evaluate_held_out` -> `Evaluation`): perplexity overall and per domain, the
routing trace of the held-out windows, and its `Specialization` by domain and by language."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workbench.routing.specialization import Specialization, specialization
from workbench.routing.tiny_moe import TinyMoE, forward_windows, trace_bias, trace_meta
from workbench.routing.trace import RoutingTrace
from workbench.routing.train.data import DOMAIN_OF, DOMAINS, TokenData, heldout_windows


@dataclass
class Evaluation:
    """Held-out figures of one model: ``perplexity`` (all held-out tokens), ``perplexity_by_domain``, the
    routing ``trace`` of the held-out windows (tags = sources), `Specialization` by ``domain`` and by
    ``language`` (every source tag: prose_en, code and the 19 parallel languages)."""

    perplexity: float
    perplexity_by_domain: dict[str, float]
    trace: RoutingTrace
    domain: Specialization
    language: Specialization

    def summary(self) -> dict:
        d = self.domain.summary()
        return {"perplexity": self.perplexity, "perplexity_by_domain": self.perplexity_by_domain,
                "specialization_bits": d["specialization_bits"],
                "specialization_bits_by_layer": d["specialization_bits_by_layer"],
                "specialization_bits_language": self.language.score,
                "top2_share_domain": d["topk_share"],
                "max_violation": d["max_violation"], "max_violation_within_domain": d["group_max_violation"],
                "load_cv": d["load_cv"],
                "domain_expert_distribution": self.domain.distributions.round(4).tolist(),
                "domains": self.domain.groups}


def evaluate_held_out(model: TinyMoE, data: TokenData, *, max_windows: int = 8) -> Evaluation:
    """Route and score the held-out windows (at most ``max_windows`` of ``context`` tokens per tag)."""
    ctx = model.config.context
    windows, tags = heldout_windows(data, ctx, max_windows)
    was_training = model.training
    model.eval()
    try:
        logits, ce = forward_windows(model, windows)
    finally:
        model.train(was_training)
    tok_tags = [t for t in tags for _ in range(ctx)]
    trace = RoutingTrace(logits=logits, token_ids=windows.ravel(),
                         positions=np.tile(np.arange(ctx), len(tags)),
                         sequence_ids=np.repeat(np.arange(len(tags)), ctx), tags=tok_tags,
                         meta=trace_meta(model), bias=trace_bias(model))
    win_domain = np.array([DOMAIN_OF.get(t, t) for t in tags])
    by_domain = {d: float(np.exp(ce[win_domain == d].mean())) for d in DOMAINS if (win_domain == d).any()}
    return Evaluation(perplexity=float(np.exp(ce.mean())), perplexity_by_domain=by_domain, trace=trace,
                      domain=specialization(trace, groups=DOMAIN_OF), language=specialization(trace))
