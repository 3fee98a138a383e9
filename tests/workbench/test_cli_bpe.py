import json
import sys

import pytest

from workbench.cli import main


def test_bpe_train_writes_a_loadable_tokenizer(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat. " * 200 + "def f(x):\n    return x\n" * 50)
    out = tmp_path / "tok.json"
    assert main(["bpe", "train", str(corpus), "code", "--vocab-size", "400", "-o", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "trained 400 tokens (144 merges)" in printed and "wrote" in printed
    data = json.loads(out.read_text())
    assert len(data["model"]["vocab"]) == 400 and len(data["model"]["merges"]) == 144
    # refuses to overwrite without --force
    assert main(["bpe", "train", str(corpus), "--vocab-size", "300", "-o", str(out), "--quiet"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["bpe", "train", str(corpus), "--vocab-size", "300", "-o", str(out), "--quiet", "--force",
                 "--format", "tiktoken"]) == 0
    assert (tmp_path / "tok.json.json").is_file()  # the tiktoken sidecar


def test_bpe_encode_ids_and_colour(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("Hello world")
    assert main(["bpe", "encode", "--tokenizer", "gpt2", str(text), "--show", "ids"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "15496 995"
    assert "2 tokens, 11 bytes" in captured.err
    assert main(["bpe", "encode", "-t", "gpt2", str(text), "--show", "color"]) == 0
    assert "\x1b[30;44mHello" in capsys.readouterr().out


def test_bpe_encode_stdin(monkeypatch, capsys):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("2024"))
    assert main(["bpe", "encode", "-t", "smollm2", "-", "--show", "ids"]) == 0
    assert len(capsys.readouterr().out.split()) == 4  # SmolLM2 splits digits one by one


@pytest.mark.parametrize("args, needle", [
    (["bpe", "encode", "-t", "nope", "x.txt"], "No tokenizer named 'nope'"),
    (["bpe", "encode", "-t", "gpt2", "/no/such/file"], "No such file"),
    (["bpe", "train", "/no/such/corpus", "--vocab-size", "300", "-o", "/tmp/x.json"], "does not exist"),
    (["bpe", "train", "code", "--vocab-size", "100", "-o", "/tmp/never.json", "--force"], "smaller than the alphabet"),
])
def test_bpe_cli_errors_are_one_line(args, needle, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_bpe_encode_corpus_writes_ids_and_refuses_to_overwrite(tmp_path, capsys):
    import numpy as np

    from workbench.data import shipped_corpora
    from workbench.tokenization import load_tokenizer

    out = tmp_path / "ids"
    assert main(["bpe", "encode-corpus", "code", "--out", str(out), "--quiet"]) == 0
    assert "encoded 11 files" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    gpt2 = load_tokenizer("gpt2")
    first = shipped_corpora()["code"].paths[0]
    assert manifest["files"][0]["path"] == str(first) and manifest["dtype"] == "uint16"
    assert np.array_equal(np.load(out / manifest["files"][0]["out"]), gpt2.encode_bytes(first.read_bytes()))
    assert main(["bpe", "encode-corpus", "code", "--out", str(out), "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_bpe_metrics_prints_one_row_per_tokenizer_and_corpus(capsys):
    assert main(["bpe", "metrics", "code", "parallel", "-t", "gpt2", "-t", "smollm2", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "bytes_per_token" in printed and printed.count("parallel") == 2 and "smollm2" in printed
