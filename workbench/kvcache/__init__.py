"""KV-cache lab core: capture real attention (`capture` -> `KVTrace`), replay eviction and selection policies
(`replay` -> `Retention`), and measure quality with the real model (`evaluate` -> `Quality`, `passkey_probe`)."""

from workbench.kvcache.capture import capture, capture_ids
from workbench.kvcache.capture_runner import CaptureRunner, default_capture_runner
from workbench.kvcache.evaluate import (
    PasskeyResult,
    Quality,
    QualitySweep,
    evaluate,
    passkey_probe,
    quality_sweep,
)
from workbench.kvcache.policies import (
    POLICY_NAMES,
    SPECS,
    describe_policy,
    make_policy,
)
from workbench.kvcache.policy_base import Policy, resolve_budget
from workbench.kvcache.replay import Retention, compare_policies, replay
from workbench.kvcache.trace import KVTrace, model_signature

__all__ = [
    "POLICY_NAMES", "SPECS", "KVTrace", "PasskeyResult", "Quality", "QualitySweep", "capture_ids", "evaluate",
    "passkey_probe", "quality_sweep", "CaptureRunner", "Policy", "Retention", "capture", "compare_policies",
    "default_capture_runner", "describe_policy", "make_policy", "model_signature", "replay", "resolve_budget",
]
