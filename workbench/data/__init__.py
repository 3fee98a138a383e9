"""Corpora: shipped samples (with provenance and licence in ``samples/SOURCES.md``) and loaders for local text."""

from workbench.data.corpora import (
    LANGUAGES,
    SAMPLES_DIR,
    Corpus,
    corpus_table,
    language_name,
    language_script,
    load_corpus,
    parallel_table,
    parallel_texts,
    shipped_corpora,
)
from workbench.data.loaders import (
    Document,
    Text,
    corpus_items,
    decode_text,
    iter_documents,
    list_files,
    stdlib_paths,
    stream_bytes,
)

__all__ = [
    "LANGUAGES", "SAMPLES_DIR", "Corpus", "corpus_table", "parallel_table", "Document", "decode_text", "iter_documents", "language_name",
    "language_script", "list_files", "load_corpus", "parallel_texts", "shipped_corpora", "stdlib_paths", "stream_bytes",
    "Text", "corpus_items",
]
