"""BPE training with the corpus counted on a Dask cluster (`train_bpe(..., client=...)`): a `LocalCluster` of 2
single-threaded worker processes on loopback. Merges identical to one-process training on prose, code and
multilingual files; files cut into ranges; a worker killed mid-count; paths the workers cannot see."""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pytest

pytest.importorskip("distributed")

from workbench.data import shipped_corpora, stdlib_paths  # noqa: E402
from workbench.errors import DistributedError  # noqa: E402
from workbench.tokenization import dask_count as D  # noqa: E402
from workbench.tokenization import train_bpe  # noqa: E402
from workbench.tokenization import trainer as T  # noqa: E402
from workbench.tokenization.word_tables import WordCounter  # noqa: E402


@pytest.fixture(scope="module")
def client():
    from workbench.distributed import connect

    c = connect(workers=2)
    yield c
    cluster = c.cluster
    c.close()  # the client owns its LocalCluster: closing it stops the workers
    assert cluster.status.name == "closed"


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    """~4 MB of Python sources in one file, cut into many ranges by the tests."""
    path = tmp_path_factory.mktemp("corpus") / "big.py.txt"
    path.write_bytes(b"".join(p.read_bytes() for p in stdlib_paths()[::12]))
    return path


def _local_table(paths, pretokenizer) -> dict:
    counter, stats = WordCounter(), T.TrainingStats()
    T.count_documents(list(paths), pretokenizer, counter, stats)
    return _as_dict(counter.table())


def _as_dict(table) -> dict:
    out, at = {}, 0
    for n, c in zip(table.lengths.tolist(), table.counts.tolist()):
        out[table.arena[at:at + n].tobytes()] = c
        at += n
    return out


@pytest.mark.parametrize("corpus, vocab", [("prose_en", 1500), ("code", 1200), ("parallel", 2500)])
def test_merges_identical_to_one_process(client, corpus, vocab):
    paths = shipped_corpora()[corpus].paths
    local = train_bpe(paths, vocab)
    dist = train_bpe(paths, vocab, client=client)
    assert dist.merges == local.merges and len(dist.merges) == vocab - 256
    s = dist.training_stats
    assert s.corpus_bytes == local.training_stats.corpus_bytes and s.unique_words == local.training_stats.unique_words
    assert s.extra["distributed"]["units"] >= 1 and s.extra["distributed"]["final_table_bytes"] > 0


@pytest.mark.parametrize("pretokenizer", ["gpt2", "superword", "none"])
def test_a_large_file_cut_into_ranges_counts_the_same_words(client, big_file, pretokenizer):
    size = big_file.stat().st_size
    table, figures = D.count_on_cluster(client, [big_file], pretokenizer, range_bytes=256 << 10)
    assert figures["units"] == (1 if pretokenizer == "none" else -(-size // (256 << 10)))
    assert _as_dict(table) == _local_table([big_file], pretokenizer)
    if pretokenizer == "gpt2":  # words, not phrases ("superword") or whole files ("none")
        assert figures["final_table_bytes"] < size / 2  # the tables travel, not the text


def test_progress_counts_files_and_merges(client):
    seen = []
    train_bpe(shipped_corpora()["parallel"].paths, 600, client=client, progress=seen.append)
    counts = [p for p in seen if p.stage == "count"]
    assert counts and counts[-1].done == sum(p.stat().st_size for p in shipped_corpora()["parallel"].paths)
    assert any(p.stage == "merge" for p in seen)


def test_a_worker_killed_mid_count_is_retried_and_the_result_is_identical(client, big_file):
    pids = list(client.run(os.getpid).values())
    killed = threading.Event()

    def progress(p):
        if not killed.is_set():  # the first range is back: kill one worker process while the rest are counted
            killed.set()
            os.kill(pids[0], signal.SIGKILL)

    table, figures = D.count_on_cluster(client, [big_file], "gpt2", range_bytes=64 << 10, progress=progress)
    assert killed.is_set() and figures["units"] > 20
    assert _as_dict(table) == _local_table([big_file], "gpt2")
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it for the next tests


def test_paths_the_workers_cannot_read_are_a_clear_error(client, tmp_path):
    missing = tmp_path / "not-on-the-workers.txt"
    with pytest.raises(DistributedError, match="workers cannot read .*not-on-the-workers.txt.*same paths"):
        D.count_on_cluster(client, [missing], "gpt2")


def test_in_memory_documents_count_on_the_client_and_mix_with_files(client):
    paths = shipped_corpora()["code"].paths
    docs = ["def f(x):\n    return x + 1\n" * 20, "class A:\n    pass\n"]
    local = train_bpe([*paths, *docs], 700)
    assert train_bpe([*paths, *docs], 700, client=client).merges == local.merges


def test_a_range_of_none_counts_the_whole_file_as_one_word_whatever_the_chunk_size(tmp_path, monkeypatch):
    path = tmp_path / "one.txt"
    path.write_bytes(b"no pre-tokenizer: the whole file is one piece " * 100)
    monkeypatch.setattr(T, "CHUNK_BYTES", 1000)
    table = D.count_range(str(path), 0, path.stat().st_size, "none")
    assert _as_dict(table) == {path.read_bytes(): 1} and table.bytes_counted == path.stat().st_size


def test_word_tables_merge_like_counting_once():
    a, b = WordCounter(), WordCounter()
    data = np.frombuffer(b"ab ab cd", np.uint8)
    a.add(data, np.array([0, 2, 5, 8]))
    b.add(data[:2], np.array([0, 2]))
    merged = _as_dict(D.merge_tables(a.table(), b.table()))
    assert merged == {b"ab": 2, b" ab": 1, b" cd": 1}
    assert D.merge_tables(a.table(), b.table()).pieces == 4
