"""MoE routing lab core: route one layer's router logits with every major router (`route` / the router functions
-> `Routing`), measure balance (`load_balancing_loss`, `router_z_loss`, `load_cv`, `max_violation`,
`load_entropy`, `drop_rate_by_position`), and keep captured logits as a `RoutingTrace`.

Example::

    from workbench.routing import synthetic_trace, route, balance_summary
    tr = synthetic_trace(n_tokens=512, n_experts=8)
    r = route(tr.layer(0), "capacity_topk", k=2, capacity_factor=1.0, drop_policy="probability")
    r.loads, r.drop_rate, balance_summary(r)
"""

from workbench.routing.capture import capture_router_logits
from workbench.routing.metrics import (
    BalanceSummary,
    PositionDrops,
    balance_summary,
    drop_rate_by_position,
    load_balancing_loss,
    load_cv,
    load_entropy,
    max_violation,
    router_z_loss,
)
from workbench.routing.routers import (
    DROP_POLICIES,
    OVERFLOW_MODES,
    ROUTER_NAMES,
    ROUTERS,
    Routing,
    capacity_aware,
    capacity_for,
    capacity_topk,
    deepseek_v3,
    expert_choice,
    grouped_topk,
    null_experts,
    route,
    switch_top1,
    topk_softmax,
    update_bias,
    warm_up,
)
from workbench.routing.trace import RoutingTrace, synthetic_trace

__all__ = [
    "DROP_POLICIES", "OVERFLOW_MODES", "ROUTERS", "ROUTER_NAMES", "BalanceSummary", "PositionDrops", "Routing",
    "RoutingTrace", "balance_summary", "capacity_aware", "capture_router_logits", "capacity_for", "capacity_topk", "deepseek_v3",
    "drop_rate_by_position", "expert_choice", "grouped_topk", "load_balancing_loss", "load_cv", "load_entropy",
    "max_violation", "null_experts", "route", "router_z_loss", "switch_top1", "synthetic_trace", "topk_softmax",
    "update_bias", "warm_up",
]
