"""Tokenization: pre-tokenizers, byte-level BPE training (merge-identical to HF tokenizers), fast encoding
(id-identical to tiktoken / HF tokenizers), tokenizer files (tokenizer.json, .tiktoken, GPT-2, GGUF), training
variants (SuperBPE, BoundlessBPE, Scaffold-BPE), alternative encoders, metrics and training-mixture inference.

>>> from workbench.tokenization import train_bpe, load_tokenizer
>>> tok = train_bpe("the cat sat on the mat", vocab_size=260)
>>> tok.decode(tok.encode("the mat"))
'the mat'
"""

from workbench.tokenization.boundless import BoundlessMerge, BoundlessTokenizer, train_boundless
from workbench.tokenization.compare import CompressionCurve, compression_curve
from workbench.tokenization.io import load_tokenizer
from workbench.tokenization.metrics import MetricTable, TextMetrics, metric_table, text_metrics, token_premium
from workbench.tokenization.mixture import MixtureEstimate, infer_mixture, infer_mixture_details
from workbench.tokenization.pretokenize import PATTERNS, PRETOKENIZERS, split_bytes, split_text
from workbench.tokenization.scaffold import (
    ScaffoldReport,
    ScaffoldTokenizer,
    find_scaffold_tokens,
    scaffold_encode,
    train_scaffold_bpe,
)
from workbench.tokenization.segmenters import METHODS, compare_encoders, encode_with
from workbench.tokenization.superbpe import is_superword, train_superbpe
from workbench.tokenization.tokenizer import Encoding, Tokenizer
from workbench.tokenization.trainer import TrainingProgress, TrainingStats, train_bpe
from workbench.tokenization.writers import save_tokenizer

__all__ = [
    "METHODS", "PATTERNS", "PRETOKENIZERS", "BoundlessMerge", "BoundlessTokenizer", "CompressionCurve", "Encoding",
    "MetricTable", "MixtureEstimate", "ScaffoldReport", "ScaffoldTokenizer", "TextMetrics", "Tokenizer",
    "TrainingProgress", "TrainingStats", "compare_encoders", "compression_curve", "encode_with", "find_scaffold_tokens",
    "infer_mixture", "infer_mixture_details", "is_superword", "load_tokenizer", "metric_table", "save_tokenizer",
    "scaffold_encode", "split_bytes", "split_text", "text_metrics", "token_premium", "train_boundless", "train_bpe",
    "train_scaffold_bpe", "train_superbpe",
]
