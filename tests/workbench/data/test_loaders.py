import os

import pytest

from workbench.data import decode_text, iter_documents, list_files, stdlib_paths, stream_bytes
from workbench.errors import CorpusError, CorpusNotFoundError, WorkbenchError


def test_decode_text_counts_invalid_sequences():
    assert decode_text("café".encode()) == ("café", 0)
    text, bad = decode_text(b"ab\xff\xfecd\xe2\x82")
    assert text.startswith("ab") and text.endswith("\ufffd") and bad == 3
    # a genuine U+FFFD in the input is not an invalid sequence
    assert decode_text("x\ufffdy".encode()) == ("x\ufffdy", 0)


def test_documents_keep_invalid_bytes_exactly(tmp_path):
    raw = b"valid \xc3\xa9 then invalid \xff\xc3 end"
    (tmp_path / "bad.txt").write_bytes(raw)
    (docs,) = list(iter_documents(tmp_path / "bad.txt"))
    assert docs.data == raw
    assert docs.text.count("\ufffd") == 2


def test_folder_is_walked_recursively_and_sorted(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.py").write_text("z")
    (tmp_path / "a.py").write_text("a")
    (tmp_path / "notes.md").write_text("m")
    assert [p.name for p in list_files(tmp_path)] == ["a.py", "z.py", "notes.md"]
    assert [p.name for p in list_files(tmp_path, suffixes=[".py"])] == ["a.py", "z.py"]


def test_stream_bytes_is_chunked_and_complete(tmp_path):
    payload = os.urandom(3 * 1000 + 17)
    (tmp_path / "big.bin").write_bytes(payload)
    (tmp_path / "small.bin").write_bytes(b"xyz")
    chunks = list(stream_bytes(tmp_path, chunk_bytes=1000))
    assert all(len(c) <= 1000 for c in chunks)
    assert b"".join(chunks) == payload + b"xyz"
    assert chunks[-1] == b"xyz"  # chunks never straddle files


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(CorpusNotFoundError, match="does not exist"):
        list(iter_documents(tmp_path / "nope.txt"))
    with pytest.raises(WorkbenchError):
        list(stream_bytes([tmp_path / "nope"]))


def test_empty_inputs_are_clear_errors(tmp_path):
    with pytest.raises(CorpusError, match="empty"):
        list_files([])
    with pytest.raises(CorpusError, match="holds no files"):
        list_files(tmp_path)
    with pytest.raises(CorpusError, match="chunk_bytes"):
        list(stream_bytes(tmp_path, chunk_bytes=0))


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read every file")
def test_unreadable_file_is_a_clear_error(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_text("x")
    path.chmod(0)
    with pytest.raises(CorpusError, match="permission denied"):
        list(iter_documents(path))


def test_unreadable_file_as_root_via_directory_path(tmp_path, monkeypatch):
    # Even root gets a clear error when the OS refuses the read (simulated: open raises PermissionError).
    path = tmp_path / "secret.txt"
    path.write_text("x")
    import builtins

    real_open = builtins.open

    def refusing_open(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)
    with pytest.raises(CorpusError, match="permission denied"):
        list(iter_documents(path))


def test_stdlib_corpus_is_about_30_mb_of_python():
    paths = stdlib_paths()
    total = sum(p.stat().st_size for p in paths)
    assert len(paths) > 1000
    assert all(p.suffix == ".py" for p in paths)
    assert not any("site-packages" in p.parts for p in paths)
    assert 15e6 < total < 80e6
