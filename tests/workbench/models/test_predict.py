import numpy as np
import pytest
import torch

from workbench.errors import ConfigurationError
from workbench.models import model_summary, next_token_topk

pytestmark = pytest.mark.model


def test_topk_matches_a_direct_softmax(default_model):
    model, tok = default_model
    text = "The capital of France is"
    top = next_token_topk(model, tok, text, k=10)
    with torch.no_grad():
        logits = model(torch.tensor([tok.encode(text)])).logits[0, -1]
    probs = torch.softmax(logits.double(), -1)
    expected = torch.topk(probs, 10)
    assert top.ids.tolist() == expected.indices.tolist()
    np.testing.assert_allclose(top.probs, expected.values.numpy(), rtol=1e-4)
    assert top.tokens[0] == " Paris"
    assert np.all(np.diff(top.probs) <= 0)
    assert 0 < top.entropy < np.log2(model.config.vocab_size)
    assert [row["rank"] for row in top.rows()] == list(range(1, 11))


def test_different_text_gives_different_predictions(default_model):
    model, tok = default_model
    a = next_token_topk(model, tok, "def main():\n    ", k=5)
    b = next_token_topk(model, tok, "Once upon a", k=5)
    assert a.ids.tolist() != b.ids.tolist()
    assert b.tokens[0] == " time"


def test_empty_text_conditions_on_bos(default_model):
    model, tok = default_model
    top = next_token_topk(model, tok, "", k=3)
    assert top.n_context == 1 and len(top.ids) == 3


def test_bad_arguments(default_model):
    model, tok = default_model
    with pytest.raises(ConfigurationError, match="k must be"):
        next_token_topk(model, tok, "x", k=0)
    with pytest.raises(ConfigurationError, match="text must be a str"):
        next_token_topk(model, tok, b"bytes", k=3)


def test_model_summary(default_model):
    summary = model_summary(default_model[0])
    assert summary["layers"] == 30 and summary["KV heads"] == 3
    assert 130e6 < summary["parameters"] < 140e6
