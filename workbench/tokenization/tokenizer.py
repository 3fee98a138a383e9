"""The :class:`Tokenizer`: a byte-level BPE vocabulary, its merges, a pre-tokenizer, and fast encode/decode.

>>> tok = load_tokenizer("gpt2")                       # doctest: +SKIP
>>> tok.encode("Hello world")                          # doctest: +SKIP
[15496, 995]
>>> tok.decode([15496, 995])                           # doctest: +SKIP
'Hello world'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import regex

from workbench.errors import TokenizerError, TokenizerFileError
from workbench.tokenization import encoder as K
from workbench.tokenization.hashtables import build_bytes_table, table_capacity
from workbench.tokenization.pretokenize import check_pretokenizer, split_bytes

SEMANTICS = ("merges", "ranks")


@dataclass(frozen=True)
class Encoding:
    """Token ids with where each token came from.

    ``ids``: token ids; ``byte_spans``: ``(start, end)`` byte offsets into the UTF-8 input;
    ``char_spans``: ``(start, end)`` character offsets (a token that splits a character spans that whole character).
    """

    ids: list[int]
    byte_spans: list[tuple[int, int]]
    char_spans: list[tuple[int, int]]


class Tokenizer:
    """Byte-level BPE.

    ``tokens[i]`` is the byte string of token ``i`` (``None`` for an unused id); ``merges`` are
    ``(left id, right id, merged id)`` in priority order; ``semantics`` is ``"merges"`` (Hugging Face: only listed merges,
    by list order) or ``"ranks"`` (tiktoken: any pair whose concatenation is a token, by that token's rank, and a piece
    that is a token is emitted whole). ``special_tokens`` maps strings such as ``"<|endoftext|>"`` to ids.
    ``merge_counts`` (trained tokenizers only): each merge's pair count when it was made.
    ``missing_bytes``: bytes with no token of their own (SmolLM2 has 21); like HF tokenizers without an unknown
    token, the encoder drops them, so such text does not round-trip.
    """

    def __init__(
        self,
        tokens: Sequence[bytes | None],
        merges: Iterable[tuple[int, int, int]] = (),
        *,
        pretokenizer: str = "gpt2",
        semantics: str = "merges",
        special_tokens: dict[str, int] | None = None,
        name: str = "bpe",
        merge_counts: np.ndarray | None = None,
    ):
        if semantics not in SEMANTICS:
            raise TokenizerError(f"semantics must be one of {SEMANTICS}, got {semantics!r}.")
        self.name = name
        self.pretokenizer = check_pretokenizer(pretokenizer)
        self.semantics = semantics
        self.special_tokens = dict(special_tokens or {})
        self._tokens: list[bytes | None] = list(tokens)
        for text, i in self.special_tokens.items():
            if not 0 <= i < len(self._tokens):
                raise TokenizerFileError(f"Special token {text!r} has id {i}, outside the vocabulary.")
            self._tokens[i] = text.encode("utf-8")
        self._special_ids = frozenset(self.special_tokens.values())
        merge_array = np.array(list(merges), dtype=np.int64).reshape(-1, 3)
        self._merge_array = merge_array
        self.merge_counts = None if merge_counts is None else np.asarray(merge_counts, dtype=np.int64)
        self._build_tables()

    # -- construction helpers ---------------------------------------------------------------------------------
    @classmethod
    def from_ranks(cls, ranks: dict[bytes, int], *, pretokenizer: str = "gpt2",
                   special_tokens: dict[str, int] | None = None, name: str = "bpe",
                   merge_list: Sequence[tuple[bytes, bytes]] | None = None) -> Tokenizer:
        """tiktoken's representation: token bytes -> rank (= id). Merges are every split of every token.
        ``merge_list`` (e.g. GPT-2's ``vocab.bpe``) is what :attr:`merges` reports; without it the merges are derived."""
        size = max(ranks.values()) + 1 if ranks else 0
        if special_tokens:
            size = max(size, max(special_tokens.values()) + 1)
        tokens: list[bytes | None] = [None] * size
        for tok, rank in ranks.items():
            tokens[rank] = tok
        merges = []
        for tok, rank in ranks.items():
            for cut in range(1, len(tok)):
                left, right = ranks.get(tok[:cut]), ranks.get(tok[cut:])
                if left is not None and right is not None:
                    merges.append((left, right, rank))
        merges.sort(key=lambda m: m[2])
        tok = cls(tokens, merges, pretokenizer=pretokenizer, semantics="ranks",
                  special_tokens=special_tokens, name=name)
        if merge_list is not None:
            try:
                tok._listed_merges = np.array([(ranks[a], ranks[b], ranks[a + b]) for a, b in merge_list],
                                              dtype=np.int64).reshape(-1, 3)
            except KeyError as exc:
                raise TokenizerFileError(f"A listed merge uses or makes a token not in the ranks: {exc.args[0]!r}.") from None
        return tok

    @classmethod
    def from_merges(cls, vocab: dict[bytes, int], merges: Sequence[tuple[bytes, bytes]], *,
                    pretokenizer: str = "gpt2", special_tokens: dict[str, int] | None = None,
                    name: str = "bpe") -> Tokenizer:
        """Hugging Face's representation: token bytes -> id, and the merge list in priority order."""
        size = max(vocab.values()) + 1 if vocab else 0
        if special_tokens:
            size = max(size, max(special_tokens.values()) + 1)
        tokens: list[bytes | None] = [None] * size
        for tok, i in vocab.items():
            tokens[i] = tok
        triples = []
        for n, (a, b) in enumerate(merges):
            try:
                triples.append((vocab[a], vocab[b], vocab[a + b]))
            except KeyError as exc:
                raise TokenizerFileError(
                    f"Merge {n} ({a!r} + {b!r}) uses or makes a token that is not in the vocabulary: {exc.args[0]!r}."
                ) from None
        return cls(tokens, triples, pretokenizer=pretokenizer, semantics="merges",
                   special_tokens=special_tokens, name=name)

    def _build_tables(self) -> None:
        n = len(self._tokens)
        lengths = np.array([-1 if t is None else len(t) for t in self._tokens], dtype=np.int64)
        offsets = np.zeros(n, dtype=np.int64)
        if n:
            offsets[1:] = np.cumsum(np.maximum(lengths, 0))[:-1]
        self._arena = np.frombuffer(b"".join(t for t in self._tokens if t is not None), dtype=np.uint8).copy()
        self._tok_off, self._tok_len = offsets, lengths
        byte_tok = np.full(256, -1, dtype=np.int64)
        ordinary = [i for i, t in enumerate(self._tokens) if t is not None and i not in self._special_ids]
        for i in ordinary:
            t = self._tokens[i]
            if len(t) == 1 and byte_tok[t[0]] == -1:
                byte_tok[t[0]] = i
        missing = np.flatnonzero(byte_tok < 0)
        self.missing_bytes = bytes(missing.tolist())
        if len(missing) and self.semantics == "ranks":  # tiktoken cannot encode such a byte at all
            raise TokenizerFileError(
                f"Not a byte-level vocabulary: {len(missing)} of the 256 single bytes have no token "
                f"(first missing: {bytes([missing[0]])!r})."
            )
        self._byte_tok = byte_tok
        m = self._merge_array
        if len(m) and (m.min() < 0 or m.max() >= n):
            raise TokenizerFileError("A merge refers to a token id outside the vocabulary.")
        priority = np.arange(len(m), dtype=np.int64) if self.semantics == "merges" else m[:, 2]
        self._mt_keys, self._mt_prio, self._mt_merged = K.build_merge_table(m[:, 0], m[:, 1], priority, m[:, 2])
        idx = np.array(ordinary, dtype=np.int64)
        self._v_hash, self._v_off, self._v_len, v_val = build_bytes_table(
            self._arena, offsets[idx], lengths[idx], table_capacity(len(idx)))
        self._v_val = np.where(v_val >= 0, idx[np.maximum(v_val, 0)], -1).astype(np.int64)
        self._cache = K.new_piece_cache()
        self._special_re = None
        if self.special_tokens:
            alternatives = sorted(self.special_tokens, key=len, reverse=True)
            self._special_re = regex.compile("|".join(regex.escape(s) for s in alternatives))

    def __getstate__(self) -> dict:
        """Pickled without the piece cache (23 MB of scratch space): a copy sent to a Dask worker starts an empty one."""
        state = dict(self.__dict__)
        state["_cache"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._cache = K.new_piece_cache()

    # -- the vocabulary --------------------------------------------------------------------------------------------
    @property
    def n_vocab(self) -> int:
        """Number of ids (the largest id + 1)."""
        return len(self._tokens)

    def __len__(self) -> int:
        return self.n_vocab

    @property
    def vocab(self) -> dict[int, bytes]:
        """id -> token bytes (special tokens as their UTF-8 text)."""
        return {i: t for i, t in enumerate(self._tokens) if t is not None}

    def id_to_token(self, token_id: int) -> bytes:
        self._check_ids([token_id])
        return self._tokens[token_id]

    def tokens_of(self, ids: Iterable[int]) -> list[bytes]:
        """The bytes of each id, for ids this tokenizer produced (no range checks: use :meth:`id_to_token` for
        untrusted ids)."""
        tokens = self._tokens
        return [tokens[i] for i in ids]

    def token_to_id(self, token: bytes) -> int | None:
        """Id of an ordinary token given its bytes, or None."""
        for i, t in enumerate(self._tokens):
            if t == token and i not in self._special_ids:
                return i
        return None

    @property
    def merge_triples(self) -> np.ndarray:
        """int64[n_pairs, 3]: every (left id, right id, merged id) the encoder may apply, in priority order
        (for rank semantics this holds every split of every token, not just the merge list)."""
        return self._merge_array

    @property
    def merges(self) -> list[tuple[bytes, bytes]]:
        """The merges in order, as byte pairs. For rank-semantics tokenizers, one canonical split per token."""
        return [(self._tokens[a], self._tokens[b]) for a, b, _ in self.merge_list]

    @property
    def merge_list(self) -> np.ndarray:
        """int64[n, 3] (left, right, merged) in order: the merge list (for rank-semantics tokenizers: the listed
        merges when the file had them, else one canonical split per multi-byte token)."""
        if self.semantics == "merges":
            return self._merge_array
        if getattr(self, "_listed_merges", None) is None:
            self._listed_merges = self._canonical_rank_merges()
        return self._listed_merges

    def _canonical_rank_merges(self) -> np.ndarray:
        """For each multi-byte token (in rank order), the pair BPE itself builds it from: encode the token with only
        lower-ranked merges allowed, which leaves exactly two parts for a reachable token."""
        out = []
        for rank, tok in enumerate(self._tokens):
            if tok is None or len(tok) < 2 or rank in self._special_ids:
                continue
            parts = [self._byte_tok[b] for b in tok]
            while len(parts) > 2:
                best, at = None, -1
                for i in range(len(parts) - 1):
                    merged = self._rank_of(self._tokens[parts[i]] + self._tokens[parts[i + 1]])
                    if merged is not None and merged < rank and (best is None or merged < best):
                        best, at = merged, i
                if best is None:
                    break
                parts[at:at + 2] = [best]
            if len(parts) == 2:
                out.append((parts[0], parts[1], rank))
        return np.array(out, dtype=np.int64).reshape(-1, 3)

    def _rank_of(self, token: bytes) -> int | None:
        if not hasattr(self, "_rank_index"):
            self._rank_index = {t: i for i, t in enumerate(self._tokens) if t is not None and i not in self._special_ids}
        return self._rank_index.get(token)

    # -- encoding -------------------------------------------------------------------------------------------------
    def encode_bytes(self, data: bytes) -> list[int]:
        """Token ids of raw bytes (may be invalid UTF-8; special-token text is ordinary text here)."""
        return self._encode_array(self._as_array(data)).tolist()

    def encode(self, text: str, *, allowed_special: str | Iterable[str] = (), max_merges: int | None = None) -> list[int]:
        """Token ids of ``text``. Special-token text is encoded as ordinary text unless listed in ``allowed_special``
        (or ``allowed_special="all"``). ``max_merges=k`` encodes with only the first ``k`` merges (merge replay,
        truncated merge lists)."""
        if not isinstance(text, str):
            raise TokenizerError(f"encode() takes a str, got {type(text).__name__}; use encode_bytes() for bytes.")
        data = _utf8(text)
        allowed = self._allowed(allowed_special)
        if max_merges is not None:
            if allowed:
                raise TokenizerError("max_merges cannot be combined with allowed_special.")
            return self._encode_array(self._as_array(data), max_merges).tolist()
        if not allowed:
            return self._encode_array(self._as_array(data)).tolist()
        ids: list[int] = []
        last = 0
        for match in self._special_re.finditer(text):
            if match.group() not in allowed:
                continue
            ids.extend(self._encode_array(self._as_array(_utf8(text[last:match.start()]))).tolist())
            ids.append(self.special_tokens[match.group()])
            last = match.end()
        ids.extend(self._encode_array(self._as_array(_utf8(text[last:]))).tolist())
        return ids

    def encode_with_offsets(self, text: str, *, max_merges: int | None = None) -> Encoding:
        """Token ids with byte and character spans (special-token text is ordinary text)."""
        data = _utf8(text)
        arr = self._as_array(data)
        ids = self._encode_array(arr, max_merges)
        if self.missing_bytes and any(b in data for b in self.missing_bytes):
            starts = self._starts_skipping_missing(data, ids)
        else:
            starts = K.token_starts(ids, self._tok_len, 0)
        is_start = (arr & 0xC0) != 0x80
        char_of_byte = np.append(np.cumsum(is_start) - 1, int(is_start.sum()))
        byte_spans = [(int(starts[i]), int(starts[i + 1])) for i in range(len(ids))]
        char_spans = [(int(char_of_byte[s]), int(char_of_byte[e - 1]) + 1) for s, e in byte_spans]
        return Encoding(ids.tolist(), byte_spans, char_spans)

    def _starts_skipping_missing(self, data: bytes, ids: np.ndarray) -> np.ndarray:
        """Token start offsets when bytes without a token were dropped from the encoding."""
        starts = np.zeros(len(ids) + 1, np.int64)
        pos = 0
        for k, t in enumerate(ids.tolist()):
            while data[pos] in self.missing_bytes:
                pos += 1
            starts[k] = pos
            pos += int(self._tok_len[t])
        starts[len(ids)] = pos
        return starts

    def pieces(self, text: str) -> list[str]:
        """The pre-tokenizer's pieces of ``text``."""
        data = _utf8(text)
        bounds = split_bytes(data, self.pretokenizer)
        return [data[bounds[i]:bounds[i + 1]].decode("utf-8", "replace") for i in range(len(bounds) - 1)]

    def _allowed(self, allowed_special) -> frozenset[str]:
        if not self.special_tokens:
            return frozenset()
        if allowed_special == "all":
            return frozenset(self.special_tokens)
        allowed = frozenset([allowed_special] if isinstance(allowed_special, str) else allowed_special)
        unknown = allowed - set(self.special_tokens)
        if unknown:
            raise TokenizerError(f"Unknown special tokens {sorted(unknown)}; this tokenizer has {sorted(self.special_tokens)}.")
        return allowed

    @staticmethod
    def _as_array(data) -> np.ndarray:
        if isinstance(data, np.ndarray):
            return data.astype(np.uint8, copy=False)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TokenizerError(f"Expected bytes, got {type(data).__name__}.")
        return np.frombuffer(bytes(data), dtype=np.uint8)

    def _encode_array(self, arr: np.ndarray, max_merges: int | None = None) -> np.ndarray:
        if arr.shape[0] == 0:
            return np.zeros(0, dtype=np.int32)
        bounds = split_bytes(arr, self.pretokenizer)
        if max_merges is None:
            keys, prio, merged, shortcut, cache = (self._mt_keys, self._mt_prio, self._mt_merged,
                                                   self.semantics == "ranks", self._cache)
        else:
            keys, prio, merged = self._truncated_table(max_merges)
            shortcut, cache = False, K.new_piece_cache(1 << 12, 1 << 16)
        return K.encode_kernel(arr, bounds, self._byte_tok, keys, prio, merged, shortcut, self._v_hash,
                               self._v_off, self._v_len, self._v_val, self._arena, *cache)

    def _truncated_table(self, max_merges: int):
        """Merge table of the first ``max_merges`` merges (rank semantics: the first ``max_merges`` merged tokens);
        the last few are kept so that a slider moving back and forth costs nothing."""
        if not isinstance(max_merges, (int, np.integer)) or max_merges < 0:
            raise TokenizerError(f"max_merges must be a non-negative integer, got {max_merges!r}.")
        memo = self.__dict__.setdefault("_truncated", {})
        if max_merges not in memo:
            m = self._merge_array
            if self.semantics == "merges":
                rows = m[:max_merges]
                priority = np.arange(len(rows), dtype=np.int64)
            else:
                ranks = np.unique(m[:, 2])
                cutoff = ranks[max_merges] if max_merges < len(ranks) else np.iinfo(np.int64).max
                rows = m[m[:, 2] < cutoff]
                priority = rows[:, 2]
            if len(memo) >= 8:
                memo.pop(next(iter(memo)))
            memo[max_merges] = K.build_merge_table(rows[:, 0], rows[:, 1], priority, rows[:, 2])
        return memo[max_merges]

    # -- decoding -------------------------------------------------------------------------------------------------
    def _check_ids(self, ids) -> np.ndarray:
        try:
            arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        except (TypeError, ValueError, OverflowError):
            raise TokenizerError("Token ids must be integers.") from None
        bad = np.flatnonzero((arr < 0) | (arr >= self.n_vocab))
        if len(bad) == 0:
            bad = np.flatnonzero(self._tok_len[arr] < 0)
        if len(bad):
            i = int(bad[0])
            raise TokenizerError(
                f"Token id {int(arr[i])} at position {i} is not in the vocabulary (valid ids: 0..{self.n_vocab - 1}"
                f"{', some unused' if (self._tok_len < 0).any() else ''})."
            )
        return arr

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        arr = self._check_ids(list(ids))
        out, _ = K.concat_tokens(arr, self._tok_off, self._tok_len, self._arena, self.n_vocab)
        return out.tobytes()

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Text of ``ids``; bytes that are not valid UTF-8 become U+FFFD (``errors="replace"``, as tiktoken)."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    # -- persistence ----------------------------------------------------------------------------------------------
    def save(self, path, format: str = "hf", *, overwrite: bool = False):
        """Write ``tokenizer.json`` (``format="hf"``, loadable by Hugging Face tokenizers) or a ``.tiktoken`` rank file
        (``format="tiktoken"``, loadable by ``tiktoken.load.load_tiktoken_bpe``). Refuses to replace existing files
        unless ``overwrite``. Returns the path written."""
        from workbench.tokenization.writers import save_tokenizer

        return save_tokenizer(self, path, format=format, overwrite=overwrite)

    def __repr__(self) -> str:
        return (f"Tokenizer({self.name!r}, n_vocab={self.n_vocab}, merges={len(self._merge_array)}, "
                f"pretokenizer={self.pretokenizer!r}, semantics={self.semantics!r})")


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: replace them, as tiktoken does
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")
