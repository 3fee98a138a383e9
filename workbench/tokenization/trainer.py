"""Train byte-level BPE: stream the corpus, count pre-tokenized words, then merge (the same merges as HF tokenizers).

>>> tok = train_bpe(["low lower lowest", "newer newest"], vocab_size=260)
>>> tok.merges[:2]
[(b'w', b'e'), (b'l', b'o')]

With the ``"gpt2"`` pre-tokenizer, no special tokens and ``min_frequency=0``, the merge list is identical to that of
Hugging Face tokenizers' ``BpeTrainer`` with a ``ByteLevel(add_prefix_space=False)`` pre-tokenizer and the full
256-byte initial alphabet, trained on the same documents (``train_from_iterator``): ties between equally frequent
pairs go to the pair of smaller ids, in HF's id order (bytes in byte-level-alphabet order, then merges by age).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workbench.data.loaders import corpus_items, list_files
from workbench.errors import TrainingError, WorkbenchError
from workbench.progress import Progress
from workbench.tokenization import trainer_kernels as TK
from workbench.tokenization.bytelevel import BYTE_ORDER, BYTE_RANK
from workbench.tokenization.hashtables import table_capacity
from workbench.tokenization.pretokenize import check_pretokenizer, split_bytes, split_documents
from workbench.tokenization.ranges import CHUNK_BYTES, range_chunks
from workbench.tokenization.tokenizer import Tokenizer
from workbench.tokenization.word_tables import WordCounter

MERGES_PER_CALL = 256


#: What a training progress callback receives: a `workbench.progress.Progress` whose ``stage`` is ``"count"``
#: (bytes read of ``total``, when known) or ``"merge"`` (merges made of ``total``).
TrainingProgress = Progress


@dataclass
class TrainingStats:
    """Figures of one training run (sizes in bytes, times in seconds)."""

    corpus_bytes: int = 0
    documents: int = 0
    pieces: int = 0
    unique_words: int = 0
    merges: int = 0
    seconds_count: float = 0.0
    seconds_merge: float = 0.0
    stopped_because: str = ""
    extra: dict = field(default_factory=dict)


# -- reading the corpus -------------------------------------------------------------------------------------------
def _documents(corpus) -> Iterator[tuple[str, object]]:
    """Yield ("bytes", data) for in-memory documents and ("file", path) for files (`workbench.data.corpus_items`'
    rule: a str that looks like a path and names nothing is a CorpusNotFoundError, not text)."""
    return corpus_items(corpus, error=TrainingError)


def _file_chunks(path: Path, pretokenizer: str) -> Iterator[bytes]:
    """A file's bytes in ~8 MB chunks cut where ``pretokenizer``'s pieces are sure to end (whole for ``"none"``)."""
    return range_chunks(str(path), 0, sys.maxsize, pretokenizer)


def _is_path_corpus(corpus) -> bool:
    return isinstance(corpus, os.PathLike) or (
        isinstance(corpus, (list, tuple)) and corpus and all(isinstance(c, os.PathLike) for c in corpus))


def count_documents(corpus, pretokenizer: str, counter: WordCounter, stats: TrainingStats,
                    counted: Callable[[int], None] = lambda n: None) -> None:
    """Count the pre-tokenized words of ``corpus`` (as `train_bpe` reads it) into ``counter``.

    Files stream in ~8 MB chunks cut where pieces end; in-memory documents are laid end to end in batches of ~8 MB
    and split in one call (`split_documents`: no piece crosses a document end), so 100,000 short documents cost
    what one 8 MB document does. ``counted(n_bytes)`` is called after each chunk or batch."""
    batch: list[bytes] = []
    batch_bytes = 0

    def flush() -> None:
        nonlocal batch, batch_bytes
        if batch_bytes:
            data = np.frombuffer(b"".join(batch), dtype=np.uint8)
            ends = np.cumsum(np.fromiter((len(b) for b in batch), np.int64, len(batch)))
            counter.add(data, split_documents(data, ends, pretokenizer))
            counted(batch_bytes)
        batch, batch_bytes = [], 0

    for kind, item in _documents(corpus):
        stats.documents += 1
        if kind == "bytes":
            batch.append(item)
            batch_bytes += len(item)
            if batch_bytes >= CHUNK_BYTES:
                flush()
            continue
        flush()
        for chunk in _file_chunks(item, pretokenizer):
            if chunk:
                data = np.frombuffer(chunk, dtype=np.uint8)
                counter.add(data, split_bytes(data, pretokenizer))
                counted(len(chunk))
    flush()


def _count_with_client(client, corpus, pretokenizer: str, counter: WordCounter, stats: TrainingStats,
                       counted: Callable[[int], None]) -> None:
    """`count_documents` with the corpus's files counted on a Dask cluster (in-memory documents count here)."""
    from workbench.distributed import require_distributed
    from workbench.tokenization.dask_count import count_on_cluster

    require_distributed()
    files, texts = [], []
    for kind, item in _documents(corpus):
        (files if kind == "file" else texts).append(item)
    if texts:
        count_documents(texts, pretokenizer, counter, stats, counted)
    if files:
        last = [0]

        def progress(p: Progress) -> None:
            counted(p.detail["bytes"] - last[0])
            last[0] = p.detail["bytes"]

        table, figures = count_on_cluster(client, files, pretokenizer, progress=progress)
        counter.add_table(table)
        stats.documents += len(files)
        stats.extra["distributed"] = figures


# -- training -----------------------------------------------------------------------------------------------------
def train_bpe(
    corpus,
    vocab_size: int,
    *,
    pretokenizer: str = "gpt2",
    special_tokens: Iterable[str] = (),
    min_frequency: int = 0,
    progress: Callable[[TrainingProgress], None] | None = None,
    show_progress: bool = False,
    name: str = "trained",
    initial: Tokenizer | None = None,
    client=None,
) -> Tokenizer:
    """Train a byte-level BPE tokenizer.

    ``corpus``: a str, bytes, a path (file or folder), or an iterable of these (each str/bytes item is one document;
    each file is one document, streamed in chunks). ``vocab_size`` counts the 256 byte tokens and the special tokens,
    as Hugging Face tokenizers counts it. ``min_frequency``: stop when the best pair is rarer. ``progress`` is called
    with a :class:`TrainingProgress` after each chunk counted and every few hundred merges; ``show_progress`` draws
    a tqdm bar. Ids: 0-255 the bytes (GPT-2 order), then merges in order, then the special tokens.

    ``initial``: a tokenizer trained here to continue from. Its merges are kept (same ids, same order) and each word of
    ``corpus`` starts from its encoding under them instead of from bytes; ``pretokenizer`` may differ from the one
    ``initial`` used, which is how SuperBPE's second stage lifts whitespace pre-tokenization.

    ``client``: a Dask ``distributed.Client`` (`workbench.distributed.connect`; the ``distributed`` extra): the corpus's
    files are counted on its workers, in ranges, and only their word tables travel back
    (`workbench.tokenization.dask_count`); in-memory documents are counted here. The merge list is identical to
    training in one process. ``training_stats.extra["distributed"]`` holds the cluster's figures.
    """
    pretokenizer = check_pretokenizer(pretokenizer)
    specials = list(dict.fromkeys(special_tokens))
    if not isinstance(vocab_size, (int, np.integer)) or isinstance(vocab_size, bool):
        raise TrainingError(f"vocab_size must be an integer, got {vocab_size!r}.")
    floor = 256 + len(specials)
    if vocab_size < floor:
        raise TrainingError(f"vocab_size={vocab_size} is smaller than the alphabet: 256 byte tokens"
                            f"{f' + {len(specials)} special tokens' if specials else ''} = {floor}.")
    if min_frequency < 0:
        raise TrainingError(f"min_frequency must be >= 0, got {min_frequency}.")
    stats = TrainingStats()
    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=None, unit="B", unit_scale=True, desc="counting words")

    # 1. count words, streaming
    start = time.perf_counter()
    counter = WordCounter()
    total_bytes = None
    if _is_path_corpus(corpus):
        try:
            total_bytes = sum(p.stat().st_size for c in ([corpus] if isinstance(corpus, os.PathLike) else corpus)
                              for p in list_files(c))
        except WorkbenchError:
            raise
        if bar is not None:
            bar.total = total_bytes

    def counted(n_bytes: int) -> None:
        stats.corpus_bytes += n_bytes
        if bar is not None:
            bar.update(n_bytes)
        if progress is not None:
            progress(Progress(stats.corpus_bytes, total_bytes, "count", time.perf_counter() - start))

    if client is None:
        count_documents(corpus, pretokenizer, counter, stats, counted)
    else:
        _count_with_client(client, corpus, pretokenizer, counter, stats, counted)
    if bar is not None:
        bar.close()
    stats.pieces = counter.pieces
    stats.unique_words = counter.n_words
    stats.seconds_count = time.perf_counter() - start
    if stats.corpus_bytes == 0:
        raise TrainingError("The corpus is empty: every document has zero bytes.")

    # 2. merge
    start = time.perf_counter()
    if initial is not None:
        _check_initial(initial, vocab_size - len(specials))
    merges, counts, stopped = _merge(counter, vocab_size - len(specials), min_frequency, progress, show_progress,
                                     start, initial)
    stats.merges = len(merges)
    stats.seconds_merge = time.perf_counter() - start
    stats.stopped_because = stopped

    # 3. the tokenizer: ids 0..255 bytes in GPT-2 order, merged tokens, then specials
    tokens: list[bytes | None] = [bytes([b]) for b in BYTE_ORDER]
    for a, b, new in merges:
        if new == len(tokens):
            tokens.append(tokens[a] + tokens[b])
    special_map = {}
    for s in specials:
        special_map[s] = len(tokens)
        tokens.append(s.encode("utf-8"))
    tok = Tokenizer(tokens, merges, pretokenizer=pretokenizer, semantics="merges", special_tokens=special_map,
                    name=name, merge_counts=counts)
    tok.training_stats = stats
    return tok


def _check_initial(initial: Tokenizer, vocab_target: int) -> None:
    """``initial`` must have this trainer's id layout: bytes in GPT-2 order, then merged tokens in merge order."""
    ordinary = initial.n_vocab - len(initial.special_tokens)
    triples = initial.merge_triples
    if (initial.semantics != "merges" or any(initial.id_to_token(i) != bytes([b]) for i, b in enumerate(BYTE_ORDER))
            or len(triples) != ordinary - 256 or not np.array_equal(triples[:, 2], np.arange(256, ordinary))):
        raise TrainingError("initial= must be a tokenizer trained by train_bpe (bytes in GPT-2 order, then one new "
                            "token per merge).")
    if ordinary > vocab_target:
        raise TrainingError(f"initial= already has {ordinary} tokens, more than the vocab_size asked for.")


def _initial_symbols(counter: WordCounter, n_words: int, used: int, initial: Tokenizer | None):
    """Symbols of every word (flat) and each word's length in symbols: bytes, or the encoding under ``initial``."""
    w_len = counter.w_len[:n_words].copy()
    if initial is None:
        # HF ids of the bytes: position in the byte-level alphabet order
        return BYTE_RANK[counter.arena[:used]].astype(np.int32), w_len
    from workbench.tokenization import encoder as K

    word_bounds = np.zeros(n_words + 1, np.int64)
    word_bounds[1:] = np.cumsum(w_len)
    ids = K.encode_kernel(counter.arena[:used], word_bounds, initial._byte_tok, initial._mt_keys, initial._mt_prio,
                          initial._mt_merged, False, initial._v_hash, initial._v_off, initial._v_len,
                          initial._v_val, initial._arena, *K.new_piece_cache())
    # tokens never cross word boundaries: count the tokens that end inside each word
    token_ends = np.cumsum(initial._tok_len[ids])
    n_tokens = np.searchsorted(token_ends, word_bounds[1:], side="right")
    return ids.astype(np.int32), np.diff(np.concatenate([[0], n_tokens])).astype(np.int64)


def _merge(counter: WordCounter, vocab_target: int, min_frequency: int, progress, show_progress: bool, start: float,
           initial: Tokenizer | None = None):
    n_words = counter.n_words
    used = int(counter.st[1])
    # words are stored contiguously in first-seen order, so the arena is the concatenation of the words
    assert n_words == 0 or int(counter.w_off[n_words - 1] + counter.w_len[n_words - 1]) == used
    sym, w_len = _initial_symbols(counter, n_words, used, initial)
    w_start = np.zeros(n_words, np.int64)
    if n_words:
        w_start[1:] = np.cumsum(w_len)[:-1]
    w_count = counter.w_count[:n_words].copy()
    (keys, vals, pa, pb, pcount, node_word, node_next,
     h_count, h_pair, h_pos, st) = TK.init_pairs(sym, w_start, w_len.copy(), w_count)
    w_len = w_len.copy()
    known = [bytes([b]) for b in BYTE_ORDER] if initial is None else [
        initial.id_to_token(i) for i in range(initial.n_vocab - len(initial.special_tokens))]
    n_known = len(known)
    st[TK.ST_N_TOKENS] = n_known
    cap_tokens = max(vocab_target, n_known) + 1
    lengths = np.array([len(t) for t in known], np.int64)
    tok_arena = np.zeros(max(1 << 16, 4 * cap_tokens, 2 * int(lengths.sum())), np.uint8)
    tok_arena[: lengths.sum()] = np.frombuffer(b"".join(known), np.uint8)
    tok_off = np.zeros(cap_tokens, np.int64)
    tok_len = np.zeros(cap_tokens, np.int64)
    tok_off[1:n_known] = np.cumsum(lengths)[:-1]
    tok_len[:n_known] = lengths
    st[TK.ST_ARENA] = lengths.sum()
    tcap = table_capacity(cap_tokens)
    from workbench.tokenization.hashtables import build_bytes_table

    t_hash, t_off, t_len, t_val = build_bytes_table(tok_arena, tok_off[:n_known].copy(), tok_len[:n_known].copy(), tcap)
    n_target = max(vocab_target - 256, 0)
    m_left = np.zeros(n_target + 16, np.int64)
    m_right = np.zeros(n_target + 16, np.int64)
    m_new = np.zeros(n_target + 16, np.int64)
    m_count = np.zeros(n_target + 16, np.int64)
    if initial is not None:  # the initial merges come first, with their recorded counts
        n_init = len(initial.merge_triples)
        m_left[:n_init], m_right[:n_init], m_new[:n_init] = initial.merge_triples.T
        if initial.merge_counts is not None:
            m_count[:n_init] = initial.merge_counts
        st[TK.ST_N_MERGES] = n_init
    new_head = np.full(len(pa), -1, np.int64)
    step_mark = np.zeros(len(pa), np.int64)
    touched = np.zeros(1024, np.int64)
    w_mark = np.zeros(n_words, np.int64)
    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_target, unit="merge", desc="merging")
    while not st[TK.ST_DONE]:
        before = int(st[TK.ST_N_MERGES])
        (keys, vals, pa, pb, pcount, node_word, node_next, h_count, h_pair, h_pos, tok_arena,
         m_left, m_right, m_new, m_count, new_head, step_mark, touched) = TK.merge_steps(
            sym, w_start, w_len, w_count, w_mark, keys, vals, pa, pb, pcount, node_word, node_next,
            h_count, h_pair, h_pos, tok_arena, tok_off, tok_len, t_hash, t_off, t_len, t_val,
            m_left, m_right, m_new, m_count, new_head, step_mark, touched,
            st, vocab_target, min_frequency, MERGES_PER_CALL)
        done = int(st[TK.ST_N_MERGES])
        if bar is not None:
            bar.update(done - before)
        if progress is not None:
            progress(Progress(done, n_target, "merge", time.perf_counter() - start))
    if bar is not None:
        bar.close()
    n = int(st[TK.ST_N_MERGES])
    merges = list(zip(m_left[:n].tolist(), m_right[:n].tolist(), m_new[:n].tolist()))
    stopped = {TK.DONE_VOCAB: "vocab_size reached",
               TK.DONE_NO_PAIRS: "no pairs left (every word is a single token)",
               TK.DONE_MIN_FREQUENCY: f"min_frequency={min_frequency} reached"}[int(st[TK.ST_DONE])]
    return merges, m_count[:n].copy(), stopped
