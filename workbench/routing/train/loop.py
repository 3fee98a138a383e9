"""The training loop of one variant (`train_tiny_moe`): one global batch of one single-domain micro-batch per
domain a step, the Switch balance loss at micro- or global-batch scope (`balance_loss`) or the bias update, AdamW
with warm-up and cosine decay, and the per-step history (`TrainResult`, `TrainProgress`)."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from workbench.errors import RoutingError
from workbench.progress import Progress, Reporter
from workbench.routing.routers import update_bias
from workbench.routing.tiny_moe import VARIANTS, TinyMoE
from workbench.routing.train.config import TrainConfig
from workbench.routing.train.data import DOMAINS, DomainSampler, TokenData

#: What the ``progress`` callback gets after every step: a `workbench.progress.Progress` (``stage``: the variant,
#: ``done`` / ``total``: steps) whose ``detail`` holds the step's ``loss``, ``lm_loss``, ``balance_loss`` (nats) and
#: ``max_violation_global`` / ``max_violation_micro`` (MaxVio of the expert loads over the global batch / mean over
#: its micro-batches, mean over layers).
TrainProgress = Progress


def balance_loss(router_logits: torch.Tensor, experts: torch.Tensor, n_groups: int,
                 scope: str) -> torch.Tensor:
    """Switch balance loss ``E * sum_i f_i P_i`` averaged over layers. ``router_logits`` [L, N, E],
    ``experts`` int [L, N, k]; the N tokens are ``n_groups`` contiguous micro-batches of equal size.
    ``scope="micro"``: f and P per micro-batch, averaged; ``"global"``: over all N tokens (the same as
    `metrics.load_balancing_loss` with that scope)."""
    n_layers, n, e = router_logits.shape
    k = experts.shape[-1]
    probs = torch.softmax(router_logits, dim=-1).view(n_layers, n_groups, n // n_groups, e)
    counts = F.one_hot(experts, e).sum(dim=-2).view(n_layers, n_groups, n // n_groups, e).sum(dim=2).float()
    if scope == "micro":
        f = counts / (n // n_groups * k)
        return e * (f * probs.mean(dim=2)).sum(-1).mean()
    if scope == "global":
        f = counts.sum(dim=1) / (n * k)
        return e * (f * probs.mean(dim=(1, 2))).sum(-1).mean()
    raise RoutingError(f"unknown balance scope {scope!r}; choose 'micro' or 'global'")


def _max_violation(counts: np.ndarray) -> float:
    """Mean over the leading axes of MaxVio of the last axis (loads of E experts)."""
    mean = counts.mean(axis=-1)
    return float(((counts.max(axis=-1) - mean) / np.maximum(mean, 1e-9)).mean())


@dataclass
class TrainResult:
    """A trained model with its per-step history: ``history[name]`` float64 [steps] for ``loss``, ``lm_loss``,
    ``balance_loss``, ``max_violation_global``, ``max_violation_micro``."""

    model: TinyMoE
    config: TrainConfig
    history: dict[str, np.ndarray]
    seconds: float


def _lr(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def train_tiny_moe(config: TrainConfig, data: TokenData, *, init: TinyMoE | None = None,
                   progress: Callable[[TrainProgress], None] | None = None,
                   show_progress: bool = False) -> TrainResult:
    """Train one variant from scratch, or from a copy of ``init`` (weights and biases; its config must be
    ``config.model``). Seeded: the same ``seed`` gives every variant the same initial weights and the same
    batches. ``progress`` is called after every step; ``show_progress`` draws a tqdm bar."""
    cfg = config
    if cfg.variant not in VARIANTS:
        raise RoutingError(f"unknown variant {cfg.variant!r}; choose one of {', '.join(VARIANTS)}")
    if cfg.model.vocab_size < data.vocab_size:
        raise RoutingError(f"model vocab_size {cfg.model.vocab_size} is smaller than the tokenizer's "
                           f"{data.vocab_size}; build the config with model=TinyMoEConfig(vocab_size=...)")
    if init is not None:
        if init.config != cfg.model:
            raise RoutingError(f"init has config {init.config}, but this run trains {cfg.model}")
        model = copy.deepcopy(init)
        model.variant = cfg.variant
    else:
        model = TinyMoE(cfg.model, variant=cfg.variant)
        model.reset_parameters(seed=cfg.seed)
    model.train()
    decay = [p for n, p in model.named_parameters() if "norm" not in n]
    rest = [p for n, p in model.named_parameters() if "norm" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    sampler = DomainSampler(data, cfg.model.context, np.random.default_rng(cfg.seed))
    domains = list(DOMAINS)
    history = {k: np.zeros(cfg.steps) for k in ("loss", "lm_loss", "balance_loss", "max_violation_global",
                                                  "max_violation_micro")}
    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, desc=f"tiny MoE [{cfg.variant}]", unit="step")
    start = time.perf_counter()
    report = Reporter(progress, cfg.variant, cfg.steps)
    try:
        for step in range(cfg.steps):
            batch = np.concatenate([sampler.sample(d, cfg.micro_batch) for d in domains])
            ids = torch.from_numpy(batch)
            for group in opt.param_groups:
                group["lr"] = _lr(cfg, step)
            out = model(ids)
            lm = F.cross_entropy(out.logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
            loss = lm
            bal = torch.zeros(())
            if cfg.variant in ("micro", "global") and cfg.balance_coef > 0:
                bal = balance_loss(out.router_logits, out.experts, len(domains), cfg.variant)
                loss = loss + cfg.balance_coef * bal
            if cfg.z_loss_coef > 0:
                loss = loss + cfg.z_loss_coef * torch.logsumexp(out.router_logits, dim=-1).square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            e = cfg.model.n_experts
            counts = F.one_hot(out.experts.detach(), e).sum(dim=-2)                  # [L, N, E]
            counts = counts.view(cfg.model.n_layers, len(domains), -1, e).sum(dim=2).numpy()  # [L, G, E]
            loads = counts.sum(axis=1)                                                # [L, E]
            if cfg.variant == "bias":
                with torch.no_grad():
                    for block, ld in zip(model.blocks, loads):
                        b = update_bias(block.moe.bias.numpy(), ld, cfg.bias_rate)
                        block.moe.bias.copy_(torch.from_numpy(b.astype(np.float32)))
            row = {"loss": float(loss.detach()), "lm_loss": float(lm.detach()),
                   "balance_loss": float(bal.detach()), "max_violation_global": _max_violation(loads),
                   "max_violation_micro": _max_violation(counts)}
            for key, value in row.items():
                history[key][step] = value
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{row['lm_loss']:.3f}", maxvio=f"{row['max_violation_global']:.2f}")
            report(step + 1, **row)
    finally:
        if bar is not None:
            bar.close()
    model.eval()
    return TrainResult(model, cfg, history, time.perf_counter() - start)
