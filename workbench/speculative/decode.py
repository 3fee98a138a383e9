"""`generate`: speculative decoding end to end on the real model with its real KV cache, recorded as a `SpecRun`.

Each step: the schedule says how many nodes to draft; the drafter proposes a tree (natively, or shaped by a tree
builder that queries the drafter's candidates); the target runs the root and every draft node in ONE forward pass
with tree attention (`DecodeSession.extend(tokens, parents)`); the verifier picks the accepted path and the bonus
token; the cache keeps the root and the accepted nodes only (`commit`); the bonus becomes the next root.

At ``temperature=0`` the verifier must be ``greedy`` and the output equals plain greedy decoding token for token (up
to float near-ties between the tree pass and the one-token pass). At ``temperature > 0`` the lossless verifiers sample
exactly from the target's distribution at that temperature.

Example::

    run = generate(open("workbench/data/samples/code/heapq.py").read()[:1500] + "\\n# Rewrite the code above:",
                   drafter="prompt_lookup", max_new_tokens=64)
    run.summary()["tokens_per_step"]      # ~2-3 on code that the output copies
"""

from __future__ import annotations

import time

import numpy as np

from workbench.errors import ModelError, SpeculativeError
from workbench.progress import Reporter
from workbench.speculative.drafter import Drafter, check_budget, make_drafter
from workbench.speculative.run import SpecRun, StepRecord
from workbench.speculative.schedules import longest_path, make_schedule
from workbench.speculative.tree import DraftTree

TOP_K_OBSERVED = 8   # the target's top-k after every fed token, given to learning drafters (Token Recycling)


def _softmax_rows(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def _top_k_rows(logits: np.ndarray, k: int) -> np.ndarray:
    part = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(logits, part, 1), axis=1, kind="stable")
    return np.take_along_axis(part, order, 1).astype(np.int64)


def prompt_ids_for(runner, prompt, chat: bool) -> np.ndarray:
    if isinstance(prompt, str):
        if not prompt.strip():
            raise SpeculativeError("the prompt is empty; give at least a few words")
        try:
            return runner.encode_chat(prompt) if chat else runner.encode(prompt)
        except ModelError as exc:
            raise SpeculativeError(str(exc)) from exc
    ids = np.asarray(prompt)
    if ids.ndim != 1 or ids.size == 0:
        raise SpeculativeError("the prompt is empty: give a text or a non-empty 1-D array of token ids")
    try:
        return runner.check_ids(ids)
    except ModelError as exc:
        raise SpeculativeError(str(exc)) from exc


def generate(prompt, *, drafter="prompt_lookup", builder=None, verifier=None, schedule="fixed",
             max_new_tokens: int = 64, temperature: float = 0.0, seed: int = 0, runner=None, chat: bool = False,
             stop_at_eos: bool = True, drafter_params: dict | None = None, builder_params: dict | None = None,
             verifier_params: dict | None = None, schedule_params: dict | None = None,
             progress=None) -> SpecRun:
    """Speculative decoding of ``prompt`` (a text or token ids) on ``runner`` (default: SmolLM2-135M-Instruct).

    ``drafter``/``builder``/``verifier``/``schedule``: names (with ``*_params``) or objects; ``builder=None`` uses the
    drafter's own proposal; ``verifier=None`` is ``greedy`` at temperature 0 and ``sequoia`` (sampling without
    replacement, lossless for trees and chains) above. ``chat=True`` wraps a text prompt in the chat template.
    ``progress`` gets a `Progress` (stage ``"decode"``: tokens of ``max_new_tokens``) after each step.
    Returns a `SpecRun`.
    """
    from workbench.speculative.builders import make_builder
    from workbench.speculative.verify import make_verifier

    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens <= 0:
        raise SpeculativeError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    if not isinstance(temperature, (int, float)) or not np.isfinite(temperature) or temperature < 0:
        raise SpeculativeError(f"temperature must be >= 0, got {temperature!r}")
    if runner is None:
        from workbench.models import default_runner

        runner = default_runner()
    ids = prompt_ids_for(runner, prompt, chat)
    if runner.max_positions and len(ids) + max_new_tokens > runner.max_positions:
        raise SpeculativeError(f"the prompt ({len(ids)} tokens) plus max_new_tokens ({max_new_tokens}) exceed the "
                               f"model's context of {runner.max_positions} tokens")
    if drafter == "early_exit" and "runner" not in (drafter_params or {}):
        drafter_params = {**(drafter_params or {}), "runner": runner}
    d: Drafter = make_drafter(drafter, **(drafter_params or {}))
    bparams = dict(builder_params or {})
    for key in ("spine", "branch"):          # Goose's sources may be given by drafter name
        if isinstance(bparams.get(key), str):
            bparams[key] = make_drafter(bparams[key])
    b = None if builder is None else make_builder(builder, **bparams)
    extras = [x for x in (b.drafters() if hasattr(b, "drafters") else []) if x is not d]
    vname = verifier if verifier is not None else ("greedy" if temperature == 0 else "sequoia")
    v = make_verifier(vname, **(verifier_params or {}))
    if temperature == 0 and getattr(v, "name", vname) not in ("greedy",):
        raise SpeculativeError(f"temperature 0 means greedy decoding: use verifier='greedy' (got {vname!r}), or "
                               "set a temperature > 0 for a sampling verifier")
    if temperature > 0 and getattr(v, "name", vname) == "greedy":
        raise SpeculativeError("the greedy verifier only reproduces temperature-0 decoding; choose a sampling "
                               "verifier ('sequoia', 'specinfer', 'chain_sampling' ...) for temperature > 0")
    sched = make_schedule(schedule, **(schedule_params or {}))
    sched.bind(runner)
    rng = np.random.default_rng(seed)
    eos = runner.tokenizer.eos_token_id if stop_at_eos else None

    t0 = time.perf_counter()
    report = Reporter(progress, "decode", int(max_new_tokens))
    session = runner.session()
    if len(ids) > 1:
        session.prefill(ids[:-1])
    for x in (d, *extras):
        x.reset(ids)
    observers = [x for x in (d, *extras) if getattr(type(x), "observe", Drafter.observe) is not Drafter.observe]
    prefill_seconds = time.perf_counter() - t0

    root = int(ids[-1])
    context = list(ids)
    out: list[int] = []
    steps: list[StepRecord] = []
    while len(out) < max_new_tokens:
        t1 = time.perf_counter()
        want = sched.length()
        if want != 0:
            want = check_budget(want, "the schedule's length")
        budget = min(int(want), max_new_tokens - len(out) + 8)
        ctx = np.asarray(context, np.int64)
        if budget == 0:
            tree = DraftTree.empty()
        elif b is None:
            tree = d.propose(ctx, budget)
        else:
            tree = b.build(d, budget, context_ids=ctx)
        if not isinstance(tree, DraftTree):
            raise SpeculativeError(f"{d!r} returned {type(tree).__name__}, not a DraftTree")
        tree.check_vocab(runner.vocab_size, f"the drafter {getattr(d, 'name', d)!r}")
        tree.meta.setdefault("model_based", bool(getattr(d, "model_based", False)))
        tree = sched.trim(tree)
        t2 = time.perf_counter()

        fed, parents = tree.feed(root)
        logits = session.extend(fed, parents)
        if temperature == 0:   # the greedy verifier takes argmaxes: shifted logits are valid, cheap "scores"
            probs = logits - logits.min(axis=1, keepdims=True)
        else:
            probs = _softmax_rows(logits, float(temperature))
        verdict = v.verify(tree, probs, rng)
        session.commit(np.concatenate([[0], np.asarray(verdict.accepted, np.int64) + 1]))
        t3 = time.perf_counter()

        # the target's top-k after every fed token, only for drafters that learn from it (Token Recycling)
        top = _top_k_rows(logits, TOP_K_OBSERVED) if observers else logits.argmax(axis=1)[:, None]
        if tree.size:
            rows = np.where(tree.parents >= 0, tree.parents + 1, 0)
            if temperature == 0:
                tprob = (top[rows, 0] == tree.tokens).astype(np.float32)
            else:
                tprob = probs[rows, tree.tokens].astype(np.float32)
        else:
            tprob = np.zeros(0, np.float32)
        for x in observers:
            x.observe(fed, top)
        steps.append(StepRecord(tree=tree, accepted=np.asarray(verdict.accepted, np.int32), bonus=int(verdict.bonus),
                                draft_seconds=t2 - t1, verify_seconds=t3 - t2, target_prob=tprob,
                                target_top=top[:, 0].copy()))
        sched.update(longest_path(tree), len(verdict.accepted))
        new = [int(t) for t in verdict.tokens]
        stop = False
        for t in new:
            out.append(t)
            context.append(t)
            if (eos is not None and t == eos) or len(out) >= max_new_tokens:
                stop = True
                break
        root = int(context[-1])
        report(len(out))
        if stop:
            break
    for x in (d, *extras):
        x.finish(np.asarray(out, np.int64))

    out_ids = np.asarray(out, np.int64)
    params = {"drafter": getattr(d, "name", str(drafter)), "builder": None if b is None else b.name,
              "verifier": getattr(v, "name", vname), "schedule": getattr(sched, "name", str(schedule)),
              "temperature": float(temperature), "seed": int(seed), "max_new_tokens": int(max_new_tokens),
              "drafter_params": {k: val for k, val in d.params().items() if k != "runner"},
              "builder_params": {} if b is None else b.params(), "schedule_params": sched.params(),
              "lossless": bool(getattr(v, "lossless", True)), "device": runner.device_name()}
    return SpecRun(prompt_ids=ids, output_ids=out_ids, steps=steps, params=params,
                   prefill_seconds=prefill_seconds, token_strings=runner.token_strings(out_ids),
                   text=runner.decode(out_ids))
