"""Token Workbench: compute side (no UI imports here).

Subpackages: ``data`` (corpora), ``models`` (real models, offline), ``tokenization``, ``routing``,
``speculative``, ``kvcache``; ``cli`` is the ``workbench`` command.
"""

from workbench.errors import WorkbenchError

__version__ = "0.1.0"
__all__ = ["WorkbenchError", "__version__"]
