"""Corpus-scale encoding and metrics (`encode_files`, `corpus_metrics`, `metric_table` over files): cut into many
ranges, here and on a 2-worker Dask `LocalCluster`, the ids equal encoding each whole file and the metrics equal
`text_metrics` on its text, exactly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from workbench.data import SAMPLES_DIR, shipped_corpora
from workbench.errors import ConfigurationError, CorpusError, CorpusNotFoundError
from workbench.tokenization import train_bpe
from workbench.tokenization.corpus_files import corpus_counts, encode_files, ids_dtype
from workbench.tokenization.counts import text_counts
from workbench.tokenization.metrics import corpus_metrics, metric_table, text_metrics

RANGE = 20_000  # bytes per unit: every sample file is cut into several ranges


@pytest.fixture(scope="module")
def mixed_file(tmp_path_factory) -> Path:
    """~220 KB: English prose, code and the 19-language UDHR in one file, so ranges fall in every kind of text."""
    parts = [(SAMPLES_DIR / "prose_en.txt").read_text(encoding="utf-8")[:80_000]]
    parts += [Path(p).read_text(encoding="utf-8")[:6_000] for p in shipped_corpora()["code"].paths]
    parts += [Path(p).read_text(encoding="utf-8")[:3_000] for p in shipped_corpora()["parallel"].paths]
    path = tmp_path_factory.mktemp("mixed") / "mixed.txt"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _same_metrics(a, b) -> None:
    da, db = a.as_dict(), b.as_dict()
    for key, value in da.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(db[key]), key
        else:
            assert db[key] == value, key   # exact: sums and one histogram, no tolerance


@pytest.mark.parametrize("name", ["gpt2", "smollm2"])
def test_encoding_in_ranges_equals_encoding_each_whole_file(name, mixed_file, gpt2, smollm2):
    tok = {"gpt2": gpt2, "smollm2": smollm2}[name]
    files = [mixed_file, *shipped_corpora()["code"].paths[:4]]
    out = encode_files(tok, files, range_bytes=RANGE)
    assert [o.path for o in out] == [str(f) for f in files]      # in the order given
    for o in out:
        ref = tok.encode_bytes(Path(o.path).read_bytes())
        assert o.ids.dtype == np.uint16 and o.n_tokens == len(ref) and o.n_bytes == Path(o.path).stat().st_size
        assert np.array_equal(o.ids, ref)


@pytest.mark.parametrize("pretokenizer", ["superword", "none"])
def test_ranges_cut_where_other_pretokenizers_end_a_piece(pretokenizer, mixed_file):
    tok = train_bpe(mixed_file.read_text(encoding="utf-8")[:30_000], 400, pretokenizer=pretokenizer)
    (o,) = encode_files(tok, [mixed_file], range_bytes=RANGE)
    assert np.array_equal(o.ids, tok.encode_bytes(mixed_file.read_bytes()))


@pytest.mark.parametrize("name", ["gpt2", "smollm2"])
def test_corpus_metrics_of_one_file_equal_text_metrics_of_its_text(name, mixed_file, gpt2, smollm2):
    tok = {"gpt2": gpt2, "smollm2": smollm2}[name]
    whole = text_metrics(tok, mixed_file.read_text(encoding="utf-8"), text_name="mixed")
    pieces = corpus_metrics(tok, [mixed_file], range_bytes=RANGE, text_name="mixed")
    assert pieces.n_tokens > 50_000 and pieces.split_chars > 0    # SmolLM2 and GPT-2 split some characters here
    _same_metrics(whole, pieces)


def test_counts_of_many_files_add_up(gpt2):
    files = shipped_corpora()["parallel"].paths
    total = corpus_counts(gpt2, files, range_bytes=RANGE)
    one_by_one = [text_counts(gpt2, Path(f).read_bytes()) for f in files]
    assert total.n_tokens == sum(c.n_tokens for c in one_by_one)
    assert total.n_words == sum(c.n_words for c in one_by_one)
    assert np.array_equal(total.id_counts, sum(c.id_counts for c in one_by_one))


def test_metric_table_takes_files_as_paths_and_text_as_str(gpt2, mixed_file):
    table = metric_table({"gpt2": gpt2}, {"en": "The cat sat on the mat.", "mixed": mixed_file}, reference="en")
    assert table.get("gpt2", "mixed")["n_tokens"] == len(gpt2.encode_bytes(mixed_file.read_bytes()))
    assert table.get("gpt2", "mixed")["premium"] == table.get("gpt2", "mixed")["n_tokens"] / 7
    seen = []
    table = metric_table({"gpt2": gpt2}, {"code": list(shipped_corpora()["code"].paths)}, reference=None,
                         progress=lambda p: seen.append((p.done, p.total, p.stage)))
    assert seen[-1][0] == seen[-1][1] and seen[-1][2] == "measure" and math.isnan(table.get("gpt2", "code")["premium"])


def test_out_dir_gets_one_npy_per_file_mirroring_folders_and_a_manifest(gpt2, tmp_path):
    src = tmp_path / "src"
    for sub in ("a", "b"):  # the same file name in two folders
        (src / sub).mkdir(parents=True)
        (src / sub / "README.txt").write_text(f"Folder {sub}: " + "tokens and more tokens. " * 3000)
    out_dir = tmp_path / "ids"
    out = encode_files(gpt2, [src], out_dir=out_dir, range_bytes=RANGE)
    assert sorted(Path(o.out).relative_to(out_dir).as_posix() for o in out) == ["a/README.txt.npy", "b/README.txt.npy"]
    for o in out:
        ids = o.load()
        assert ids.dtype == np.uint16 and np.array_equal(ids, gpt2.encode_bytes(Path(o.path).read_bytes()))
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["n_tokens"] == sum(o.n_tokens for o in out) and manifest["dtype"] == "uint16"
    assert sorted(p.name for p in out_dir.iterdir()) == ["a", "b", "manifest.json"]   # no part files left
    with pytest.raises(ConfigurationError, match="exists.*overwrite=True"):
        encode_files(gpt2, [src], out_dir=out_dir)
    assert len(encode_files(gpt2, [src], out_dir=out_dir, overwrite=True)) == 2


def test_ids_dtype_widens_past_65536_ids():
    assert ids_dtype(50_257) == np.uint16 and ids_dtype(65_536) == np.uint16 and ids_dtype(131_072) == np.uint32


def test_bad_input_is_a_clear_error(gpt2, tmp_path):
    with pytest.raises(CorpusNotFoundError):
        encode_files(gpt2, [tmp_path / "no-such-file.txt"])
    with pytest.raises(CorpusNotFoundError):
        corpus_metrics(gpt2, "corpus/my_corpus.txt")        # a str is a path here, never text
    binary = tmp_path / "binary.bin"
    binary.write_bytes(b"text then \xff\xfe bytes")
    assert encode_files(gpt2, [binary])[0].n_tokens > 0          # ids of any bytes
    with pytest.raises(CorpusError, match="not UTF-8 text.*byte 10.*invalid='skip'"):
        corpus_metrics(gpt2, [binary])                            # characters and words need text
    text = tmp_path / "text.txt"
    text.write_text("Plain text, measured.")
    skipped = corpus_metrics(gpt2, [binary, text], invalid="skip")   # or leave such text out, and say how much
    # " \xff\xfe bytes" is cut out up to the safe cuts around it; "text then" is measured
    assert skipped.skipped_bytes == 9 and skipped.n_bytes == len("text then") + text.stat().st_size
    table = metric_table({"gpt2": gpt2}, {"files": [binary, text]}, reference=None, invalid="skip")
    assert table.skipped_bytes[0, 0] == 9
    # what is left out depends on the text only, not on how the file is cut into ranges
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(("Un café au lait, s'il vous plaît. " * 2000).encode("latin-1") + b"The end in UTF-8. " * 900)
    whole = corpus_metrics(gpt2, [latin1], invalid="skip")
    _same_metrics(whole, corpus_metrics(gpt2, [latin1], invalid="skip", range_bytes=7_001))
    assert 0 < whole.skipped_bytes < latin1.stat().st_size - 16_000 and whole.n_words > 8000
    with pytest.raises(ConfigurationError, match="invalid must be one of"):
        corpus_metrics(gpt2, [text], invalid="ignore")
    with pytest.raises(ConfigurationError, match="not a workbench Tokenizer"):
        encode_files("gpt2", [binary])


# -- on a Dask cluster ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client():
    pytest.importorskip("distributed")
    from workbench.distributed import connect

    c = connect(workers=2)
    yield c
    c.close()


def test_on_the_cluster_ids_and_metrics_equal_the_local_ones(client, gpt2, mixed_file, tmp_path):
    files = [mixed_file, *shipped_corpora()["parallel"].paths]
    local = encode_files(gpt2, files, range_bytes=RANGE)
    remote = encode_files(gpt2, files, range_bytes=RANGE, client=client)
    assert all(np.array_equal(a.ids, b.ids) for a, b in zip(local, remote))
    written = encode_files(gpt2, files, out_dir=tmp_path / "ids", range_bytes=RANGE, client=client)
    assert all(np.array_equal(a.ids, b.load()) for a, b in zip(local, written))
    _same_metrics(corpus_metrics(gpt2, files, range_bytes=RANGE),
                  corpus_metrics(gpt2, files, range_bytes=RANGE, client=client))

