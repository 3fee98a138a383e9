"""Tokenization: pre-tokenizers, byte-level BPE training (merge-identical to HF tokenizers), fast encoding
(id-identical to tiktoken / HF tokenizers), and tokenizer files (tokenizer.json, .tiktoken, GPT-2, GGUF).

>>> from workbench.tokenization import train_bpe, load_tokenizer
>>> tok = train_bpe("the cat sat on the mat", vocab_size=260)
>>> tok.decode(tok.encode("the mat"))
'the mat'
"""

from workbench.tokenization.io import load_tokenizer, save_tokenizer
from workbench.tokenization.pretokenize import PATTERNS, PRETOKENIZERS, split_bytes, split_text
from workbench.tokenization.tokenizer import Encoding, Tokenizer
from workbench.tokenization.trainer import TrainingProgress, TrainingStats, train_bpe

__all__ = [
    "PATTERNS", "PRETOKENIZERS", "Encoding", "Tokenizer", "TrainingProgress", "TrainingStats", "load_tokenizer",
    "save_tokenizer", "split_bytes", "split_text", "train_bpe",
]
