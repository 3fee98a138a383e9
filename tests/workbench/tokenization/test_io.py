import json

import pytest

from tests.workbench.tokenization.conftest import TORTURE
from workbench.errors import ConfigurationError, TokenizerError, TokenizerFileError
from workbench.tokenization import load_tokenizer, train_bpe
from workbench.tokenization.io import gpt2_files
from workbench.tokenization.pretokenize import PATTERNS


@pytest.fixture(scope="module")
def trained(prose, code_docs, parallel_docs):
    return train_bpe([prose[:150000], *code_docs, *parallel_docs], 3000, special_tokens=["<|endoftext|>"])


def texts(prose, code_docs, parallel_docs):
    return TORTURE + [prose[200000:260000], code_docs[1], *parallel_docs]


def test_hf_json_round_trip_in_hugging_face_tokenizers(tmp_path, trained, prose, code_docs, parallel_docs):
    tokenizers = pytest.importorskip("tokenizers")
    path = tmp_path / "tokenizer.json"
    trained.save(path, format="hf")
    theirs = tokenizers.Tokenizer.from_file(str(path))
    ours_again = load_tokenizer(path)
    assert ours_again.merges == trained.merges and ours_again.special_tokens == trained.special_tokens
    for text in texts(prose, code_docs, parallel_docs):
        ids = trained.encode(text, allowed_special="all")  # HF matches special tokens in text
        assert theirs.encode(text, add_special_tokens=False).ids == ids
        assert ours_again.encode(text, allowed_special="all") == ids
        assert theirs.decode(ids, skip_special_tokens=False) == text


@pytest.mark.parametrize("pretokenizer", ["smollm2", "whitespace", "gpt4"])
def test_hf_json_for_other_pretokenizers(tmp_path, pretokenizer, prose):
    tokenizers = pytest.importorskip("tokenizers")
    tok = train_bpe(prose[:60000], 800, pretokenizer=pretokenizer)
    tok.save(tmp_path, format="hf")
    theirs = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    for text in TORTURE + [prose[70000:80000]]:
        assert theirs.encode(text, add_special_tokens=False).ids == tok.encode(text), text[:40]
    assert load_tokenizer(tmp_path).pretokenizer == pretokenizer


def test_tiktoken_round_trip(tmp_path, trained, prose, code_docs, parallel_docs):
    tiktoken = pytest.importorskip("tiktoken")
    from tiktoken.load import load_tiktoken_bpe

    path = tmp_path / "mine.tiktoken"
    trained.save(path, format="tiktoken")
    enc = tiktoken.Encoding("mine", pat_str=PATTERNS["gpt2"], mergeable_ranks=load_tiktoken_bpe(str(path)),
                            special_tokens=trained.special_tokens)
    ours = load_tokenizer(path)
    assert ours.semantics == "ranks" and ours.special_tokens == trained.special_tokens
    for text in texts(prose, code_docs, parallel_docs):
        assert enc.encode_ordinary(text) == ours.encode(text)
        assert enc.decode(ours.encode(text)) == text
    # rank semantics may only ever merge more than the merge list, never differently on ordinary text
    same = sum(ours.encode(t) == trained.encode(t) for t in texts(prose, code_docs, parallel_docs))
    assert same >= len(texts(prose, code_docs, parallel_docs)) - 2


def test_load_gpt2_from_files_and_folder(tmp_path):
    encoder_json, vocab_bpe = gpt2_files()
    by_file = load_tokenizer(encoder_json)
    by_name = load_tokenizer("gpt2")
    assert by_file.encode("Hello there") == by_name.encode("Hello there") == [15496, 612]
    folder = tmp_path / "g"
    folder.mkdir()
    (folder / "encoder.json").write_bytes(encoder_json.read_bytes())
    (folder / "vocab.bpe").write_bytes(vocab_bpe.read_bytes())
    assert load_tokenizer(folder).encode("Hello there") == [15496, 612]


def test_load_smollm2_and_its_tokenizer_json_agree(tmp_path):
    smol = load_tokenizer("smollm2")
    smol.save(tmp_path, format="hf")
    again = load_tokenizer(tmp_path / "tokenizer.json")
    assert again.pretokenizer == "smollm2"
    for text in TORTURE:
        assert again.encode(text, allowed_special="all") == smol.encode(text, allowed_special="all")


@pytest.mark.parametrize("content, match", [
    ("{not json", "not readable JSON"),
    (json.dumps({"model": {"type": "Unigram", "vocab": []}}), "not a Hugging Face BPE"),
    (json.dumps({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": None}), "no pre_tokenizer"),
])
def test_corrupt_tokenizer_json(tmp_path, content, match):
    path = tmp_path / "tokenizer.json"
    path.write_text(content)
    with pytest.raises(TokenizerFileError, match=match):
        load_tokenizer(path)


def test_truncated_files(tmp_path, trained):
    trained.save(tmp_path / "t.json", format="hf")
    text = (tmp_path / "t.json").read_text()
    (tmp_path / "cut.json").write_text(text[: len(text) // 2])
    with pytest.raises(TokenizerFileError, match="corrupt or truncated"):
        load_tokenizer(tmp_path / "cut.json")
    trained.save(tmp_path / "t.tiktoken", format="tiktoken")
    lines = (tmp_path / "t.tiktoken").read_bytes().splitlines()
    (tmp_path / "cut.tiktoken").write_bytes(b"\n".join(lines[:100]) + b"\nabc")
    with pytest.raises(TokenizerFileError, match="line 101"):
        load_tokenizer(tmp_path / "cut.tiktoken")
    (tmp_path / "few.tiktoken").write_bytes(b"\n".join(lines[:100]))
    with pytest.raises(TokenizerFileError, match="256 single bytes"):
        load_tokenizer(tmp_path / "few.tiktoken")


def test_unknown_names_and_formats(tmp_path, trained):
    with pytest.raises(TokenizerFileError, match="No tokenizer named 'gpt3'"):
        load_tokenizer("gpt3")
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(TokenizerFileError, match="Unrecognised"):
        load_tokenizer(tmp_path / "x.txt")
    with pytest.raises(TokenizerError, match="format"):
        trained.save(tmp_path / "x.bin", format="pickle")
    with pytest.raises(ConfigurationError, match="unknown pre-tokenizer 'nope'"):
        load_tokenizer("gpt2", pretokenizer="nope")
