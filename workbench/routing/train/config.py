"""One variant's training settings (`TrainConfig`) and the default settings of each variant (`variant_config`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from workbench.errors import RoutingError
from workbench.routing.tiny_moe import VARIANTS, TinyMoEConfig


@dataclass(frozen=True)
class TrainConfig:
    """One variant's training run. A step sees ``len(DOMAINS) * micro_batch`` windows of ``model.context``
    tokens. ``balance_coef``: weight of the Switch balance loss (micro/global); ``z_loss_coef``: router
    z-loss weight (0 = off); ``bias_rate``: per-step bias change (bias variant); ``eval_windows``: held-out
    windows per tag for `evaluate_held_out`."""

    variant: str = "global"
    steps: int = 160
    micro_batch: int = 4
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup: int = 15
    weight_decay: float = 0.01
    balance_coef: float = 0.01
    z_loss_coef: float = 0.0
    bias_rate: float = 0.005
    grad_clip: float = 1.0
    seed: int = 0
    eval_windows: int = 8
    model: TinyMoEConfig = field(default_factory=TinyMoEConfig)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        return d


def variant_config(variant: str, **overrides) -> TrainConfig:
    """The default `TrainConfig` of a variant: the bias variant gets the sigmoid gate and no balance loss.

    ``variant_config("bias", steps=5).model.gate -> "sigmoid"``.
    """
    if variant not in VARIANTS:
        raise RoutingError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    model = overrides.pop("model", None) or TinyMoEConfig()
    model = replace(model, gate="sigmoid" if variant == "bias" else "softmax")
    cfg = TrainConfig(variant=variant, model=model, **overrides)
    if variant == "bias":
        cfg = replace(cfg, balance_coef=0.0)
    if cfg.steps < 1 or cfg.micro_batch < 1 or cfg.eval_windows < 1:
        raise RoutingError("steps, micro_batch and eval_windows must be >= 1")
    return cfg
