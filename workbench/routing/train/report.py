"""The training report (``tiny_moe.json``): its file names and format, reading it (`read_report`), the headline
comparison of the variants (`compare_variants`) and its text form (`format_variant`, `format_report`)."""

from __future__ import annotations

import json
from pathlib import Path

from workbench.errors import RoutingError
from workbench.routing.tiny_moe import ASSETS_DIR

REPORT_FILE = "tiny_moe.json"
TOKENIZER_FILE = "tokenizer.json"
REPORT_FORMAT = "workbench-tiny-moe-report-1"


def read_report(path=None) -> dict:
    """The training report (config, timings, metrics per variant) in ``path`` (a folder or the JSON file;
    default: the shipped one)."""
    path = Path(path) if path is not None else ASSETS_DIR
    if path.is_dir():
        path = path / REPORT_FILE
    if not path.is_file():
        raise RoutingError(f"no tiny MoE training report at {path}; train with "
                           "`workbench moe train --out DIR`")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RoutingError(f"could not read the training report {path}: {exc}") from exc


def compare_variants(variants: dict) -> dict:
    """Headline comparison from a report's ``variants``: who specialises most, and whether global-batch
    balancing beats micro-batch balancing on specialization (the "Demons in the Detail" prediction)."""
    spec = {v: r["metrics"]["specialization_bits"] for v, r in variants.items()}
    out = {"specialization_bits": spec, "sharpest": max(spec, key=spec.get)}
    if "micro" in spec and "global" in spec:
        ratio = spec["global"] / spec["micro"] if spec["micro"] > 0 else float("inf")
        out["global_over_micro"] = ratio
        out["global_sharper_than_micro"] = bool(spec["global"] > spec["micro"])
    return out


def format_variant(variant: str, entry: dict) -> str:
    """One line of headline figures for a variant's report entry."""
    m = entry["metrics"]
    return (f"{variant:>6}: held-out ppl {m['perplexity']:7.2f} | specialization "
            f"{m['specialization_bits']:.3f} bits by domain, {m['specialization_bits_language']:.3f} by "
            f"language | top-2 share {m['top2_share_domain']:.3f} | MaxVio {m['max_violation']:.3f} overall, "
            f"{m['max_violation_within_domain']:.3f} within a domain | CV {m['load_cv']:.3f} | "
            f"trained in {entry['train_seconds']:.0f} s")


def format_report(report: dict) -> str:
    """The report as a few lines of text (what ``workbench moe train`` / ``moe info`` print)."""
    lines = [format_variant(v, e) for v, e in report["variants"].items()]
    c = report.get("comparison") or compare_variants(report["variants"])
    if "global_sharper_than_micro" in c:
        verdict = "sharper" if c["global_sharper_than_micro"] else "NOT sharper"
        bits = c["specialization_bits"]
        lines.append(f"global-batch balancing gives {verdict} domain specialization than micro-batch "
                     f"balancing ({bits['global']:.3f} vs {bits['micro']:.3f} bits, "
                     f"x{c['global_over_micro']:.2f})")
    return "\n".join(lines)
