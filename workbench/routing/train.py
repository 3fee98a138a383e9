"""Train the tiny MoE (`tiny_moe`) on the shipped corpora and measure how its experts specialise by domain.

Data. Seven training domains, each a group of tagged sources (a tag is a corpus or a language of the
parallel text): ``english`` (prose_en + parallel en), ``code``, ``latin`` (de es fr it pt tr vi),
``cyrillic_greek`` (ru uk el), ``arabic_hebrew`` (ar fa he), ``indic_thai`` (hi th), ``cjk`` (zh ja ko).
Held out: the last 5 % of the prose, the last 10 % of every code file's lines, the last 4 of the 32 parallel
passages in every language.

Steps. One training step is one global batch of one micro-batch per domain (``micro_batch`` windows of
``context`` tokens each), so every micro-batch is single-domain, as happens when a data-parallel rank reads
one document stream. The variants differ only in how the experts are kept balanced:

=======  =================================================================================================
variant  balancing
=======  =================================================================================================
micro    Switch loss ``E * sum_i f_i P_i`` computed inside each micro-batch and averaged (the usual
         data-parallel implementation: each domain must use every expert evenly)
global   the same loss with ``f_i`` and ``P_i`` over the whole global batch (Qiu et al. 2025, "Demons in the
         Detail": only the mix of domains must be balanced, so a domain may keep its favourite experts)
bias     no balance loss: sigmoid gate whose per-expert selection bias moves by ``bias_rate * sign(mean -
         load)`` after every step (DeepSeek-V3's auxiliary-loss-free balancing, `routers.update_bias`)
=======  =================================================================================================

The whole global batch runs as one forward pass; the micro/global difference lives only in how the balance
loss groups the tokens, which gives exactly the gradients of gradient accumulation over the micro-batches.

Measurement (`evaluate`): held-out windows of every tag -> perplexity per domain, a `RoutingTrace`, and
`specialization`: per layer, each domain's distribution of expert slots and the mutual information between
domain and expert (mean KL of each domain's distribution to the domains' average, in bits).

Example::

    report = train_variants(steps=5, out="run", show_progress=True)   # the CLI: workbench moe train --steps 5
    report["variants"]["global"]["metrics"]["specialization_bits"]
"""

from __future__ import annotations

import copy
import json
import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from workbench.errors import RoutingError
from workbench.routing.metrics import load_cv, max_violation
from workbench.routing.routers import route, update_bias
from workbench.routing.tiny_moe import (
    ASSETS_DIR,
    VARIANTS,
    TinyMoE,
    TinyMoEConfig,
    checkpoint_name,
    forward_windows,
    round_to_storage,
    save_tiny_moe,
    trace_meta,
)
from workbench.routing.trace import RoutingTrace

DOMAINS: dict[str, tuple[str, ...]] = {
    "english": ("prose_en", "en"),
    "code": ("code",),
    "latin": ("de", "es", "fr", "it", "pt", "tr", "vi"),
    "cyrillic_greek": ("ru", "uk", "el"),
    "arabic_hebrew": ("ar", "fa", "he"),
    "indic_thai": ("hi", "th"),
    "cjk": ("zh", "ja", "ko"),
}
DOMAIN_OF = {tag: domain for domain, tags in DOMAINS.items() for tag in tags}
REPORT_FILE = "tiny_moe.json"
TOKENIZER_FILE = "tokenizer.json"
REPORT_FORMAT = "workbench-tiny-moe-report-1"
HELD_OUT_PASSAGES = 4


# --------------------------------------------------------------------------------------------------- data


def source_texts(split: str = "train") -> dict[str, list[str]]:
    """The documents of every tag in ``split`` ("train" or "heldout"): tag -> list of texts (see the module
    docstring)."""
    from workbench.data import load_corpus
    from workbench.data.corpora import parallel_texts

    if split not in ("train", "heldout"):
        raise RoutingError(f"split must be 'train' or 'heldout', got {split!r}")
    train = split == "train"
    prose = load_corpus("prose_en").read_text()
    cut = prose.rfind("\n\n", 0, int(len(prose) * 0.95)) + 2
    out = {"prose_en": [prose[:cut] if train else prose[cut:]], "code": []}
    for path in sorted(load_corpus("code").paths, key=lambda p: p.name):
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
        cut = int(len(lines) * 0.9)
        out["code"].append("".join(lines[:cut] if train else lines[cut:]))
    passages = parallel_texts()
    for tag in DOMAIN_OF:
        if tag in passages:
            p = passages[tag]
            out[tag] = ["\n\n".join(p[:-HELD_OUT_PASSAGES] if train else p[-HELD_OUT_PASSAGES:])]
    return out


def train_tokenizer(vocab_size: int = 4096, *, parallel_weight: int = 4, show_progress: bool = False):
    """Byte-level BPE (GPT-2 pre-tokenizer) trained on the training split of every tag; the parallel text
    counts ``parallel_weight`` times so the 19 small languages get tokens of their own. Deterministic."""
    from workbench.tokenization.trainer import train_bpe

    docs = []
    for tag, texts in source_texts("train").items():
        docs += texts * (1 if tag in ("prose_en", "code") else parallel_weight)
    return train_bpe(docs, vocab_size, show_progress=show_progress, name="tiny-moe")


@dataclass
class TokenData:
    """Token streams per tag: ``train[tag]`` / ``heldout[tag]`` int64 [n] (documents joined by a blank
    line)."""

    train: dict[str, np.ndarray]
    heldout: dict[str, np.ndarray]
    vocab_size: int

    @classmethod
    def from_tokenizer(cls, tokenizer) -> TokenData:
        def encode(split):
            return {tag: np.asarray(tokenizer.encode("\n\n".join(texts)), dtype=np.int64)
                    for tag, texts in source_texts(split).items()}

        return cls(encode("train"), encode("heldout"), int(tokenizer.n_vocab))

    def domain_tokens(self, split: str = "train") -> dict[str, int]:
        streams = self.train if split == "train" else self.heldout
        return {d: int(sum(streams[t].size for t in tags if t in streams)) for d, tags in DOMAINS.items()}


class DomainSampler:
    """Random windows of ``length`` tokens from one domain: a tag drawn in proportion to its tokens, then a
    start."""

    def __init__(self, data: TokenData, length: int, rng: np.random.Generator):
        self.length, self.rng = length, rng
        self.streams = {}
        for domain, tags in DOMAINS.items():
            streams = [data.train[t] for t in tags if t in data.train and data.train[t].size > length]
            if not streams:
                raise RoutingError(f"domain {domain!r} has no training text longer than {length} tokens")
            sizes = np.array([s.size - length for s in streams], np.float64)
            self.streams[domain] = (streams, sizes / sizes.sum())

    def sample(self, domain: str, n: int) -> np.ndarray:
        """int64 [n, length] windows from ``domain``."""
        streams, weights = self.streams[domain]
        which = self.rng.choice(len(streams), size=n, p=weights)
        starts = [int(self.rng.integers(0, streams[w].size - self.length)) for w in which]
        return np.stack([streams[w][s:s + self.length] for w, s in zip(which, starts)])


def heldout_windows(data: TokenData, length: int, max_windows: int) -> tuple[np.ndarray, list[str]]:
    """Non-overlapping held-out windows, at most ``max_windows`` per tag -> (int64 [W, length], tag per
    window)."""
    windows, tags = [], []
    for tag, stream in data.heldout.items():
        n = min(max_windows, stream.size // length)
        windows += [stream[i * length:(i + 1) * length] for i in range(n)]
        tags += [tag] * n
    if not windows:
        raise RoutingError(f"no held-out text is {length} tokens long")
    return np.stack(windows), tags


# --------------------------------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainConfig:
    """One variant's training run. A step sees ``len(DOMAINS) * micro_batch`` windows of ``model.context``
    tokens. ``balance_coef``: weight of the Switch balance loss (micro/global); ``z_loss_coef``: router
    z-loss weight (0 = off); ``bias_rate``: per-step bias change (bias variant); ``eval_windows``: held-out
    windows per tag for `evaluate`."""

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


@dataclass
class TrainProgress:
    """Passed to the ``progress`` callback after every step. Losses in nats; ``max_violation_global`` /
    ``max_violation_micro``: MaxVio of the step's expert loads over the global batch / mean over its
    micro-batches (mean over layers)."""

    variant: str
    step: int
    steps: int
    loss: float
    lm_loss: float
    balance_loss: float
    max_violation_global: float
    max_violation_micro: float
    elapsed_s: float

    # the fields every `workbench.progress.Progress` has
    @property
    def done(self) -> int:
        return self.step

    @property
    def total(self) -> int:
        return self.steps

    @property
    def stage(self) -> str:
        return self.variant

    @property
    def seconds(self) -> float:
        return self.elapsed_s


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
            if progress is not None:
                progress(TrainProgress(cfg.variant, step + 1, cfg.steps,
                                       elapsed_s=time.perf_counter() - start, **row))
    finally:
        if bar is not None:
            bar.close()
    model.eval()
    return TrainResult(model, cfg, history, time.perf_counter() - start)


# ------------------------------------------------------------------------------------------------ measurement


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
    """Route every layer of ``trace`` again (``router``, ``k``, ``bias`` [L, E]: from ``trace.meta`` by
    default, else top-2 softmax) and measure `Specialization` over its tags, or over ``groups`` (tag -> group
    label; tags not in it keep their own name). Tokens tagged "" are left out.

    Two tags whose tokens use disjoint expert pairs ``{0, 1}`` and ``{2, 3}`` of 4 experts (k=2) give
    distributions ``[.5, .5, 0, 0]`` and ``[0, 0, .5, .5]``, KL 1 bit each, mutual information 1 bit,
    top-2 share 1.0.
    """
    meta = trace.meta or {}
    router = router or meta.get("router", "topk_softmax")
    k = int(k or meta.get("top_k", 2))
    if bias is None:
        bias = meta.get("bias", np.zeros((trace.n_layers, trace.n_experts)))
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


def evaluate(model: TinyMoE, data: TokenData, *, max_windows: int = 8) -> Evaluation:
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
                         meta=trace_meta(model))
    win_domain = np.array([DOMAIN_OF.get(t, t) for t in tags])
    by_domain = {d: float(np.exp(ce[win_domain == d].mean())) for d in DOMAINS if (win_domain == d).any()}
    return Evaluation(perplexity=float(np.exp(ce.mean())), perplexity_by_domain=by_domain, trace=trace,
                      domain=specialization(trace, groups=DOMAIN_OF), language=specialization(trace))


# ----------------------------------------------------------------------------------------------- all variants


def read_report(path=None) -> dict:
    """The training report (config, timings, metrics per variant) in ``path`` (a folder or the JSON file;
    default: the shipped one)."""
    path = Path(path) if path is not None else ASSETS_DIR
    if path.is_dir():
        path = path / REPORT_FILE
    if not path.is_file():
        raise RoutingError(f"no tiny MoE training report at {path}; train with "
                           "`workbench moe train --out DIR`")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RoutingError(f"could not read the training report {path}: {exc}") from exc


def compare_variants(variants: dict) -> dict:
    """Headline comparison from a report's ``variants``: who specialises most, and whether global-batch
    balancing beats micro-batch balancing on specialization (the "Demons in the Detail" prediction)."""
    spec = {v: r["metrics"]["specialization_bits"] for v, r in variants.items()}
    out = {"specialization_bits": spec, "sharpest": max(spec, key=spec.get)}
    if "micro" in spec and "global" in spec:
        ratio = spec["global"] / spec["micro"] if spec["micro"] > 0 else float("inf")
        out["global_over_micro"] = ratio
        out["global_sharper_than_micro"] = bool(spec["global"] > spec["micro"])
    return out


def train_variants(variants: Sequence[str] = VARIANTS, *, out=None, steps: int | None = None, seed: int = 0,
                   tokenizer=None, overwrite: bool = False,
                   progress: Callable[[TrainProgress], None] | None = None, show_progress: bool = False,
                   log: Callable[[str], None] | None = None, **overrides) -> dict:
    """Train the tokenizer (unless ``tokenizer`` is given), then every variant with the same seed; round the
    weights to float16, evaluate, and (with ``out``) write ``tokenizer.json``,
    ``tiny_moe_<variant>.safetensors`` and ``tiny_moe.json`` there (refusing to replace files unless
    ``overwrite``; the report keeps other variants already in it). ``overrides`` go to `variant_config`
    (``micro_batch=2``, ``model=TinyMoEConfig(...)`` ...).
    Returns the report dict."""
    variants = list(dict.fromkeys(variants))
    for v in variants:
        if v not in VARIANTS:
            raise RoutingError(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
    if steps is not None:
        overrides["steps"] = steps
    out = Path(out) if out is not None else None
    if out is not None and not overwrite:
        existing = [str(out / checkpoint_name(v)) for v in variants if (out / checkpoint_name(v)).exists()]
        if existing:
            raise RoutingError(f"{', '.join(existing)} exist; pass overwrite=True (CLI: --overwrite) or "
                               "another --out")
    say = log or (lambda _msg: None)
    t0 = time.perf_counter()
    tok_info = {"file": TOKENIZER_FILE}
    if tokenizer is None:
        tokenizer = train_tokenizer()
        tok_info["train_seconds"] = round(time.perf_counter() - t0, 2)
        say(f"tokenizer: {tokenizer.n_vocab} tokens trained in {tok_info['train_seconds']} s")
    same_tokenizer = True
    if out is not None and (out / TOKENIZER_FILE).exists():
        # the checkpoints already there were trained with that tokenizer: only the very same one may join them
        from workbench.tokenization.writers import hf_json

        same_tokenizer = hf_json(tokenizer) == json.loads((out / TOKENIZER_FILE).read_text(encoding="utf-8"))
        if not same_tokenizer and not overwrite:
            raise RoutingError(f"{out / TOKENIZER_FILE} holds a different tokenizer; pass overwrite=True "
                               "(CLI: --overwrite), --tokenizer with that file, or another --out")
    tok_info["vocab_size"] = int(tokenizer.n_vocab)
    data = TokenData.from_tokenizer(tokenizer)
    tok_info["train_tokens_by_domain"] = data.domain_tokens("train")
    tok_info["heldout_tokens_by_domain"] = data.domain_tokens("heldout")
    overrides.setdefault("seed", seed)
    if "model" not in overrides:
        overrides["model"] = TinyMoEConfig(vocab_size=int(tokenizer.n_vocab))
    report = {"format": REPORT_FORMAT, "tokenizer": tok_info,
              "domains": {d: list(t) for d, t in DOMAINS.items()},
              "machine": {"torch": torch.__version__, "threads": torch.get_num_threads(),
                          "processor": platform.processor() or platform.machine()},
              "variants": {}}
    if out is not None and same_tokenizer and (out / REPORT_FILE).is_file():
        previous = read_report(out).get("variants", {})
        report["variants"] = {v: r for v, r in previous.items() if v not in variants}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        tokenizer.save(out / TOKENIZER_FILE, overwrite=True)  # checked above: absent, the same one, or overwrite
    for v in variants:
        cfg = variant_config(v, **dict(overrides))
        result = train_tiny_moe(cfg, data, progress=progress, show_progress=show_progress)
        model = round_to_storage(result.model)
        t_eval = time.perf_counter()
        ev = evaluate(model, data, max_windows=cfg.eval_windows)
        t_eval = time.perf_counter() - t_eval
        h = result.history
        tail = max(1, len(h["lm_loss"]) // 10)
        entry = {"checkpoint": checkpoint_name(v), "train": cfg.to_dict(), "params": model.n_params(),
                 "active_params": model.n_params(active=True), "train_seconds": round(result.seconds, 1),
                 "eval_seconds": round(t_eval, 1),
                 "final_train_lm_loss": float(h["lm_loss"][-tail:].mean()),
                 "final_train_max_violation_global": float(h["max_violation_global"][-tail:].mean()),
                 "final_train_max_violation_micro": float(h["max_violation_micro"][-tail:].mean()),
                 "lm_loss_curve": h["lm_loss"][:: max(1, cfg.steps // 40)].round(4).tolist(),
                 "metrics": ev.summary()}
        if v == "bias":
            entry["bias"] = model.biases.round(4).tolist()
        if out is not None:
            path = save_tiny_moe(model, out / checkpoint_name(v), overwrite=True,
                                 extra={"train": cfg.to_dict(), "metrics": {k: entry["metrics"][k] for k in (
                                     "perplexity", "specialization_bits", "max_violation")}})
            entry["bytes"] = path.stat().st_size
        report["variants"][v] = entry
        say(format_variant(v, entry))
    report["variants"] = {v: report["variants"][v] for v in VARIANTS if v in report["variants"]}
    report["comparison"] = compare_variants(report["variants"])
    report["total_seconds"] = round(time.perf_counter() - t0, 1)
    if out is not None:
        (out / REPORT_FILE).write_text(json.dumps(report, indent=1), encoding="utf-8")
    return report


def format_variant(variant: str, entry: dict) -> str:
    """One line of headline figures for a variant's report entry."""
    m = entry["metrics"]
    return (f"{variant:>6}: held-out ppl {m['perplexity']:7.2f} | specialization "
            f"{m['specialization_bits']:.3f} bits by domain, {m['specialization_bits_language']:.3f} by "
            f"language | top-2 share {m['top2_share_domain']:.3f} | MaxVio {m['max_violation']:.3f} overall, "
            f"{m['max_violation_within_domain']:.3f} within a domain | CV {m['load_cv']:.3f} | "
            f"trained in {entry['train_seconds']:.0f} s")


def format_report(report: dict) -> str:
    """The report as a few lines of text (what ``workbench moe train`` / ``moe info`` print)."""
    lines = [format_variant(v, e) for v, e in report["variants"].items()]
    c = report.get("comparison") or compare_variants(report["variants"])
    if "global_sharper_than_micro" in c:
        verdict = "sharper" if c["global_sharper_than_micro"] else "NOT sharper"
        bits = c["specialization_bits"]
        lines.append(f"global-batch balancing gives {verdict} domain specialization than micro-batch "
                     f"balancing ({bits['global']:.3f} vs {bits['micro']:.3f} bits, "
                     f"x{c['global_over_micro']:.2f})")
    return "\n".join(lines)
