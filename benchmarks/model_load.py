"""How long the default model takes to load in a fresh process, from the safetensors cache.

Each trial is a new Python process: it imports torch and transformers, resolves the Llama classes (transformers
imports its submodules lazily, so this is import cost too), then times ``load_default_model()``.

    python benchmarks/model_load.py [--trials 5] [--json]

The JSON object is the last line printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

TRIAL = r"""
import json, time
t0 = time.perf_counter()
import torch, transformers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, LlamaForCausalLM  # resolve lazy imports
t1 = time.perf_counter()
from workbench.models import load_default_model
model, tokenizer = load_default_model()
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "total_s": t2 - t0}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()

    # make sure the cache exists (the first load converts the GGUF file)
    subprocess.run([sys.executable, "-c", "from workbench.models import load_default_model; load_default_model()"],
                   check=True, capture_output=True)
    trials = []
    for _ in range(args.trials):
        out = subprocess.run([sys.executable, "-c", TRIAL], check=True, capture_output=True, text=True).stdout
        trials.append(json.loads(out.strip().splitlines()[-1]))
    result = {
        "benchmark": "model_load",
        "model": "SmolLM2-135M-Instruct (cached safetensors)",
        "trials": args.trials,
        **{f"median_{k}": round(statistics.median(t[k] for t in trials), 3) for k in ("import_s", "load_s", "total_s")},
        "max_load_s": round(max(t["load_s"] for t in trials), 3),
        "target_load_s": 3.0,
    }
    if not args.json:
        print(f"import torch+transformers (incl. lazy Llama classes): {result['median_import_s']:.2f} s")
        print(f"load_default_model() from cache: median {result['median_load_s']:.2f} s, "
              f"max {result['max_load_s']:.2f} s (target < 3 s)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
