"""The speculative lab's prompt sets, built from the shipped corpora (no network), for tests, benchmarks, the
dashboard and the notebook.

* ``grounded``: input-grounded tasks whose answer reuses the input (rewrite, annotate or fix a shipped code file's
  function; proofread a shipped passage) -- where model-free drafters shine;
* ``open``: open-ended prose (stories, explanations) -- where nothing can be copied;
* ``multilingual``: translation into English and continuation in other languages, from the parallel corpus.

Each prompt is a `TaskPrompt` (``name``, ``text``, ``chat``: whether to wrap it in the model's chat template).

Example::

    ps = task_prompts("grounded")
    ps[0].name, ps[0].chat            # ('heapq.py:heappush/rewrite', True)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import SpeculativeError

KINDS = ("grounded", "open", "multilingual")

_CODE_TASKS = [
    ("heapq.py", "def heappush", "Rewrite this code with the comments in uppercase:"),
    ("heapq.py", "def heapreplace", "Add type hints to this Python code:"),
    ("shlex.py", "    def push_token", "Add a comment above every line of this code:"),
    ("textwrap.py", "    def _split(", "Rename the variable `chunks` to `pieces` in this code:"),
    ("tokenize.py", "def untokenize", "Rewrite this code with four-space indentation and the same comments:"),
    ("punycode.js", "const decode = ", "Add JSDoc comments to this JavaScript function:"),
    ("word.rs", "pub fn new_word_bounds", "Repeat this Rust code with a doc comment on each function:"),
    ("murmurhash3.c", "murmurhash3_x86_32(const", "Add a comment after each statement of this C code:"),
]

_OPEN = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain why the sky is blue to a ten-year-old.",
    "Give three tips for learning to play the guitar, with a sentence on each.",
    "Describe a perfect autumn day in the countryside.",
    "What are the advantages and disadvantages of working from home?",
    "Write a letter to a friend about your summer holiday by the sea.",
]

_LANGS = [("de", "German"), ("fr", "French"), ("es", "Spanish"), ("ru", "Russian"), ("zh", "Chinese"),
          ("ja", "Japanese")]


@dataclass(frozen=True)
class TaskPrompt:
    name: str
    text: str
    chat: bool = True
    kind: str = "grounded"


def _code_dir() -> Path:
    from workbench.data import load_corpus

    return Path(load_corpus("code").paths[0]).parent


def _snippet(text: str, start: str, n_chars: int = 700) -> str:
    i = text.find(start)
    if i < 0:
        raise SpeculativeError(f"the shipped corpus no longer contains {start!r}")
    block = text[i:i + n_chars]
    return block[:block.rfind("\n")] if "\n" in block else block


def task_prompts(kind: str = "grounded") -> list[TaskPrompt]:
    """The prompts of one set (see the module docstring), in a fixed order."""
    if kind not in KINDS:
        raise SpeculativeError(f"unknown prompt set {kind!r}; choose one of {KINDS}")
    if kind == "open":
        return [TaskPrompt(f"open/{i}", t, True, kind) for i, t in enumerate(_OPEN)]
    if kind == "multilingual":
        from workbench.data import parallel_texts

        par = parallel_texts()
        out = []
        for code, lang in _LANGS:
            line = par[code][3]
            out.append(TaskPrompt(f"{code}/translate", f"Translate this {lang} text into English:\n\n{line}",
                                  True, kind))
        return out
    code_dir = _code_dir()
    out = []
    for fname, start, task in _CODE_TASKS:
        src = (code_dir / fname).read_text(encoding="utf-8")
        snip = _snippet(src, start)
        lang = {"py": "python", "js": "javascript", "rs": "rust", "c": "c"}[fname.rsplit(".", 1)[1]]
        name = re.sub(r"[^A-Za-z0-9_]", "", start.split("(")[0].split("=")[0].split()[-1])
        out.append(TaskPrompt(f"{fname}:{name}", f"{task}\n```{lang}\n{snip}\n```", True, kind))
    from workbench.data import load_corpus

    prose = Path(load_corpus("prose_en").paths[0]).read_text(encoding="utf-8")
    for i, at in enumerate((5000, 20000)):
        passage = prose[at:at + 600]
        passage = passage[passage.find(" ") + 1:passage.rfind(".") + 1]
        out.append(TaskPrompt(f"prose_en/proofread{i}", "Correct any spelling mistakes in this passage and repeat "
                              f"it:\n\n{passage}", True, kind))
    return out


def all_prompts() -> list[TaskPrompt]:
    """Every prompt of every set: 10 grounded + 6 open + 6 multilingual = 22."""
    return [p for k in KINDS for p in task_prompts(k)]
