"""Train every variant in one go (`train_variants`): the tokenizer, then each variant with the same seed, rounded to
float16, evaluated on the held-out windows, and (with ``out``) the checkpoints, tokenizer and report written."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from workbench.errors import RoutingError
from workbench.routing.tiny_moe import (
    VARIANTS,
    TinyMoEConfig,
    checkpoint_name,
    round_to_storage,
    save_tiny_moe,
)
from workbench.routing.train.config import variant_config
from workbench.routing.train.data import DOMAINS, TokenData, train_tokenizer
from workbench.routing.train.evaluation import evaluate_held_out
from workbench.routing.train.loop import TrainProgress, train_tiny_moe
from workbench.routing.train.report import (
    REPORT_FILE,
    REPORT_FORMAT,
    TOKENIZER_FILE,
    compare_variants,
    format_variant,
    read_report,
)
from workbench.saving import atomic_path


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
        ev = evaluate_held_out(model, data, max_windows=cfg.eval_windows)
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
        with atomic_path(out / REPORT_FILE, overwrite=True, error=RoutingError) as tmp:
            tmp.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return report
