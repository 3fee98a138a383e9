"""Train the tiny MoE (`tiny_moe`) on the shipped corpora and measure how its experts specialise by domain.

Data. Seven training domains, each a group of tagged sources (a tag is a corpus or a language of the
parallel text): ``english`` (prose_en + parallel en), ``code``, ``latin`` (de es fr it pt tr vi),
``cyrillic_greek`` (ru uk el), ``arabic_hebrew`` (ar fa he), ``indic_thai`` (hi th), ``cjk`` (zh ja ko).
Held out: the last 5 % of the prose, the last 10 % of every code file's lines, the last 4 of the 32 parallel
passages in every language.

Steps. One training step is one global batch of one micro-batch per domain (``micro_batch`` windows of
``context`` tokens each), so every micro-batch is single-domain, as happens when a data-parallel rank reads
one document stream. The variants differ only in how the experts are kept balanced:

=======  =================================================================================================
variant  balancing
=======  =================================================================================================
micro    Switch loss ``E * sum_i f_i P_i`` computed inside each micro-batch and averaged (the usual
         data-parallel implementation: each domain must use every expert evenly)
global   the same loss with ``f_i`` and ``P_i`` over the whole global batch (Qiu et al. 2025, "Demons in the
         Detail": only the mix of domains must be balanced, so a domain may keep its favourite experts)
bias     no balance loss: sigmoid gate whose per-expert selection bias moves by ``bias_rate * sign(mean -
         load)`` after every step (DeepSeek-V3's auxiliary-loss-free balancing, `routers.update_bias`)
=======  =================================================================================================

The whole global batch runs as one forward pass; the micro/global difference lives only in how the balance
loss groups the tokens, which gives exactly the gradients of gradient accumulation over the micro-batches.

Measurement (`evaluate_held_out`): held-out windows of every tag -> perplexity per domain, a `RoutingTrace`, and
`specialization`: per layer, each domain's distribution of expert slots and the mutual information between
domain and expert (mean KL of each domain's distribution to the domains' average, in bits).

Modules: ``data`` (the domains, the split, the tokenizer, token streams and windows), ``config`` (`TrainConfig`,
`variant_config`), ``loop`` (`train_tiny_moe`, `balance_loss`), ``evaluation`` (`evaluate_held_out`), ``report`` (reading
and printing ``tiny_moe.json``), ``variants`` (`train_variants`); `specialization` is
`workbench.routing.specialization`. Every public name is importable from this package.

Example::

    report = train_variants(steps=5, out="run", show_progress=True)   # the CLI: workbench moe train --steps 5
    report["variants"]["global"]["metrics"]["specialization_bits"]
"""

from workbench.routing.specialization import Specialization, specialization
from workbench.routing.train.config import TrainConfig, variant_config
from workbench.routing.train.data import (
    DOMAIN_OF,
    DOMAINS,
    HELD_OUT_PASSAGES,
    DomainSampler,
    TokenData,
    heldout_windows,
    source_texts,
    train_tokenizer,
)
from workbench.routing.train.evaluation import Evaluation, evaluate_held_out
from workbench.routing.train.loop import TrainProgress, TrainResult, balance_loss, train_tiny_moe
from workbench.routing.train.report import (
    REPORT_FILE,
    REPORT_FORMAT,
    TOKENIZER_FILE,
    compare_variants,
    format_report,
    format_variant,
    read_report,
)
from workbench.routing.train.variants import train_variants

__all__ = [
    "DOMAINS", "DOMAIN_OF", "HELD_OUT_PASSAGES", "REPORT_FILE", "REPORT_FORMAT", "TOKENIZER_FILE", "DomainSampler",
    "Evaluation", "Specialization", "TokenData", "TrainConfig", "TrainProgress", "TrainResult", "balance_loss",
    "compare_variants", "evaluate_held_out", "format_report", "format_variant", "heldout_windows", "read_report",
    "source_texts", "specialization", "train_tiny_moe", "train_tokenizer", "train_variants", "variant_config",
]
