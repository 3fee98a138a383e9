from pathlib import Path

import pytest

from workbench.data import SAMPLES_DIR, parallel_texts

TORTURE = [
    "Hello world", "I'LL we'Re don't y'all 'tis", "   spaces  \n\n  x  ", "\t\ttabs\tand\r\nCRLF\r\n\r\n",
    "emoji 👨‍👩‍👧‍👦 🏳️‍🌈 👍🏽 café naïve", "e\u0301 a\u0308 combining ̈marks", "שלום עולם مرحبا بالعالم",
    "Ελληνικά русский 中文 日本語 한국어 हिन्दी ไทย", "12345 3.14159 1,000,000 ٣٤٥ १२३", "a" * 300, " " * 50 + "x",
    "def f(x):\n    return x**2  # comment\n\n\nclass A:\n\tpass\n", "\u00a0nbsp\u3000ideographic\u2028sep",
    "<|endoftext|> is special", "!!!???...,,,;;;", "mixed123abc456", "\x00\x01\x1c\x1f\x7f control",
]


@pytest.fixture(scope="session")
def prose() -> str:
    return (SAMPLES_DIR / "prose_en.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def code_docs() -> list[str]:
    return [p.read_text(encoding="utf-8") for p in sorted((SAMPLES_DIR / "code").iterdir())]


@pytest.fixture(scope="session")
def parallel_docs() -> list[str]:
    return ["\n\n".join(passages) for passages in parallel_texts().values()]


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return SAMPLES_DIR


@pytest.fixture(scope="session")
def gpt2():
    from workbench.tokenization import load_tokenizer

    return load_tokenizer("gpt2")


@pytest.fixture(scope="session")
def smollm2():
    from workbench.tokenization import load_tokenizer

    return load_tokenizer("smollm2")
