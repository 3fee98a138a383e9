"""Writing tokenizers: Hugging Face ``tokenizer.json`` (`hf_json`) and tiktoken rank files (`save_tokenizer`).

They take any `Tokenizer` and need no import of it, so `Tokenizer.save` calls them without an import circle
(`io` holds the readers).
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from workbench.errors import TokenizerError
from workbench.saving import atomic_path, refuse_existing
from workbench.tokenization.bytelevel import bytes_to_text
from workbench.tokenization.pretokenize import ONIGURUMA_PATTERNS, PATTERNS

if TYPE_CHECKING:
    from workbench.tokenization.tokenizer import Tokenizer


def save_tokenizer(tok: Tokenizer, path: str | os.PathLike, *, format: str = "hf", overwrite: bool = False) -> Path:
    """Write ``tok`` as a Hugging Face ``tokenizer.json`` (``"hf"``) or a tiktoken rank file (``"tiktoken"``, plus a
    ``<file>.json`` sidecar recording the pre-tokenizer and special tokens); a folder gets ``tokenizer.json`` /
    ``<name>.tiktoken``. Refuses to replace existing files unless ``overwrite``; a failed write leaves them as
    they were. Returns the path written."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / ("tokenizer.json" if format == "hf" else f"{tok.name}.tiktoken")
    if format == "hf":
        with atomic_path(path, overwrite=overwrite, error=TokenizerError) as tmp:
            tmp.write_text(json.dumps(hf_json(tok), ensure_ascii=False), encoding="utf-8")
    elif format == "tiktoken":
        if tok.semantics != "ranks" and not _ranks_equal_merges(tok):
            raise TokenizerError("This tokenizer's merge order differs from its id order, which tiktoken cannot express.")
        sidecar_path = Path(str(path) + ".json")
        refuse_existing(sidecar_path, overwrite=overwrite, error=TokenizerError)
        special = set(tok.special_tokens.values())
        with atomic_path(path, overwrite=overwrite, error=TokenizerError) as tmp, open(tmp, "wb") as handle:
            for i, t in tok.vocab.items():
                if i not in special:
                    handle.write(base64.b64encode(t) + b" " + str(i).encode() + b"\n")
        sidecar = {"pretokenizer": tok.pretokenizer, "pat_str": PATTERNS.get(tok.pretokenizer),
                   "special_tokens": tok.special_tokens, "name": tok.name}
        with atomic_path(sidecar_path, overwrite=True, error=TokenizerError) as tmp:
            tmp.write_text(json.dumps(sidecar, ensure_ascii=False, indent=1), encoding="utf-8")
    else:
        raise TokenizerError(f"format must be 'hf' or 'tiktoken', got {format!r}.")
    return path


def _ranks_equal_merges(tok: Tokenizer) -> bool:
    """True when tokens are first made in id order (then ranks = ids reproduce the merge priorities)."""
    merged = tok.merge_triples[:, 2]
    first = np.sort(np.unique(merged, return_index=True)[1])
    return bool(np.all(np.diff(merged[first]) > 0))


def hf_json(tok: Tokenizer) -> dict:
    """The ``tokenizer.json`` structure of a byte-level BPE tokenizer."""
    special = tok.special_tokens
    vocab = {bytes_to_text(t): i for i, t in tok.vocab.items() if i not in set(special.values())}
    vocab.update(special)
    merges = [[bytes_to_text(a), bytes_to_text(b)] for a, b in tok.merges]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    if tok.pretokenizer == "gpt2":
        pre = byte_level
    elif tok.pretokenizer == "smollm2":
        pre = {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level]}
    elif tok.pretokenizer == "none":
        pre = {**byte_level, "use_regex": False}
    else:
        pre = {"type": "Sequence", "pretokenizers": [
            # Oniguruma (HF's regex engine) reads some of tiktoken's possessive quantifiers differently
            {"type": "Split", "pattern": {"Regex": ONIGURUMA_PATTERNS[tok.pretokenizer]}, "behavior": "Isolated",
             "invert": False},
            {**byte_level, "use_regex": False}]}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for s, i in sorted(special.items(), key=lambda kv: kv[1])],
        "normalizer": None,
        "pre_tokenizer": pre,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }
