"""Server-side time of the speculative decoding lab's interactions that do not re-run the model (budget: 100 ms
each), on a real 96-token SmolLM2 run (suffix drafter on a grounded code task).

Each figure is the median of repeated parameter changes on a live widget (what a slider move triggers on the
server: the core computation plus the new data sources), after one warm-up call.

    python benchmarks/speculative_widgets.py [--json]     # the JSON object is the last line printed
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(action, values, repeats: int = 3) -> float:
    """`tokenizer_widgets.timed` (median ms of repeated changes) after one warm-up call."""
    from tokenizer_widgets import timed as median_ms

    action(values[0])
    return median_ms(action, values, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))

    from widgets.speculative_lab import (
        AcceptanceStrip,
        BuilderCompare,
        DraftTreeView,
        PearlTimeline,
        SpeedupCurve,
    )
    from workbench.models import default_runner
    from workbench.speculative import generate
    from workbench.speculative.costs import runner_verify_costs
    from workbench.speculative.prompts import task_prompts

    runner = default_runner()
    run = generate(task_prompts("grounded")[0].text, chat=True, drafter="suffix", max_new_tokens=96, runner=runner)
    curve = runner_verify_costs(runner)
    other = generate(task_prompts("open")[0].text, chat=True, drafter="recycling", max_new_tokens=96,
                     runner=runner)
    tree = DraftTreeView(run=run)
    compare = BuilderCompare(acceptance=[float(a) for a in other.rank_acceptance(8)], budget=16)
    speed = SpeedupCurve(curve=curve, alpha=0.6)
    strip = AcceptanceStrip(run=run)
    pearl = PearlTimeline(run=run)
    steps = list(range(0, run.n_steps, max(1, run.n_steps // 10)))
    results = {
        "draft_tree_step_slider_ms": timed(lambda s: setattr(tree, "step", s), steps),
        "builder_compare_budget_ms": timed(lambda b: setattr(compare, "budget", b), [4, 8, 16, 24, 32, 48, 64]),
        "builder_compare_builder_ms": timed(lambda n: setattr(compare, "right", n),
                                            ["kary", "chain", "dyspec", "medusa", "eagle2"]),
        "speedup_alpha_slider_ms": timed(lambda a: setattr(speed, "alpha", a), [0.1, 0.3, 0.5, 0.7, 0.9]),
        "acceptance_strip_new_run_ms": timed(lambda r: setattr(strip, "run", r), [other, run]),
        "pearl_steps_ms": timed(lambda n: setattr(pearl, "max_steps", n), [5, 10, 30, 60]),
    }
    out = {"benchmark": "speculative_widgets", "run_steps": run.n_steps, "budget_ms": 100,
           **{k: round(v, 1) for k, v in results.items()}}
    (ROOT / "benchmarks" / "results").mkdir(exist_ok=True)
    (ROOT / "benchmarks" / "results" / "speculative_widgets.json").write_text(json.dumps(out, indent=1) + "\n")
    if not args.json:
        for k, v in results.items():
            print(f"{k:34s} {v:7.1f} ms  {'ok' if v <= 100 else 'OVER BUDGET'}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
