"""Server-side time of the Tokenizers lab's interactions on a 5,000-character text (budget: 100 ms each).

Each figure is the median of repeated parameter changes on a live widget (what a slider move or keystroke triggers on
the server: the core computation plus building the new HTML / data sources), after one warm-up call.

    python benchmarks/widgets.py [--json]        # the JSON object is the last line printed
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def timed(action, values, repeats: int = 3) -> float:
    samples = []
    for _ in range(repeats):
        for v in values:
            t = time.perf_counter()
            action(v)
            samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from widgets.tokenizers_lab import MergeReplay, MergeTree, TokenBoundaries, TokenDiff
    from workbench.data import load_corpus, parallel_texts
    from workbench.tokenization import load_tokenizer, train_bpe

    prose = load_corpus("prose_en").read_text()
    multilingual = "\n".join(p[2] for p in parallel_texts().values())
    text = (prose[20000:22500] + multilingual)[:5000]
    trained = train_bpe(prose[:300000], 8000, name="austen-8k")
    gpt2, smol = load_tokenizer("gpt2"), load_tokenizer("smollm2")
    edits = [text[:-k] if k else text for k in range(0, 50, 5)]  # typing / deleting at the end

    replay = MergeReplay(tokenizer=trained, text=text)
    boundaries = TokenBoundaries(tokenizer=gpt2, text=text)
    diff = TokenDiff(tokenizer_a=gpt2, tokenizer_b=smol, text=text)
    tree = MergeTree(tokenizer=trained)
    steps = [0, 100, 1000, 3000, 5000, 7744, 2500, 10]
    results = {
        "replay_slider_ms": timed(lambda s: setattr(replay, "step", s), steps),
        "boundaries_keystroke_ms": timed(lambda t: setattr(boundaries, "text", t), edits),
        "boundaries_whitespace_toggle_ms": timed(lambda v: setattr(boundaries, "show_whitespace", v), [True, False]),
        "diff_keystroke_ms": timed(lambda t: setattr(diff, "text", t), edits),
        "merge_tree_word_ms": timed(lambda w: setattr(tree, "word", w), [" acknowledged", " universally", " the"]),
    }
    out = {"benchmark": "widgets", "text_chars": len(text), "budget_ms": 100,
           **{k: round(v, 1) for k, v in results.items()}}
    if not args.json:
        for k, v in results.items():
            print(f"{k:34s} {v:7.1f} ms  {'ok' if v <= 100 else 'OVER BUDGET'}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
