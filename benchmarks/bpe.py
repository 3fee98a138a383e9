"""BPE training and encoding, side by side with the anchors, in one run.

Training: ours (`train_bpe`) vs Hugging Face tokenizers' BpeTrainer (ByteLevel pre-tokenizer, full byte alphabet)
and rustbpe (Rust + rayon, GPT-2 pattern; uses both cores)
on the standard-library code corpus (~31.5 MB) and on the shipped prose + multilingual text, at 8k / 32k / 64k.
Each trainer runs in a fresh process so its peak memory (VmHWM, the high-water RSS) is its own; both read the same file (the stdlib
sources decoded with errors="replace" and joined, since HF refuses invalid UTF-8). HF is timed both with
`train(files)` (reads line by line, its fast path) and `train_from_iterator` (one document per source file, the
same units as ours); the ratio uses the faster of the two.

Encoding: ours vs tiktoken (single thread, `encode_ordinary`) and HF tokenizers (`encode`, one thread) with GPT-2's
ranks, and ours vs HF with SmolLM2's tokenizer, on prose, code and multilingual text. Throughput in MB/s of UTF-8.

Numba compile time is measured in a process with an empty numba cache (cold) and again with the cache (warm).

    python benchmarks/bpe.py [--quick] [--json]      # the JSON object is the last line printed
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PEAK = r"""
def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
"""

TRAIN_OURS = PEAK + r"""
import json, sys, time
from workbench.tokenization import train_bpe
from workbench.tokenization.pretokenize import split_bytes
import numpy as np
split_bytes(b"warm up", "gpt2")  # compiled kernels come from numba's cache; exclude import time
base = peak_mb()
t = time.perf_counter()
tok = train_bpe([__import__("pathlib").Path(sys.argv[1])], int(sys.argv[2]))
dt = time.perf_counter() - t
s = tok.training_stats
print(json.dumps({"seconds": dt, "count_s": s.seconds_count, "merge_s": s.seconds_merge, "merges": s.merges,
                  "peak_rss_mb": peak_mb(), "base_rss_mb": base}))
"""

TRAIN_HF = PEAK + r"""
import json, sys, time
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
path, vocab, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
trainer = trainers.BpeTrainer(vocab_size=vocab, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
docs = open(path, encoding="utf-8").read().split("\n\x00\n") if mode == "iterator" else None
base = peak_mb()
t = time.perf_counter()
if mode == "files":
    tok.train([path], trainer)
else:
    tok.train_from_iterator(docs, trainer)
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "merges": len(json.loads(tok.to_str())["model"]["merges"]),
                  "peak_rss_mb": peak_mb(), "base_rss_mb": base}))
"""

TRAIN_RUSTBPE = PEAK + r"""
import json, sys, time
import rustbpe
from workbench.tokenization.pretokenize import PATTERNS
path, vocab = sys.argv[1], int(sys.argv[2])
docs = open(path, encoding="utf-8").read().split("\n\x00\n")
base = peak_mb()
tok = rustbpe.Tokenizer()
t = time.perf_counter()
tok.train_from_iterator(iter(docs), vocab_size=vocab, pattern=PATTERNS["gpt2"])
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "peak_rss_mb": peak_mb(), "base_rss_mb": base}))
"""

# many short documents, the way datasets arrive: one list of str, each line of the file a document
TRAIN_DOCS_OURS = PEAK + r"""
import json, sys, time
from workbench.tokenization import train_bpe
train_bpe(["warm up the kernels", "once"], 300)
docs = open(sys.argv[1], encoding="utf-8").read().split("\n")
t = time.perf_counter()
tok = train_bpe(docs, int(sys.argv[2]))
dt = time.perf_counter() - t
json.dump([[a.decode("latin-1"), b.decode("latin-1")] for a, b in tok.merges], open(sys.argv[3], "w"))
print(json.dumps({"seconds": dt, "count_s": tok.training_stats.seconds_count, "documents": len(docs)}))
"""

TRAIN_DOCS_HF = PEAK + r"""
import json, sys, time
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
docs = open(sys.argv[1], encoding="utf-8").read().split("\n")
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
trainer = trainers.BpeTrainer(vocab_size=int(sys.argv[2]), initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                              show_progress=False)
t = time.perf_counter()
tok.train_from_iterator(docs, trainer)
dt = time.perf_counter() - t
json.dump(json.loads(tok.to_str())["model"]["merges"], open(sys.argv[3], "w"))
print(json.dumps({"seconds": dt}))
"""

COMPILE = r"""
import json, time
t = time.perf_counter()
from workbench.tokenization import load_tokenizer, train_bpe
t1 = time.perf_counter()
train_bpe(["warm up the kernels", "once"], 300)
tok = load_tokenizer("gpt2")
tok.encode("warm up " * 10 + "x" * 100)
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t, "first_use_s": t2 - t1}))
"""


def run_child(code: str, *args: str, env: dict | None = None) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         env={**os.environ, **(env or {})}, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def corpora(workdir: Path, quick: bool) -> dict[str, Path]:
    """Corpus files both trainers read. Documents are separated by '\\n\\0\\n' (HF's iterator mode splits on it)."""
    from workbench.data import parallel_texts, shipped_corpora, stdlib_paths

    out = {}
    paths = stdlib_paths()
    if quick:
        paths = paths[::8]
    docs = [p.read_bytes().decode("utf-8", "replace") for p in paths]
    out["stdlib code"] = workdir / "stdlib.txt"
    out["stdlib code"].write_text("\n\x00\n".join(docs), encoding="utf-8")
    prose = shipped_corpora()["prose_en"].read_text()
    multi = ["\n\n".join(p) for p in parallel_texts().values()]
    out["prose + multilingual"] = workdir / "prose_multi.txt"
    out["prose + multilingual"].write_text("\n\x00\n".join([prose, *multi]), encoding="utf-8")
    return out


def bench_training(files: dict[str, Path], vocabs: list[int]) -> list[dict]:
    rows = []
    for name, path in files.items():
        mb = path.stat().st_size / 1e6
        for vocab in vocabs:
            ours = run_child(TRAIN_OURS, str(path), str(vocab))
            hf_files = run_child(TRAIN_HF, str(path), str(vocab), "files")
            hf_iter = run_child(TRAIN_HF, str(path), str(vocab), "iterator")
            hf = min(hf_files, hf_iter, key=lambda r: r["seconds"])
            try:
                rust = run_child(TRAIN_RUSTBPE, str(path), str(vocab))
            except RuntimeError:  # rustbpe is optional (peers extra)
                rust = None
            row = {
                "corpus": name, "mb": round(mb, 2), "vocab": vocab,
                "ours_s": round(ours["seconds"], 3), "ours_count_s": round(ours["count_s"], 3),
                "ours_merge_s": round(ours["merge_s"], 3),
                "hf_files_s": round(hf_files["seconds"], 3), "hf_iterator_s": round(hf_iter["seconds"], 3),
                "time_ratio": round(ours["seconds"] / hf["seconds"], 3),
                "ours_peak_mb": round(ours["peak_rss_mb"], 1), "hf_peak_mb": round(hf["peak_rss_mb"], 1),
                "ours_added_mb": round(ours["peak_rss_mb"] - ours["base_rss_mb"], 1),
                "hf_added_mb": round(hf["peak_rss_mb"] - hf["base_rss_mb"], 1),
            }
            row["memory_ratio"] = round(row["ours_peak_mb"] / row["hf_peak_mb"], 3)  # whole-process peak RSS
            if rust is not None:
                row.update(rustbpe_s=round(rust["seconds"], 3), rustbpe_peak_mb=round(rust["peak_rss_mb"], 1),
                           ratio_vs_rustbpe=round(ours["seconds"] / rust["seconds"], 3))
            rows.append(row)
            print(f"train {name:22s} {mb:5.1f} MB vocab {vocab:6d}: ours {row['ours_s']:6.2f} s  "
                  f"HF {row['hf_files_s']:6.2f} s (files) / {row['hf_iterator_s']:6.2f} s (iterator)  "
                  f"ratio {row['time_ratio']:.2f}  peak RSS {row['ours_peak_mb']:.0f} vs {row['hf_peak_mb']:.0f} MB"
                  + (f"  | rustbpe {row['rustbpe_s']:.2f} s" if "rustbpe_s" in row else ""),
                  flush=True)
    return rows


def _best_of(fn, text: str, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn(text)
        best = min(best, time.perf_counter() - t)
    return best


def bench_encoding(quick: bool) -> list[dict]:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ["RAYON_NUM_THREADS"] = "1"
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tokenizers import Tokenizer as HFTokenizer

    from workbench.data import parallel_texts, shipped_corpora, stdlib_paths
    from workbench.tokenization import PATTERNS, load_tokenizer
    from workbench.tokenization.encoder import new_piece_cache
    from workbench.tokenization.io import gpt2_files
    from workbench.tokenization.writers import hf_json

    texts = {
        "prose": shipped_corpora()["prose_en"].read_text(),
        "code": "".join(p.read_bytes().decode("utf-8", "replace") for p in stdlib_paths()[: 60 if quick else 250]),
        "multilingual": "\n\n".join("\n\n".join(p) for p in parallel_texts().values()),
    }
    encoder_json, vocab_bpe = gpt2_files()
    tik = tiktoken.Encoding("gpt2", pat_str=PATTERNS["gpt2"],
                            mergeable_ranks=data_gym_to_mergeable_bpe_ranks(str(vocab_bpe), str(encoder_json)),
                            special_tokens={"<|endoftext|>": 50256})
    ours_gpt2 = load_tokenizer("gpt2")
    hf_gpt2 = HFTokenizer.from_str(json.dumps(hf_json(ours_gpt2)))
    ours_smol = load_tokenizer("smollm2")
    hf_smol = HFTokenizer.from_str(json.dumps(hf_json(ours_smol)))
    repeats = 2 if quick else 3
    rows = []
    for kind, text in texts.items():
        mb = len(text.encode()) / 1e6
        ours_gpt2.encode(text[:1000])
        cold_cache_s = float("inf")
        for _ in range(repeats):  # an empty piece cache each time: one pass, as tiktoken (which has none) does
            ours_gpt2._cache = new_piece_cache()
            t = time.perf_counter()
            ours_ids = ours_gpt2.encode(text)
            cold_cache_s = min(cold_cache_s, time.perf_counter() - t)
        same_tiktoken = ours_ids == tik.encode_ordinary(text)
        ours_s = _best_of(ours_gpt2.encode, text, repeats)
        tik_s = _best_of(tik.encode_ordinary, text, repeats)
        hf_s = _best_of(lambda t: hf_gpt2.encode(t, add_special_tokens=False), text, repeats)
        smol_s = _best_of(ours_smol.encode, text, repeats)
        hf_smol_s = _best_of(lambda t: hf_smol.encode(t, add_special_tokens=False), text, repeats)
        row = {
            "text": kind, "mb": round(mb, 3),
            "gpt2_ours_mb_s": round(mb / ours_s, 2), "gpt2_ours_cold_cache_mb_s": round(mb / cold_cache_s, 2),
            "gpt2_tiktoken_mb_s": round(mb / tik_s, 2), "gpt2_hf_mb_s": round(mb / hf_s, 2),
            "ratio_vs_tiktoken": round(tik_s / ours_s, 2), "ratio_vs_tiktoken_cold_cache": round(tik_s / cold_cache_s, 2),
            "ratio_vs_hf": round(hf_s / ours_s, 2), "ids_identical_to_tiktoken": same_tiktoken,
            "smollm2_ours_mb_s": round(mb / smol_s, 2), "smollm2_hf_mb_s": round(mb / hf_smol_s, 2),
            "smollm2_ratio_vs_hf": round(hf_smol_s / smol_s, 2),
        }
        rows.append(row)
        print(f"encode {kind:12s} {mb:5.2f} MB  GPT-2: ours {row['gpt2_ours_mb_s']:6.1f} MB/s "
              f"(cold cache {row['gpt2_ours_cold_cache_mb_s']:.1f})  tiktoken {row['gpt2_tiktoken_mb_s']:5.1f}  "
              f"HF {row['gpt2_hf_mb_s']:5.1f}  -> x{row['ratio_vs_tiktoken']} vs tiktoken | SmolLM2: ours "
              f"{row['smollm2_ours_mb_s']:.1f} vs HF {row['smollm2_hf_mb_s']:.1f} MB/s", flush=True)
    return rows


def bench_small_documents(workdir: Path, n_docs: int, vocab: int, repeats: int = 3) -> dict:
    """``train_bpe(list_of_str)`` vs HF's ``train_from_iterator`` on ``n_docs`` short documents (the non-empty lines of
    the shipped English prose, repeated), each in a fresh process, best of ``repeats``; merges compared."""
    from workbench.data import shipped_corpora
    from workbench.tokenization.bytelevel import bytes_to_text

    lines = [line for line in shipped_corpora()["prose_en"].read_text().splitlines() if line.strip()]
    docs = (lines * (n_docs // len(lines) + 1))[:n_docs]
    path = workdir / "short_docs.txt"
    path.write_text("\n".join(docs), encoding="utf-8")
    ours = [run_child(TRAIN_DOCS_OURS, str(path), str(vocab), str(workdir / "ours.json")) for _ in range(repeats)]
    hf = [run_child(TRAIN_DOCS_HF, str(path), str(vocab), str(workdir / "hf.json")) for _ in range(repeats)]
    ours_merges = [[bytes_to_text(a.encode("latin-1")), bytes_to_text(b.encode("latin-1"))]
                   for a, b in json.loads((workdir / "ours.json").read_text())]
    hf_merges = [m.split(" ") if isinstance(m, str) else m for m in json.loads((workdir / "hf.json").read_text())]
    row = {"documents": n_docs, "mb": round(path.stat().st_size / 1e6, 2), "vocab": vocab,
           "ours_s": round(min(r["seconds"] for r in ours), 3), "hf_iterator_s": round(min(r["seconds"] for r in hf), 3),
           "merges_identical": ours_merges == hf_merges}
    row["time_ratio"] = round(row["ours_s"] / row["hf_iterator_s"], 3)
    print(f"train {n_docs} short documents ({row['mb']} MB) vocab {vocab}: ours {row['ours_s']:.3f} s  "
          f"HF train_from_iterator {row['hf_iterator_s']:.3f} s  ratio {row['time_ratio']:.2f}  "
          f"merges identical: {row['merges_identical']}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description="BPE training and encoding vs HF tokenizers and tiktoken")
    parser.add_argument("--quick", action="store_true", help="smaller corpus (1/8 of the stdlib), vocab 8k and 32k")
    parser.add_argument("--json", action="store_true", help="only print the JSON line")
    args = parser.parse_args()
    if args.json:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence progress lines; JSON goes to the real stdout
    import numba
    import tiktoken
    import tokenizers

    result = {
        "benchmark": "bpe",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "numba": numba.__version__,
                    "tokenizers": tokenizers.__version__, "tiktoken": tiktoken.__version__},
        "quick": args.quick,
    }
    with tempfile.TemporaryDirectory() as cold:
        result["compile_cold"] = run_child(COMPILE, env={"NUMBA_CACHE_DIR": cold})
    result["compile_warm"] = run_child(COMPILE)
    print(f"numba: cold start {result['compile_cold']['first_use_s']:.1f} s to compile, warm "
          f"{result['compile_warm']['first_use_s']:.2f} s from the cache")
    with tempfile.TemporaryDirectory() as work:
        files = corpora(Path(work), args.quick)
        result["training"] = bench_training(files, [8000, 32000] if args.quick else [8000, 32000, 64000])
        result["small_documents"] = bench_small_documents(Path(work), 100_000, 8000)
    result["encoding"] = bench_encoding(args.quick)
    if args.json:
        sys.stdout = sys.__stdout__
    print(json.dumps(result))


if __name__ == "__main__":
    main()
