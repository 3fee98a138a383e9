"""What every benchmark does with its result: progress lines on stdout unless ``--json``, then the result saved
under benchmarks/results/ and printed as one JSON line (the last line of the output)."""

import json
import os
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def quiet_if(json_only: bool) -> None:
    """With ``--json``, silence the progress lines (restored by `emit`)."""
    if json_only:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - closed with the process; JSON goes to the real stdout


def emit(result: dict, name: str, *, quick: bool, save: bool = True) -> None:
    """Save ``result`` as ``results/<name>[_quick].json`` (unless ``save`` is False) and print it as one JSON line."""
    if save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{name}{'_quick' if quick else ''}.json").write_text(json.dumps(result, indent=1) + "\n")
    sys.stdout = sys.__stdout__
    print(json.dumps(result))
