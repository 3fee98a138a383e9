"""Quality of a KV policy measured with the real model: perplexity, KL and top-1 agreement against the full
cache, memory kept, and a passkey-retrieval probe.

The policy's decisions are replayed on a full-cache capture of the same text (`replay`), then the model runs once
more with exactly those cache contents (`CaptureRunner.logits(keep=...)`, equal to decoding token by token with
that evicted cache). Query-agnostic eviction policies (window, StreamingLLM, SnapKV ...) decide from what the
capture saw up to each step, so their decisions are exact; score-accumulating ones (H2O, TOVA) and query-aware
selection use the full-cache attention and queries of the capture for their scores, the usual replay
approximation (their own evictions would shift later scores slightly).

Example::

    q = evaluate(text, "h2o", 64, decode_steps=64)
    q.delta_ppl, q.kl, q.top1, q.memory_fraction
    sweep = quality_sweep(text, ["window", "h2o", "snapkv"], [32, 64, 128])
    sweep.table                                         # one row per (policy, budget)
    passkey_probe(["streaming_llm", "snapkv"], [64, 128]).accuracy()
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from workbench.errors import KVCacheError, TraceMismatchError
from workbench.kvcache.capture import capture, capture_ids, runner_for
from workbench.kvcache.policies import make_policy
from workbench.kvcache.replay import Retention, replay
from workbench.kvcache.trace import KVTrace
from workbench.progress import Progress, Reporter


@dataclass
class Quality:
    """One policy at one budget on one text. Per-step arrays: ``nll``/``nll_full`` [S-1] (nats, the decode steps'
    next-token targets), ``kl_steps`` [S] (KL(full || policy), nats), ``agree`` bool [S] (same top-1 token)."""

    policy: str
    budget: int
    n_prefill: int
    n_steps: int
    ppl_full: float
    ppl: float
    kl: float
    top1: float
    kv_bytes: float
    kv_bytes_full: float
    nll_full: np.ndarray = field(repr=False)
    nll: np.ndarray = field(repr=False)
    kl_steps: np.ndarray = field(repr=False)
    agree: np.ndarray = field(repr=False)

    @property
    def delta_ppl(self) -> float:
        return self.ppl - self.ppl_full

    @property
    def memory_fraction(self) -> float:
        return self.kv_bytes / self.kv_bytes_full if self.kv_bytes_full else 1.0

    def row(self) -> dict:
        return {"policy": self.policy, "budget": self.budget, "kept_fraction": self.memory_fraction,
                "ppl_full": self.ppl_full, "ppl": self.ppl, "delta_ppl": self.delta_ppl, "kl": self.kl,
                "top1": self.top1, "kv_mb": self.kv_bytes / 1e6}


def keep_masks(retention: Retention) -> dict[int, np.ndarray]:
    """Model layer -> kept mask [H, S, T] of a retention, for `CaptureRunner.logits(keep=...)`."""
    return {int(layer): retention.kept[j] for j, layer in enumerate(retention.layers)}


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def _full_logprobs(runner, trace: KVTrace) -> np.ndarray:
    cached = getattr(trace, "_full_logprobs", None)
    if cached is None:
        logits = runner.logits(trace.token_ids.astype(np.int64), last=trace.n_steps)
        cached = _log_softmax(logits).astype(np.float32)
        trace._full_logprobs = cached
    return cached


def kv_bytes(retention: Retention, n_model_layers: int, head_dim: int, bytes_per_value: int = 2) -> tuple[float, float]:
    """Mean KV-cache bytes per decode step kept by the policy and by the full cache (keys + values, all layers;
    layers the trace did not capture count as full)."""
    n, s = retention.n_prefill, retention.n_steps
    full_tokens = n + 1 + np.arange(s)
    h = retention.kept.shape[1]
    per_token = 2 * head_dim * bytes_per_value
    kept = retention.n_kept.sum(axis=(0, 1)).astype(np.float64)       # [S] over captured layers and heads
    kept += (n_model_layers - retention.kept.shape[0]) * h * full_tokens
    full = n_model_layers * h * full_tokens.astype(np.float64)
    return float(kept.mean() * per_token), float(full.mean() * per_token)


def evaluate(text: str | None, policy, budget, *, model=None, tokenizer=None, decode_steps: int | None = None,
             prefill: int | None = None, trace: KVTrace | None = None, bytes_per_value: int = 2) -> Quality:
    """Run the real model with ``policy`` at ``budget`` on ``text`` and compare it to the full cache.

    The last ``decode_steps`` tokens (default 32) are decoded with the compressed cache (or give ``prefill``).
    Pass ``trace`` (from `capture` on the same model) to reuse a capture; ``text`` may then be None.
    Raises `TraceMismatchError` when the trace is from another model or text.
    """
    runner = runner_for(model, tokenizer)
    if trace is None:
        if text is None:
            raise KVCacheError("give a text or a trace to evaluate")
        trace = capture(text, runner, decode_steps=decode_steps, prefill=prefill)
    else:
        trace.check_model(runner.model)
        if text is not None and text != trace.text:
            raise TraceMismatchError("the trace was captured from another text; pass text=None to use the trace's")
    if trace.n_steps < 2:
        raise KVCacheError("evaluation needs at least 2 decode steps")
    policy = make_policy(policy)
    retention = replay(trace, policy, budget, metrics=False)
    return _quality(runner, trace, retention, bytes_per_value)


def _quality(runner, trace: KVTrace, retention: Retention, bytes_per_value: int = 2) -> Quality:
    ids = trace.token_ids.astype(np.int64)
    n = trace.n_prefill
    full = _full_logprobs(runner, trace)
    if retention.policy.kind == "full":
        pol = full
    else:
        logits = runner.logits(ids, n_prefill=n, keep=keep_masks(retention), last=trace.n_steps)
        pol = _log_softmax(logits).astype(np.float32)
    targets = ids[n + 1:]
    steps = np.arange(len(targets))
    nll_full = -full[steps, targets].astype(np.float64)
    nll = -pol[steps, targets].astype(np.float64)
    p_full = np.exp(full.astype(np.float64))
    kl_steps = (p_full * (full.astype(np.float64) - pol.astype(np.float64))).sum(axis=-1)
    agree = full.argmax(axis=-1) == pol.argmax(axis=-1)
    kept_b, full_b = kv_bytes(retention, runner.n_layers, runner.head_dim, bytes_per_value)
    return Quality(policy=retention.policy.label(), budget=retention.budget, n_prefill=n, n_steps=trace.n_steps,
                   ppl_full=float(np.exp(nll_full.mean())), ppl=float(np.exp(nll.mean())),
                   kl=float(np.maximum(kl_steps, 0).mean()), top1=float(agree.mean()), kv_bytes=kept_b,
                   kv_bytes_full=full_b, nll_full=nll_full, nll=nll, kl_steps=kl_steps, agree=agree)


@dataclass
class QualitySweep:
    """Quality of several policies at several budgets on one trace. ``table`` columns: policy, budget,
    kept_fraction, ppl_full, ppl, delta_ppl, kl, top1, kv_mb, passkey (accuracy, NaN unless a probe was run)."""

    table: object
    qualities: list
    trace: KVTrace = field(repr=False)

    def with_passkey(self, passkey: PasskeyResult) -> QualitySweep:
        """A copy whose ``passkey`` column holds ``passkey``'s accuracy where its (policy, budget) matches a row;
        other rows stay NaN. No model is run."""
        table = self.table.copy()
        table["passkey"] = np.nan
        acc = passkey.accuracy()
        for i, row in table.iterrows():
            hit = acc[(acc.policy == row.policy) & (acc.budget == row.budget)]
            if len(hit):
                table.loc[i, "passkey"] = float(hit.accuracy.iloc[0])
        return QualitySweep(table=table, qualities=self.qualities, trace=self.trace)


def quality_sweep(text: str | None, policies: Sequence, budgets: Sequence, *, model=None, tokenizer=None,
                  decode_steps: int | None = 64, trace: KVTrace | None = None, passkey: PasskeyResult | None = None,
                  progress: Callable[[Progress], None] | None = None, client=None) -> QualitySweep:
    """`evaluate` every policy at every budget on one capture (the full-cache pass is shared).

    ``passkey`` (a `PasskeyResult` over the same policies/budgets) fills the table's passkey column.
    ``progress`` gets a `Progress` (stage ``"sweep"``) after each evaluation. ``client``: a Dask client
    (`workbench.distributed.connect`): the capture is made here and sent to every worker once, each worker loads the
    default model once, and the (policy, budget) points run there; the table equals the local one up to float32
    rounding (torch's thread count on a worker may differ from here)."""
    import pandas as pd

    if client is not None and (model is not None or tokenizer is not None):
        raise KVCacheError("with a Dask client the workers load the default model; pass model=None (and a trace "
                           "captured with the default model)")
    runner = runner_for(model, tokenizer)
    if trace is None:
        if text is None:
            raise KVCacheError("give a text or a trace")
        trace = capture(text, runner, decode_steps=decode_steps)
    if not policies or not budgets:
        raise KVCacheError("give at least one policy and one budget")
    points = []  # (policy, budget, how many table cells it stands for)
    for p in policies:
        pol = make_policy(p)
        points += [(pol, budgets[0], len(budgets))] if pol.kind == "full" else [(pol, b, 1) for b in budgets]
    total = len(policies) * len(budgets)
    report = Reporter(progress, "sweep", total)
    if client is None:
        out, done = [], 0
        for pol, b, cells in points:
            out.append(_quality(runner, trace, replay(trace, pol, b, metrics=False)))
            done += cells
            report(done)
    else:
        out = _sweep_on_cluster(client, trace, points, report)
    table = pd.DataFrame([q.row() for q in out])
    table["passkey"] = np.nan
    sweep = QualitySweep(table=table, qualities=out, trace=trace)
    return sweep if passkey is None else sweep.with_passkey(passkey)


def _sweep_point(trace: KVTrace, policy, budget) -> Quality:
    """One (policy, budget) point of a sweep on a Dask worker, with the worker's own default model."""
    from workbench.kvcache.capture_runner import default_capture_runner

    return _quality(default_capture_runner(), trace, replay(trace, policy, budget, metrics=False))


def _sweep_on_cluster(client, trace: KVTrace, points, report: Reporter) -> list[Quality]:
    from dataclasses import replace

    from workbench.distributed import require_distributed

    distributed = require_distributed()
    shipped = client.scatter(replace(trace, _cache={}), broadcast=True)  # once per worker, without local caches
    futures = [client.submit(_sweep_point, shipped, pol, b, pure=False) for pol, b, _ in points]
    cells = {f.key: c for f, (_, _, c) in zip(futures, points)}
    done = 0
    for fut in distributed.as_completed(futures):
        if fut.status == "error":
            fut.result()
        done += cells[fut.key]
        report(done)
    return client.gather(futures)


# -- passkey retrieval -------------------------------------------------------------------------------------------

FILLER = ("The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ")
INTRO = ("There is an important pass key hidden inside a lot of irrelevant text. Find it and memorize it. "
         "I will quiz you about the pass key.\n")
QUESTION = "\nWhat is the pass key? The pass key is"


def passkey_text(key: int, depth: float, n_filler: int) -> tuple[str, str, str]:
    """(context, question, answer) with ``key`` hidden at ``depth`` (0 = start, 1 = end) of ``n_filler`` repeats
    of the filler paragraph."""
    if not 0.0 <= depth <= 1.0:
        raise KVCacheError(f"passkey depth must be in [0, 1], got {depth}")
    before = int(round(depth * n_filler))
    needle = f"The pass key is {key}. Remember it. {key} is the pass key. "
    context = INTRO + FILLER * before + needle + FILLER * (n_filler - before)
    return context, QUESTION, f" {key}"


@dataclass
class PasskeyResult:
    """``table``: one row per (policy, budget, depth, trial) with ``correct`` (every answer token is the model's
    top-1) and ``digits`` (fraction of answer tokens correct). ``context_tokens``: context length used."""

    table: object
    context_tokens: int

    def accuracy(self):
        """Mean accuracy per (policy, budget) over depths and trials."""
        t = self.table
        return t.groupby(["policy", "budget"], sort=False, as_index=False).agg(accuracy=("correct", "mean"))

    def by_depth(self):
        """Accuracy per policy and budget (rows) and depth (columns)."""
        return self.table.pivot_table(index=["policy", "budget"], columns="depth", values="correct", sort=False)


def passkey_probe(policies: Sequence, budgets: Sequence, *, depths: Sequence[float] = (0.1, 0.5, 0.9),
                  trials: int = 2, n_filler: int = 20, model=None, tokenizer=None, seed: int = 0,
                  progress: Callable[[Progress], None] | None = None) -> PasskeyResult:
    """Hide a 5-digit pass key in filler text at each depth, compress the context with each policy and budget,
    then decode the question and the answer with that cache: correct when every answer token is top-1.

    The context (intro + filler + needle) is the prefill; the question and the answer are the decode steps, so
    query-agnostic policies must keep the key without having seen the question. ``n_filler`` repeats of the
    21-token filler set the context length (20 -> about 500 tokens)."""
    import pandas as pd

    runner = runner_for(model, tokenizer)
    rng = np.random.default_rng(seed)
    rows = []
    total = len(depths) * trials * len(policies) * len(budgets)
    report = Reporter(progress, "passkey", total)
    n_ctx = 0
    for depth in depths:
        for trial in range(trials):
            key = int(rng.integers(10000, 100000))
            context, question, answer = passkey_text(key, float(depth), n_filler)
            ctx_ids = runner.encode(context)
            q_ids = runner.encode(question)
            a_ids = runner.encode(answer)
            ids = np.concatenate([ctx_ids, q_ids, a_ids])
            n_ctx = len(ctx_ids)
            trace = capture_ids(ids, n_ctx, runner, text=context + question + answer)
            n_last = len(a_ids) + 1   # logits of the last question token and the answer tokens but the last
            for p in policies:
                pol = make_policy(p)
                for b in budgets[:1] if pol.kind == "full" else budgets:
                    ret = replay(trace, pol, b, metrics=False)
                    if pol.kind == "full":
                        logits = runner.logits(ids, last=n_last)
                    else:
                        logits = runner.logits(ids, n_prefill=n_ctx, keep=keep_masks(ret), last=n_last)
                    pred = logits[: len(a_ids)].argmax(axis=-1)
                    hits = pred == a_ids
                    rows.append({"policy": pol.label(), "budget": ret.budget, "depth": float(depth),
                                 "trial": trial, "key": key, "correct": bool(hits.all()),
                                 "digits": float(hits.mean())})
                    report(min(len(rows), total))
    return PasskeyResult(table=pd.DataFrame(rows), context_tokens=n_ctx)

