"""Linears of a decoding pass on the CPU: oneDNN with packed weights and the ``W @ x^T`` fallback compute
``F.linear`` (to float32 rounding) for every row count, give a row-major result, re-pack a changed weight, and the
swap is undone after the block."""

import pytest

torch = pytest.importorskip("torch")

from workbench.models import cpu_linear  # noqa: E402
from workbench.models.cpu_linear import (  # noqa: E402
    MAX_ROWS,
    cpu_linears,
    linear_packed,
    linear_rows,
    onednn_available,
    packed_weight,
)

needs_onednn = pytest.mark.skipif(not onednn_available(), reason="this PyTorch build has no oneDNN linear")


def _case(rows, bias, seed=0):
    g = torch.Generator().manual_seed(rows + seed)
    w = torch.randn(96, 64, generator=g)
    b = torch.randn(96, generator=g) if bias else None
    x = torch.randn(1, rows, 64, generator=g)
    return x, w, b


@pytest.mark.parametrize("rows", [1, 2, 3, 5, 12, 16])
@pytest.mark.parametrize("bias", [False, True])
def test_linear_rows_equals_f_linear(rows, bias):
    x, w, b = _case(rows, bias)
    got = linear_rows(x, w, b)
    want = torch.nn.functional.linear(x, w, b)
    assert got.shape == want.shape and got.is_contiguous()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # a transposed (column-major) input gives the same result
    xt = x[0].T.contiguous().T[None]
    torch.testing.assert_close(linear_rows(xt, w, b), want, rtol=1e-5, atol=1e-5)


@needs_onednn
@pytest.mark.parametrize("rows", [1, 2, 3, 7, 16, 17, 300])
@pytest.mark.parametrize("bias", [False, True])
def test_linear_packed_equals_f_linear(rows, bias):
    x, w, b = _case(rows, bias)
    lin = torch.nn.Linear(64, 96, bias=bias)
    with torch.no_grad():
        lin.weight.copy_(w)
        if bias:
            lin.bias.copy_(b)
    with torch.no_grad():   # as in the runner's passes
        got = linear_packed(x, packed_weight(lin), 96, lin.bias)
    want = torch.nn.functional.linear(x, w, b)
    assert got.shape == want.shape and got.is_contiguous() and got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # exact float64 products: oneDNN's float32 sums are as close to them as MKL's
    exact = (x.double() @ w.double().T + (0 if b is None else b.double())).float()
    assert float((got - exact).abs().max()) < 1e-4


@needs_onednn
def test_packed_weight_is_cached_and_repacked_when_the_weight_changes():
    lin = torch.nn.Linear(8, 4, bias=False)
    first = packed_weight(lin)
    assert packed_weight(lin) is first
    x = torch.randn(2, 8)
    with torch.no_grad():
        lin.weight.mul_(2.0)                      # in place: a new version of the same storage
    torch.testing.assert_close(linear_packed(x, packed_weight(lin), 4), x @ lin.weight.T, rtol=1e-5, atol=1e-5)
    lin.weight = torch.nn.Parameter(torch.randn(4, 8))   # replaced
    torch.testing.assert_close(linear_packed(x, packed_weight(lin), 4), x @ lin.weight.T, rtol=1e-5, atol=1e-5)
    # the module's forward inside `cpu_linears` follows a replaced bias too
    lin.bias = torch.nn.Parameter(torch.ones(4))
    lin.device = torch.device("cpu")
    with torch.no_grad(), cpu_linears(lin, 2):
        torch.testing.assert_close(lin(x), x @ lin.weight.T + 1, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("onednn", [True, False])
def test_cpu_linears_swaps_in_and_out(onednn, monkeypatch):
    if onednn and not onednn_available():
        pytest.skip("this PyTorch build has no oneDNN linear")
    monkeypatch.setattr(cpu_linear.onednn_available, "ok", onednn)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    model.device = torch.device("cpu")      # what a transformers model exposes
    x = torch.randn(1, 3, 8)
    with torch.no_grad():
        want = model(x)
        with cpu_linears(model, 3):
            assert all("forward" in m.__dict__ for m in model if isinstance(m, torch.nn.Linear))
            got = model(x)
        with cpu_linears(model, MAX_ROWS + 1):   # a long pass (a prefill): oneDNN, or F.linear without it
            assert any("forward" in m.__dict__ for m in model) == onednn
            long_got = model(torch.randn(1, MAX_ROWS + 1, 8))
    assert long_got.shape == (1, MAX_ROWS + 1, 4)
    assert not any("forward" in m.__dict__ for m in model)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_cpu_linears_leaves_other_dtypes_alone():
    model = torch.nn.Sequential(torch.nn.Linear(8, 8).to(torch.bfloat16))
    model.device = torch.device("cpu")
    with cpu_linears(model, 2):
        assert "forward" not in model[0].__dict__
