r"""Data-mixture inference: what a BPE tokenizer's merge list reveals about the mixture it was trained on.

Hayase et al. (2024), "Data Mixture Inference: What do BPE Tokenizers Reveal about their Training Data?". BPE
training merges, at each step, the most frequent pair of the training data. Given a sample of each category of data
(English, code, Russian ...) we replay the tokenizer's merges over each sample, so ``c_i,t(p)`` — how often pair
``p`` occurs in sample ``i`` after the first ``t`` merges, per 1000 bytes of sample — is known for every step. If the
training data held a share ``a_i`` of category ``i`` (by bytes), the pair merged at step ``t``, ``m_t``, was the most
frequent one under the mixture:

    sum_i a_i c_i,t(m_t) + v_t + u_p  >=  sum_i a_i c_i,t(p)      for every step t and every other pair p

with ``a >= 0``, ``sum a = 1``, and slack ``v_t >= 0`` per step and ``u_p >= 0`` per competing pair (samples are
finite and not the training data itself; ``u_p`` absorbs a pair that the samples over-represent at every step, as
in the paper's code). The linear program minimises ``sum v + sum u`` and is solved with HiGHS
(``scipy.optimize.linprog``). It has a constraint for every (step, pair) — millions — so it is grown lazily: solve
with the constraints found so far, replay every step under the solution with a heap of pair frequencies (Numba,
:mod:`workbench.tokenization.mixture_kernels`), add the ``top_k`` most violated competitors of each step, repeat
until nothing is violated. The result is then optimal for the full program.

Steps whose merged pair occurs in no sample carry no information and are skipped (``n_skipped``). The program grows
with the number of merges and with how much the samples differ from the training data: the default 500 merges take
about a second for a tokenizer trained on the categories' own kind of data, ~5 s for GPT-2 or SmolLM2 against
English prose / Python / UDHR samples (1000 merges: ~40 s there).

>>> from workbench.data import load_corpus, stdlib_paths
>>> from workbench.tokenization import train_bpe
>>> prose = load_corpus("prose_en").read_text()
>>> code = "".join(p.read_text() for p in stdlib_paths()[:60])
>>> tok = train_bpe([prose[:200_000], code[:100_000]], vocab_size=756)     # 2/3 prose, 1/3 code (bytes)
>>> est = infer_mixture(tok, {"prose": prose[400_000:], "code": code[100_000:]})     # doctest: +SKIP
>>> {k: round(v, 3) for k, v in est.items()}                                         # doctest: +SKIP
{'prose': 0.663, 'code': 0.337}
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from workbench.errors import ConfigurationError, TokenizerError, WorkbenchError
from workbench.progress import ProgressCallback, Reporter
from workbench.tokenization import mixture_kernels as MK
from workbench.tokenization.pretokenize import split_bytes
from workbench.tokenization.tokenizer import Tokenizer
from workbench.tokenization.word_tables import WordCounter

#: Merges used when ``max_merges`` is not given (fewer when the tokenizer has fewer).
DEFAULT_MAX_MERGES = 500
#: Pair counts enter the program per this many bytes of sample (keeps coefficients near 1 for HiGHS' tolerances).
BYTES_UNIT = 1000.0

Sample = str | bytes | Sequence[str | bytes]


# -- replaying the merges over one sample ---------------------------------------------------------------------------
@dataclass(frozen=True)
class PairCountReplay:
    """Pair counts of one sample through the first ``n_merges`` merges of a tokenizer.

    ``init_keys``/``init_counts``: int64[n_pairs] pairs (keys ``left << 32 | right``, see
    :func:`~workbench.tokenization.mixture_kernels.pair_key`) and their counts before any merge. Step ``t``'s changes:
    entries ``d_ptr[t]:d_ptr[t + 1]`` of ``d_keys``/``d_counts`` (int64), each a pair whose count merge ``t`` changed,
    with its count after that merge. ``n_bytes``: the sample's size; ``n_words``: its unique pre-tokenized words.
    """

    name: str
    n_bytes: int
    n_words: int
    n_merges: int
    init_keys: np.ndarray
    init_counts: np.ndarray
    d_ptr: np.ndarray
    d_keys: np.ndarray
    d_counts: np.ndarray

    def counts_at(self, step: int) -> dict[tuple[int, int], int]:
        """``{(left id, right id): count}`` of the pairs present before merge ``step`` (0: before any merge).

        >>> from workbench.tokenization import train_bpe
        >>> tok = train_bpe("aab aab", vocab_size=258)           # merges: a + a -> aa (id 256), aa + b -> aab
        >>> replay = replay_pair_counts(tok, "aab")
        >>> replay.counts_at(0), replay.counts_at(1), replay.counts_at(2)   # ids: a = 64, b = 65
        ({(64, 64): 1, (64, 65): 1}, {(256, 65): 1}, {})
        """
        if not 0 <= step <= self.n_merges:
            raise ConfigurationError(f"step must be in 0..{self.n_merges}, got {step}.")
        counts = dict(zip(self.init_keys.tolist(), self.init_counts.tolist()))
        end = int(self.d_ptr[step])
        counts.update(zip(self.d_keys[:end].tolist(), self.d_counts[:end].tolist()))
        return {(k >> MK.KEY_SHIFT, k & 0xFFFFFFFF): c for k, c in counts.items() if c}


def _documents(name: str, sample) -> list[bytes]:
    items = [sample] if isinstance(sample, (str, bytes, bytearray, memoryview)) else sample
    try:
        items = list(items)
    except TypeError:
        raise ConfigurationError(f"Category {name!r}: a sample must be str, bytes or a list of them, "
                                 f"got {type(sample).__name__}.") from None
    docs = []
    for item in items:
        if isinstance(item, str):
            docs.append(item.encode("utf-8", "surrogatepass"))
        elif isinstance(item, (bytes, bytearray, memoryview)):
            docs.append(bytes(item))
        else:
            raise ConfigurationError(f"Category {name!r}: a sample must be str, bytes or a list of them, "
                                     f"got an item of type {type(item).__name__}.")
    if sum(len(d) for d in docs) == 0:
        raise ConfigurationError(f"Category {name!r} has no text: give each category a sample of its data "
                                 "(ideally hundreds of kB).")
    return docs


def _merge_list(tokenizer: Tokenizer) -> np.ndarray:
    if not isinstance(tokenizer, Tokenizer):
        raise ConfigurationError(f"Expected a workbench Tokenizer, got {type(tokenizer).__name__}; load one with "
                                 "load_tokenizer(...) or train one with train_bpe(...).")
    merges = np.asarray(tokenizer.merge_list, dtype=np.int64).reshape(-1, 3)
    if len(merges) == 0:
        raise TokenizerError(f"Tokenizer {tokenizer.name!r} has no merge list: mixture inference reads the order of "
                             "the merges, so it needs a BPE tokenizer with merges.")
    return merges


def _check_max_merges(max_merges, available: int) -> int:
    if max_merges is None:
        return min(DEFAULT_MAX_MERGES, available)
    if isinstance(max_merges, bool) or not isinstance(max_merges, (int, np.integer)) or max_merges < 1:
        raise ConfigurationError(f"max_merges must be a positive integer or None, got {max_merges!r}.")
    return min(int(max_merges), available)


def replay_pair_counts(tokenizer: Tokenizer, sample: Sample, *, max_merges: int | None = None,
                       name: str = "sample") -> PairCountReplay:
    """Pre-tokenize ``sample`` with the tokenizer's pre-tokenizer, count its words, and replay the first
    ``max_merges`` merges of ``tokenizer.merge_list`` over them, recording every pair count change (Numba).

    ``sample``: str, bytes, or a list of them (documents; no piece crosses two documents).
    """
    merges = _merge_list(tokenizer)
    n_merges = _check_max_merges(max_merges, len(merges))
    docs = _documents(name, sample)
    counter = WordCounter()
    for doc in docs:
        if doc:
            data = np.frombuffer(doc, dtype=np.uint8)
            counter.add(data, split_bytes(data, tokenizer.pretokenizer))
    n_words, used = counter.n_words, int(counter.st[1])
    # words sit back to back in the arena in first-seen order; bytes without a token become -1
    sym = tokenizer._byte_tok[counter.arena[:used]].astype(np.int64)
    w_len = counter.w_len[:n_words].copy()
    w_start = np.zeros(n_words, np.int64)
    if n_words:
        w_start[1:] = np.cumsum(w_len)[:-1]
    w_count = counter.w_count[:n_words].copy()
    m = merges[:n_merges]
    init_keys, init_counts, d_ptr, d_keys, d_counts = MK.replay_merges(
        sym, w_start, w_len, w_count, m[:, 0].copy(), m[:, 1].copy(), m[:, 2].copy())
    return PairCountReplay(name, sum(len(d) for d in docs), n_words, n_merges, init_keys, init_counts, d_ptr,
                           d_keys, d_counts)


# -- the estimate ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MixtureEstimate:
    """The inferred training mixture and how the linear program went.

    ``proportions``: float64[n_categories], summing to 1, in the order of ``categories`` (shares of training bytes).
    ``step_slack``: float64[n_merges], ``v_t`` (per 1000 sample bytes; 0 where the merge is fully explained).
    ``pair_slack``: total ``sum u_p``. ``objective`` = ``sum v + sum u``. ``n_skipped``: merges absent from every
    sample. ``n_constraints``/``n_variables``: size of the final program; ``rounds``: solve-and-separate rounds;
    ``converged``: no constraint was left violated. Times in seconds.
    """

    categories: tuple[str, ...]
    proportions: np.ndarray
    step_slack: np.ndarray
    pair_slack: float
    objective: float
    n_merges: int
    n_skipped: int
    n_constraints: int
    n_variables: int
    rounds: int
    converged: bool
    sample_bytes: np.ndarray
    top_k: int
    seconds_replay: float
    seconds_solve: float
    seconds_total: float

    def as_dict(self) -> dict[str, float]:
        """``{category: proportion}``."""
        return dict(zip(self.categories, self.proportions.tolist()))

    def __repr__(self) -> str:
        shares = ", ".join(f"{k}={v:.3f}" for k, v in self.as_dict().items())
        return (f"MixtureEstimate({shares}; merges={self.n_merges}, constraints={self.n_constraints}, "
                f"rounds={self.rounds}, objective={self.objective:.4g}, {self.seconds_total:.2f} s)")


def infer_mixture(tokenizer: Tokenizer, samples: Mapping[str, Sample], *, max_merges: int | None = None,
                  **options) -> dict[str, float]:
    """Estimate the share (by bytes) of each category in ``tokenizer``'s training data: ``{category: proportion}``
    summing to 1. See :func:`infer_mixture_details` for the options and the full result."""
    return infer_mixture_details(tokenizer, samples, max_merges=max_merges, **options).as_dict()


def infer_mixture_details(
    tokenizer: Tokenizer,
    samples: Mapping[str, Sample],
    *,
    max_merges: int | None = None,
    top_k: int = 20,
    pair_slack: bool = True,
    max_rounds: int = 100,
    tol: float = 1e-6,
    progress: ProgressCallback | None = None,
) -> MixtureEstimate:
    """Data-mixture inference (Hayase et al. 2024) by a lazily grown linear program; see the module docstring.

    ``samples``: category name -> sample of that category (str, bytes, or a list of documents), ideally disjoint
    from the training data and a few hundred kB each; every category the training data may hold should be here.
    ``max_merges``: how many merges of the list to use (default :data:`DEFAULT_MAX_MERGES`; more merges, more
    evidence, longer replay). ``top_k``: competitors added per step and round. ``pair_slack``: give each competing
    pair its own slack ``u_p`` (the paper's code does; False keeps only ``v_t``). ``tol``: violation tolerance
    (per 1000 bytes). ``progress`` gets a `Progress` per category replayed (stage ``"replay"``) and per round
    (``"solve"``).
    """
    start = time.perf_counter()
    report = Reporter(progress)
    merges = _merge_list(tokenizer)
    if not isinstance(samples, Mapping) or not samples:
        raise ConfigurationError("samples must be a non-empty dict of category name -> sample text.")
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ConfigurationError(f"top_k must be a positive integer, got {top_k!r}.")
    if isinstance(max_rounds, bool) or not isinstance(max_rounds, (int, np.integer)) or max_rounds < 1:
        raise ConfigurationError(f"max_rounds must be a positive integer, got {max_rounds!r}.")
    if not tol >= 0:
        raise ConfigurationError(f"tol must be >= 0, got {tol!r}.")
    n_merges = _check_max_merges(max_merges, len(merges))
    names = tuple(samples)
    docs = {name: _documents(name, samples[name]) for name in names}  # validate every sample before the work

    replays = []
    for k, name in enumerate(names):
        replays.append(replay_pair_counts(tokenizer, docs[name], max_merges=n_merges, name=name))
        report(k + 1, len(names), "replay")
    seconds_replay = time.perf_counter() - start

    # one id space for the pairs of every category
    all_keys = np.unique(np.concatenate([np.concatenate([r.init_keys, r.d_keys]) for r in replays]))
    n_pairs = len(all_keys)
    gid = lambda keys: np.searchsorted(all_keys, keys).astype(np.int64)  # noqa: E731
    init_ptr = np.zeros(len(names) + 1, np.int64)
    init_ptr[1:] = np.cumsum([len(r.init_keys) for r in replays])
    init_gid = np.concatenate([gid(r.init_keys) for r in replays])
    init_cnt = np.concatenate([r.init_counts for r in replays])
    d_base = np.concatenate([[0], np.cumsum([len(r.d_keys) for r in replays])])
    d_ptr = np.stack([r.d_ptr + d_base[i] for i, r in enumerate(replays)])
    d_gid = np.concatenate([gid(r.d_keys) for r in replays])
    d_cnt = np.concatenate([r.d_counts for r in replays])
    m = merges[:n_merges]
    merge_keys = MK.pair_key(m[:, 0], m[:, 1])
    merge_gid = np.full(n_merges, -1, np.int64)
    if n_pairs:
        at = np.minimum(np.searchsorted(all_keys, merge_keys), n_pairs - 1)
        merge_gid = np.where(all_keys[at] == merge_keys, at, -1).astype(np.int64)
    sample_bytes = np.array([r.n_bytes for r in replays], dtype=np.int64)
    per_unit = BYTES_UNIT / sample_bytes  # count -> count per 1000 bytes

    # the lazily grown program: x = [a (n), v (n_merges), u (one per competing pair in a constraint)]
    n = len(names)
    alpha = np.full(n, 1.0 / n)
    v = np.zeros(n_merges)
    u_all = np.zeros(n_pairs)
    coef = np.zeros((0, n))          # per constraint: coefficients of a, (c(m) - c(p)) per 1000 bytes
    row_t = np.zeros(0, np.int64)     # its step
    row_p = np.zeros(0, np.int64)     # its competing pair
    known = np.zeros(0, np.int64)
    objective, rounds, converged = 0.0, 0, False
    seconds_solve = 0.0
    u_pairs = np.zeros(0, np.int64)
    u_vals = np.zeros(0)
    for rounds in range(1, max_rounds + 1):  # noqa: B007 (rounds is reported)
        steps, pairs, cm, cp, present = MK.find_violations(
            n_pairs, init_ptr, init_gid, init_cnt, d_ptr, d_gid, d_cnt, merge_gid, alpha * per_unit, u_all, v,
            known, int(top_k), float(tol))
        report(rounds, None, "solve")
        if not present.any():
            raise ConfigurationError(
                f"None of the first {n_merges} merges of {tokenizer.name!r} occurs in any sample, so the samples say "
                "nothing about its training mixture; give larger samples of the categories it was trained on.")
        if len(steps) == 0:
            converged = True
            break
        coef = np.concatenate([coef, (cm - cp) * per_unit])
        row_t = np.concatenate([row_t, steps])
        row_p = np.concatenate([row_p, pairs])
        t0 = time.perf_counter()
        alpha, v, u_pairs, u_vals, objective = _solve(coef, row_t, row_p, n, n_merges, pair_slack)
        seconds_solve += time.perf_counter() - t0
        known = np.sort(row_t * n_pairs + row_p)
        u_all = np.zeros(n_pairs)
        u_all[u_pairs] = u_vals
    n_constraints = len(row_t)
    skipped = n_merges - int(np.count_nonzero(present))
    alpha = np.clip(alpha, 0.0, None)
    alpha = alpha / alpha.sum()
    return MixtureEstimate(
        categories=names, proportions=alpha, step_slack=v, pair_slack=float(u_vals.sum()), objective=float(objective),
        n_merges=n_merges, n_skipped=int(skipped), n_constraints=n_constraints,
        n_variables=n + n_merges + (len(u_pairs) if pair_slack else 0), rounds=rounds, converged=converged,
        sample_bytes=sample_bytes, top_k=int(top_k), seconds_replay=seconds_replay, seconds_solve=seconds_solve,
        seconds_total=time.perf_counter() - start,
    )


def _solve(coef: np.ndarray, steps: np.ndarray, pairs: np.ndarray, n: int, n_merges: int, pair_slack: bool):
    """min sum v + sum u  s.t.  coef @ a + v[step] + u[pair] >= 0, sum a = 1, a, v, u >= 0 (HiGHS)."""
    k = len(steps)
    u_pairs, u_col = np.unique(pairs, return_inverse=True) if pair_slack else (np.zeros(0, np.int64), None)
    n_u = len(u_pairs)
    n_x = n + n_merges + n_u
    rows = np.repeat(np.arange(k), n)
    cols = np.tile(np.arange(n), k)
    data = [-coef.reshape(-1)]
    rows, cols = [rows, np.arange(k)], [cols, n + steps]
    data.append(-np.ones(k))
    if pair_slack:
        rows.append(np.arange(k))
        cols.append(n + n_merges + u_col.reshape(-1))
        data.append(-np.ones(k))
    a_ub = sp.csr_matrix((np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))), shape=(k, n_x))
    c = np.concatenate([np.zeros(n), np.ones(n_merges + n_u)])
    a_eq = sp.csr_matrix((np.ones(n), (np.zeros(n, np.int64), np.arange(n))), shape=(1, n_x))
    bounds = [(0.0, 1.0)] * n + [(0.0, None)] * (n_merges + n_u)
    res = linprog(c, A_ub=a_ub, b_ub=np.zeros(k), A_eq=a_eq, b_eq=np.ones(1), bounds=bounds, method="highs")
    if res.status != 0 or res.x is None:
        raise WorkbenchError(f"The mixture linear program could not be solved: {res.message}")
    x = res.x
    return x[:n], x[n:n + n_merges], u_pairs, x[n + n_merges:], float(res.fun)



def warm_up() -> None:
    """Compile (or load from Numba's cache) the replay and separation kernels, so the first real call is fast."""
    from workbench.tokenization.trainer import train_bpe

    tok = train_bpe("the cat sat on the mat; def f(x): return x", vocab_size=270)
    infer_mixture_details(tok, {"prose": "the cat sat on the mat", "code": "def f(x): return x"})
