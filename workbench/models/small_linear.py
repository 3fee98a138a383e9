"""Linear layers for a few rows on a CPU: ``W @ x^T`` instead of ``x @ W^T``.

Decoding runs every weight matrix of the model against 1-16 new tokens. MKL (the BLAS of PyTorch's x86 CPU
builds) handles ``F.linear(x, W)`` with a few rows poorly: one row goes to a GEMV that streams the weight on one
core, and 2-16 rows to a GEMM that packs the whole weight first (for SmolLM2-135M on 2 cores, 30 layers x 7
linears: 22 ms for 1 row, 31-38 ms for 2-16 rows). Put the weight on the left, ``W @ x^T`` with ``x^T`` a transposed
view, and the same products stream the weight once on every core: 11-12 ms for 1-4 rows, 17-31 ms for 5-16
rows (row counts MKL handles badly are padded with copies of the first row: `PAD_TO`). The sums are the same products in another order: results
agree with ``F.linear`` to float32 rounding (about 1e-5 relative), not bit for bit.

`small_linears(model, n_rows)` swaps this in for every ``nn.Linear`` of the model for the duration of one forward
pass (CPU only, ``n_rows <= MAX_ROWS``; a no-op otherwise).

Example::

    with small_linears(model, n_rows=3):
        h = layer(h, ...)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

#: Up to this many rows the weight-on-the-left product is used (measured faster for every n in 1..16 on 2 cores).
MAX_ROWS = 16
#: Row counts computed as more rows, because MKL is faster for those (30 layers x 7 SmolLM2 linears, 2 cores:
#: 1 row 22 ms vs 2 rows 11.6 ms; 3 rows 15.0 vs 4 rows 12.1; 11-15 rows 37-62 ms vs 16 rows 31 ms)
PAD_TO = {1: 2, 3: 4, 11: 16, 12: 16, 13: 16, 14: 16, 15: 16}


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


def _linears(model) -> list:
    cached = getattr(model, "_workbench_linears", None)
    if cached is None:
        import torch

        cached = [m for m in model.modules() if type(m) is torch.nn.Linear]
        model._workbench_linears = cached
    return cached


@contextlib.contextmanager
def small_linears(model, n_rows: int) -> Iterator[None]:
    """Every ``nn.Linear`` of ``model`` computes as `linear_rows` inside the block, when the model is on the CPU
    and a pass has at most `MAX_ROWS` rows."""
    if n_rows > MAX_ROWS or model.device.type != "cpu":
        yield
        return
    modules = _linears(model)
    for m in modules:
        m.forward = _bound(m)
    try:
        yield
    finally:
        for m in modules:
            m.__dict__.pop("forward", None)


def _bound(module):
    def forward(x):
        return linear_rows(x, module.weight, module.bias)

    return forward
