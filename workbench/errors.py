"""The project's exception classes.

Every bad input a user can give raises a subclass of :class:`WorkbenchError` whose message says what was wrong
and what to do about it. Where a built-in category fits, the class also subclasses it (``ValueError``,
``FileNotFoundError`` ...) so existing ``except`` clauses keep working.
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base class of every error the workbench raises on purpose."""


class ModelNotFoundError(WorkbenchError, FileNotFoundError):
    """A model (the default one or a user-given path) is not installed or not where it was said to be."""


class ModelLoadError(WorkbenchError, RuntimeError):
    """A model file exists but could not be loaded (corrupt, unsupported architecture ...)."""


class CorpusError(WorkbenchError, ValueError):
    """A corpus path or corpus name is wrong, missing or unreadable."""


class CorpusNotFoundError(CorpusError, FileNotFoundError):
    """A corpus path does not exist."""


class ConfigurationError(WorkbenchError, ValueError):
    """An option or parameter has a value the workbench cannot use."""


class ServeError(WorkbenchError, RuntimeError):
    """The dashboard server could not start (port in use, bad address ...)."""


class TokenizerError(WorkbenchError, ValueError):
    """A tokenizer was asked something it cannot do (an id out of range, an unknown pretokenizer ...)."""


class TokenizerFileError(TokenizerError):
    """A tokenizer file is missing, corrupt, truncated, or of an unsupported kind."""


class TrainingError(WorkbenchError, ValueError):
    """BPE training was given an input it cannot train on (empty corpus, vocabulary too small ...)."""


class KVCacheError(WorkbenchError, ValueError):
    """A KV-cache capture, replay or evaluation was given an input it cannot use (empty text, a budget <= 0 or
    larger than the context, a window larger than the context, a text longer than the model's context ...)."""


class TraceMismatchError(KVCacheError):
    """A KV trace or retention was used with a model or text other than the one it was captured from."""


class RoutingError(WorkbenchError, ValueError):
    """A MoE router, balance metric or routing trace was given an input it cannot use (NaN/inf logits, k larger
    than the number of experts or below 1, a capacity factor <= 0, an empty batch, arrays of mismatched shapes,
    an unreadable or existing trace file ...)."""


class ModelError(WorkbenchError, ValueError):
    """The model runner was given an input it cannot use (an empty prompt, a text longer than the model's context,
    a token id outside the vocabulary, a malformed tree of new tokens, ``commit`` of nodes that were not extended ...)."""


class SpeculativeError(WorkbenchError, ValueError):
    """Speculative decoding was given an input it cannot use (an empty prompt, ``max_new_tokens`` <= 0, a budget or
    depth <= 0, an acceptance vector outside [0, 1], a negative temperature, a malformed draft tree, a drafter that
    proposed ids outside the vocabulary, an unreadable or existing run file ...)."""


class DistributedError(WorkbenchError, RuntimeError):
    """Work on a Dask cluster cannot run: the ``distributed`` extra is missing, the scheduler cannot be reached, or
    the workers cannot see a path the client gave."""
