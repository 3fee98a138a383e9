"""``W @ x^T`` linears for few-token passes: the same products as ``F.linear`` (to float32 rounding), a row-major
result, and the swap undone after the block."""

import pytest

torch = pytest.importorskip("torch")

from workbench.models.small_linear import MAX_ROWS, linear_rows, small_linears  # noqa: E402


@pytest.mark.parametrize("rows", [1, 2, 3, 5, 12, 16])
@pytest.mark.parametrize("bias", [False, True])
def test_linear_rows_equals_f_linear(rows, bias):
    g = torch.Generator().manual_seed(rows)
    w = torch.randn(96, 64, generator=g)
    b = torch.randn(96, generator=g) if bias else None
    x = torch.randn(1, rows, 64, generator=g)
    got = linear_rows(x, w, b)
    want = torch.nn.functional.linear(x, w, b)
    assert got.shape == want.shape and got.is_contiguous()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # a transposed (column-major) input gives the same result
    xt = x[0].T.contiguous().T[None]
    torch.testing.assert_close(linear_rows(xt, w, b), want, rtol=1e-5, atol=1e-5)


def test_small_linears_swaps_in_and_out():
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    model.device = torch.device("cpu")      # what a transformers model exposes
    x = torch.randn(1, 3, 8)
    with torch.no_grad():
        want = model(x)
        with small_linears(model, 3):
            assert all("forward" in m.__dict__ for m in model if isinstance(m, torch.nn.Linear))
            got = model(x)
        with small_linears(model, MAX_ROWS + 1):   # a long pass (a prefill) keeps F.linear
            assert not any("forward" in m.__dict__ for m in model)
    assert not any("forward" in m.__dict__ for m in model)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
