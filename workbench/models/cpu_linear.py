"""Linear layers of a decoding pass on the CPU: oneDNN with each weight packed once.

PyTorch's x86 builds run ``F.linear`` through MKL, which handles the few-row products of decoding badly on this
project's reference machine (AMD EPYC, 2 cores): one row goes to a GEMV on one core, 2-16 rows to a GEMM that packs
the whole weight on every call. oneDNN with the weight reordered once into its blocked layout
(``torch.ops.mkldnn._reorder_linear_weight`` + ``_linear_pointwise``: what ``torch.compile``'s CPU freezing pass
emits) streams it on both cores for any row count. The 30 layers x 7 linears of SmolLM2-135M, ms:

=====  ========  =========  ===============
rows   F.linear  ``W@x^T``  oneDNN, packed
=====  ========  =========  ===============
1      27.1      17.9 (*)   17.6
4      39.0      13.2       13.8
8      35.3      44.6       19.2
16     44.2      41.0       22.8
256    305.7     -          137.7
=====  ========  =========  ===============

(*) one row padded to two. A whole verification pass of 16 draft tokens now costs 1.3x a plain step (was 3.3x),
and a prefill half as much. The sums are the same products in another order: results agree with ``F.linear`` to
float32 rounding (about 1e-6 relative), not bit for bit.

`cpu_linears(model, n_rows)` swaps this in for every ``nn.Linear`` of the model for the duration of one forward
pass (float32 weights on the CPU; a no-op otherwise). The packed weights are cached per module (re-packed when a
weight is replaced or changed in place) and take as much memory again as the weights (~520 MB for SmolLM2-135M; packing them takes 1-2.5 s).
Where oneDNN is missing, passes of at most `MAX_ROWS` rows use `linear_rows` (``W @ x^T``, MKL streaming the weight
once) and longer ones ``F.linear``.

Example::

    with cpu_linears(model, n_rows=3):
        h = layer(h, ...)
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator

#: Without oneDNN, up to this many rows use the weight-on-the-left product (faster than ``F.linear`` for 1..16).
MAX_ROWS = 16
#: Row counts the weight-on-the-left product computes as more rows, because MKL is faster for those (1 row 22 ms
#: vs 2 rows 11.6 ms; 3 rows 15.0 vs 4 rows 12.1; 11-15 rows 37-62 ms vs 16 rows 31 ms)
PAD_TO = {1: 2, 3: 4, 11: 16, 12: 16, 13: 16, 14: 16, 15: 16}

_PACKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # nn.Linear -> (weight key, packed, forward)
_PACK_LOCK = threading.Lock()


def linear_rows(x, weight, bias=None):
    """``F.linear(x, weight, bias)`` computed as ``weight @ x^T`` (x [..., in] -> [..., out], float32 on the CPU)."""
    import torch

    shape = x.shape
    rows = x.reshape(-1, shape[-1]).contiguous()  # x^T must be a transposed view: a column-major copy is 3x slower
    n = rows.shape[0]
    padded = PAD_TO.get(n, n)
    if padded > n:   # a few more (copied) rows are cheaper than MKL's kernel for this row count
        rows = torch.cat([rows, rows[:1].expand(padded - n, -1)])
    out = torch.matmul(weight, rows.T)[:, :n]
    out = out.T.contiguous()  # row-major like F.linear: attention kernels want a unit stride on the last dim
    if bias is not None:
        out = out + bias
    return out.reshape(*shape[:-1], weight.shape[0])


def onednn_available() -> bool:
    """Whether this PyTorch build runs a packed oneDNN linear (checked once, on a tiny product)."""
    ok = getattr(onednn_available, "ok", None)
    if ok is None:
        import torch

        try:
            w = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 7
            x = torch.arange(8, dtype=torch.float32).reshape(2, 4) / 5
            packed = torch.ops.mkldnn._reorder_linear_weight(w, None)
            got = torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")
            ok = bool(torch.backends.mkldnn.is_available()) and torch.allclose(got, x @ w.T, atol=1e-5)
        except (AttributeError, RuntimeError, NotImplementedError):
            ok = False
        onednn_available.ok = ok
    return ok


def packed_weight(module):
    """``module.weight`` in oneDNN's blocked layout, packed on first use and cached (re-packed if the weight changed)."""
    return _packed_entry(module)[1]


def _packed_entry(module) -> tuple:
    """``(weight key, packed weight, forward)`` of ``module``, made once per weight version."""
    import torch

    w = module.weight
    key = (w.data_ptr(), w._version, id(module.bias))
    entry = _PACKED.get(module)
    if entry is None or entry[0] != key:
        with _PACK_LOCK:
            packed = torch.ops.mkldnn._reorder_linear_weight(w.detach(), None)
            out_features, bias = w.shape[0], module.bias

            def forward(x):
                return linear_packed(x, packed, out_features, bias)

            entry = (key, packed, forward)
            _PACKED[module] = entry
    return entry


def linear_packed(x, packed, out_features: int, bias=None):
    """``F.linear(x, weight, bias)`` through oneDNN with ``packed = packed_weight(...)`` (x [..., in] -> [..., out])."""
    import torch

    shape = x.shape
    y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, shape[-1]), packed, bias, "none", [], "")
    return y.reshape(*shape[:-1], out_features)


def _linears(model) -> list:
    cached = getattr(model, "_workbench_linears", None)
    if cached is None:
        import torch

        cached = [m for m in model.modules() if type(m) is torch.nn.Linear]
        model._workbench_linears = cached
    return cached


@contextlib.contextmanager
def cpu_linears(model, n_rows: int) -> Iterator[None]:
    """Every float32 ``nn.Linear`` of ``model`` on the CPU computes through oneDNN with packed weights inside the
    block (without oneDNN: `linear_rows` for passes of at most `MAX_ROWS` rows, else unchanged)."""
    import torch

    if model.device.type != "cpu":
        yield
        return
    modules = [m for m in _linears(model) if m.weight.dtype == torch.float32]
    onednn = onednn_available()
    if not onednn and n_rows > MAX_ROWS:
        yield
        return
    for m in modules:
        m.forward = _packed_entry(m)[2] if onednn else _rows_forward(m)
    try:
        yield
    finally:
        for m in modules:
            m.__dict__.pop("forward", None)


def _rows_forward(module):
    def forward(x):
        return linear_rows(x, module.weight, module.bias)

    return forward
