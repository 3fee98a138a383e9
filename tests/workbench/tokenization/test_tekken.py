"""Mistral's tekken tokenizer, loaded offline from the mistral_common wheel, against mistral_common's Tekkenizer."""

from __future__ import annotations

import base64
import importlib.util
import json

import pytest

from tests.workbench.tokenization.conftest import TORTURE
from workbench.errors import TokenizerFileError
from workbench.tokenization import load_tokenizer
from workbench.tokenization.io import NAMED, tekken_file
from workbench.tokenization.pretokenize import PATTERNS, reference_split, split_bytes, split_text


@pytest.fixture(scope="module")
def tekken_module():
    return pytest.importorskip("mistral_common.tokens.tokenizers.tekken")


@pytest.fixture(scope="module")
def reference(tekken_module):
    return tekken_module.Tekkenizer.from_file(tekken_file())


@pytest.fixture(scope="module")
def ours(tekken_module):
    return load_tokenizer("tekken")


def _texts(prose, parallel_docs):
    return TORTURE + parallel_docs + [prose[100_000:300_000]]


def test_ids_identical_to_mistral_common(ours, reference, prose, parallel_docs):
    for text in _texts(prose, parallel_docs):
        assert ours.encode(text) == reference.encode(text, bos=False, eos=False), text[:80]


def test_decode_round_trip(ours, reference, prose, parallel_docs):
    for text in _texts(prose, parallel_docs):
        ids = ours.encode(text)
        assert ours.decode(ids) == text
        assert reference.decode(ids) == text


def test_vocabulary_layout(ours, reference):
    n_special = reference.num_special_tokens
    assert n_special == 1000 and ours.n_vocab == reference.n_words == 131072
    assert ours.pretokenizer == "tekken" and ours.semantics == "ranks"
    assert ours.special_tokens["<unk>"] == 0 and ours.special_tokens["<s>"] == reference.bos_id == 1
    assert ours.special_tokens["</s>"] == reference.eos_id == 2
    assert ours.special_tokens["<SPECIAL_999>"] == 999 and len(ours.special_tokens) == n_special
    assert ours.id_to_token(n_special) == b"\x00" and ours.id_to_token(n_special + 255) == b"\xff"  # id = rank + 1000
    for i in (1000, 1300, 5000, 70000, 131071):
        assert ours.id_to_token(i) == reference.id_to_byte_piece(i, special_token_policy="keep"), i
    with open(tekken_file(), encoding="utf-8") as handle:
        assert json.load(handle)["config"]["pattern"] == PATTERNS["tekken"]


def test_special_token_text_is_ordinary_unless_allowed(ours, reference):
    text = "<s>[INST] hi [/INST]"
    assert ours.encode(text) == reference.encode(text, bos=False, eos=False)
    assert ours.encode(text, allowed_special="all")[:2] == [1, 3]


def test_load_by_path_detects_tekken_json(tekken_module, tmp_path):
    path = tekken_file("tekken_240718.json")
    by_path = load_tokenizer(path)
    assert by_path.name == "tekken_240718" and by_path.pretokenizer == "tekken" and by_path.n_vocab == 131072
    reference = tekken_module.Tekkenizer.from_file(path)
    for text in TORTURE:
        assert by_path.encode(text) == reference.encode(text, bos=False, eos=False), text


def _tiny_tekken(tmp_path, n_merges_kept: int):
    """A small tekken file: 256 bytes plus a few merges, 4 special tokens, truncated to ``n_merges_kept`` merges."""
    tokens = [bytes([i]) for i in range(256)] + [b"th", b"he", b"the", b" the", b"in", b"ing"]
    vocab = [{"rank": i, "token_bytes": base64.b64encode(t).decode(), "token_str": t.decode("latin-1")}
             for i, t in enumerate(tokens)]
    special = [{"rank": i, "token_str": s, "is_control": True} for i, s in enumerate(["<unk>", "<s>", "</s>", "[INST]"])]
    config = {"pattern": PATTERNS["tekken"], "num_vocab_tokens": len(tokens), "default_vocab_size": 4 + 256 + n_merges_kept,
              "default_num_special_tokens": 4, "version": "v3"}
    path = tmp_path / "tiny_tekken.json"
    path.write_text(json.dumps({"config": config, "vocab": vocab, "special_tokens": special}), encoding="utf-8")
    return path


def test_tiny_file_truncated_like_mistral_common(tekken_module, tmp_path):
    path = _tiny_tekken(tmp_path, 3)  # "th", "he", "the" kept; " the", "in", "ing" cut
    ours = load_tokenizer(path)
    reference = tekken_module.Tekkenizer.from_file(path)
    assert ours.n_vocab == 4 + 256 + 3 and ours.special_tokens == {"<unk>": 0, "<s>": 1, "</s>": 2, "[INST]": 3}
    for text in ["the thing in the thin inn", "The ring", *TORTURE]:
        assert ours.encode(text) == reference.encode(text, bos=False, eos=False), text


def test_bad_tekken_files(tmp_path):
    path = _tiny_tekken(tmp_path, 3)
    data = json.loads(path.read_text(encoding="utf-8"))
    data["vocab"] = data["vocab"][:100]  # fewer ranks than the config keeps
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(TokenizerFileError, match="ranks"):
        load_tokenizer(path)
    data = json.loads(_tiny_tekken(tmp_path, 3).read_text(encoding="utf-8"))
    data["config"]["pattern"] = r"\w+|\s+"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(TokenizerFileError, match="regex"):
        load_tokenizer(path)


def test_missing_mistral_common_names_the_install(monkeypatch):
    assert "tekken" in NAMED
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(TokenizerFileError, match="pip install mistral_common"):
        load_tokenizer("tekken")


def test_slow_path_split_bytes_matches_reference():
    assert split_bytes(b"", "tekken").tolist() == [0]
    data = b"hi \xff there\xc3\xa9 12 ABCdef \xe4\xb8\xad\xe2\x82 x/y\r\n"
    pieces = reference_split(data.decode("utf-8", "surrogateescape"), "tekken")
    lengths = [len(p.encode("utf-8", "surrogateescape")) for p in pieces]
    bounds = split_bytes(data, "tekken")
    assert bounds.dtype.name == "int64" and bounds.tolist() == [0, *[sum(lengths[:k + 1]) for k in range(len(lengths))]]
    assert split_text("I'LL pay 12  now!\n HelloWorld", "tekken") == [
        "I", "'LL", " pay", " ", "1", "2", " ", " now", "!\n", " Hello", "World"]
