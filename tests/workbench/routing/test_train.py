"""Training the tiny MoE: data splits, balance losses against the numpy metrics, smoke runs of every variant, the
bias moving toward balance, the package's public names, and ``workbench moe``. The specialization measure is
tested in test_specialization.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from workbench.cli import main
from workbench.errors import RoutingError
from workbench.routing import load_balancing_loss
from workbench.routing.tiny_moe import (
    ASSETS_DIR,
    VARIANTS,
    TinyMoE,
    TinyMoEConfig,
    load_tiny_moe,
    load_tiny_moe_tokenizer,
)
from workbench.routing.train import (
    DOMAIN_OF,
    DOMAINS,
    TokenData,
    balance_loss,
    evaluate_held_out,
    read_report,
    source_texts,
    train_tiny_moe,
    train_tokenizer,
    train_variants,
    variant_config,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tiny_moe_tokenizer()


@pytest.fixture(scope="module")
def data(tokenizer):
    return TokenData.from_tokenizer(tokenizer)


def _tiny(vocab_size: int) -> TinyMoEConfig:
    return TinyMoEConfig(vocab_size=vocab_size, d_model=32, n_layers=2, n_heads=2, n_experts=4, top_k=2,
                         d_expert=32, context=32)


# ------------------------------------------------------------------------------------------------ data


def test_splits_are_disjoint_and_cover_every_domain():
    train, held = source_texts("train"), source_texts("heldout")
    assert set(train) == set(held) == set(DOMAIN_OF)
    for tag in DOMAIN_OF:
        if tag not in ("prose_en", "code"):
            assert not set(held[tag][0].split("\n\n")) & set(train[tag][0].split("\n\n"))
    assert held["prose_en"][0] and held["prose_en"][0] not in train["prose_en"][0]
    with pytest.raises(RoutingError, match="split"):
        source_texts("test")


def test_shipped_tokenizer_is_what_train_tokenizer_makes(tokenizer):
    fresh = train_tokenizer()
    assert fresh.n_vocab == tokenizer.n_vocab
    assert fresh.merges == tokenizer.merges


def test_token_data_has_every_domain(data, tokenizer):
    counts = data.domain_tokens("train")
    assert set(counts) == set(DOMAINS) and min(counts.values()) > 5000
    assert max(int(s.max()) for s in data.train.values()) < tokenizer.n_vocab


# ------------------------------------------------------------------------------------------------ losses


@pytest.mark.parametrize("scope", ["micro", "global"])
def test_balance_loss_matches_numpy_metric(scope):
    rng = np.random.default_rng(0)
    n_layers, groups, per, e, k = 2, 3, 10, 4, 2
    logits = torch.tensor(rng.normal(size=(n_layers, groups * per, e)) * 2, dtype=torch.float32)
    experts = torch.topk(logits, k, dim=-1).indices
    got = float(balance_loss(logits, experts, groups, scope))
    want = np.mean([load_balancing_loss(logits[i].numpy(), experts[i].numpy(), from_logits=True, scope=scope,
                                        micro_batches=groups) for i in range(n_layers)])
    assert got == pytest.approx(want, rel=1e-5)
    if scope == "micro":  # micro >= global: per-micro-batch imbalance cannot cancel out
        assert got >= float(balance_loss(logits, experts, groups, "global")) - 1e-6


def test_balance_loss_unknown_scope():
    with pytest.raises(RoutingError, match="scope"):
        balance_loss(torch.zeros(1, 4, 2), torch.zeros(1, 4, 1, dtype=torch.long), 2, "sequence")


# ------------------------------------------------------------------------------------------------ training


@pytest.mark.parametrize("variant", VARIANTS)
def test_smoke_training_reduces_loss(variant, data, tokenizer):
    cfg = variant_config(variant, steps=12, micro_batch=2, model=_tiny(tokenizer.n_vocab), warmup=2, lr=1e-2)
    seen = []
    result = train_tiny_moe(cfg, data, progress=seen.append)
    h = result.history
    assert [p.done for p in seen] == list(range(1, 13)) and seen[-1].stage == variant and seen[-1].total == 12
    assert set(seen[-1].detail) == {"loss", "lm_loss", "balance_loss", "max_violation_global", "max_violation_micro"}
    assert h["lm_loss"][-3:].mean() < h["lm_loss"][:3].mean() - 0.3
    assert (h["balance_loss"] > 0).all() == (variant != "bias")
    ev = evaluate_held_out(result.model, data, max_windows=2)
    assert 1 < ev.perplexity < tokenizer.n_vocab * 2
    assert set(ev.perplexity_by_domain) == set(DOMAINS)
    assert ev.domain.distributions.shape == (2, len(DOMAINS), 4)
    assert len(ev.language.groups) == len(DOMAIN_OF)


def test_same_seed_gives_same_run(data, tokenizer):
    cfg = variant_config("micro", steps=2, micro_batch=1, model=_tiny(tokenizer.n_vocab))
    a, b = train_tiny_moe(cfg, data), train_tiny_moe(cfg, data)
    np.testing.assert_array_equal(a.history["loss"], b.history["loss"])


def test_bias_moves_toward_balance(data, tokenizer):
    # start with experts 0 and 1 taking every token; lr 0 freezes the weights, so only the bias can even out
    # the loads, one bias_rate step per training step
    cfg = variant_config("bias", steps=30, micro_batch=2, model=_tiny(tokenizer.n_vocab), lr=0.0,
                         bias_rate=0.01)
    init = TinyMoE(cfg.model)
    init.reset_parameters(seed=0)
    start = np.array([0.3, 0.3, 0.0, 0.0], np.float32)
    for block in init.blocks:
        block.moe.bias.copy_(torch.from_numpy(start))
    result = train_tiny_moe(cfg, data, init=init)
    mv = result.history["max_violation_global"]
    assert mv[0] == pytest.approx(1.0)  # loads [N, N, 0, 0]
    assert mv[-5:].mean() < 0.3
    bias = result.model.biases
    assert (bias[:, :2] < 0.3).all() and (bias[:, 2:] > 0).all()
    np.testing.assert_allclose(np.round((bias - start) / 0.01), (bias - start) / 0.01, atol=1e-3)
    np.testing.assert_array_equal(init.biases, np.tile(start, (2, 1)))  # init itself is untouched


def test_train_variants_writes_checkpoints_and_report(tmp_path, tokenizer):
    report = train_variants(["global", "bias"], out=tmp_path, steps=2, tokenizer=tokenizer, micro_batch=1,
                            eval_windows=1, model=_tiny(tokenizer.n_vocab))
    on_disk = read_report(tmp_path)
    assert list(on_disk["variants"]) == ["global", "bias"] == list(report["variants"])
    for v in ("global", "bias"):
        model = load_tiny_moe(v, path=tmp_path)
        assert model.variant == v and model.config.d_model == 32
        assert on_disk["variants"][v]["bytes"] == (tmp_path / f"tiny_moe_{v}.safetensors").stat().st_size
    assert (tmp_path / "tokenizer.json").is_file()
    assert "global_sharper_than_micro" not in on_disk["comparison"]
    with pytest.raises(RoutingError, match="exist"):
        train_variants(["global"], out=tmp_path, steps=1, tokenizer=tokenizer, model=_tiny(tokenizer.n_vocab))
    # adding a variant keeps the others in the report
    train_variants(["micro"], out=tmp_path, steps=1, tokenizer=tokenizer, micro_batch=1, eval_windows=1,
                   model=_tiny(tokenizer.n_vocab))
    assert list(read_report(tmp_path)["variants"]) == list(VARIANTS)
    with pytest.raises(RoutingError, match="unknown variant"):
        variant_config("switch")


def test_shipped_report_is_consistent():
    report = read_report()
    assert list(report["variants"]) == list(VARIANTS)
    for v, entry in report["variants"].items():
        m = entry["metrics"]
        assert (ASSETS_DIR / entry["checkpoint"]).stat().st_size == entry["bytes"]
        assert 1 < m["perplexity"] < 2000 and 0 <= m["specialization_bits"] <= np.log2(8)
        assert entry["train"]["variant"] == v
    assert isinstance(report["comparison"]["global_sharper_than_micro"], bool)


# ------------------------------------------------------------------------------------------------ package


def test_the_package_keeps_the_public_names_of_the_old_module():
    # workbench.routing.train was one module; its pieces live in data/config/loop/evaluation/report/variants and
    # workbench.routing.specialization, and every public name is still importable from the package (evaluate is
    # evaluate_held_out now: one name per meaning across the labs)
    import workbench.routing.specialization
    import workbench.routing.train as train

    names = {"DOMAINS", "DOMAIN_OF", "HELD_OUT_PASSAGES", "REPORT_FILE", "REPORT_FORMAT", "TOKENIZER_FILE",
             "DomainSampler", "Evaluation", "Specialization", "TokenData", "TrainConfig", "TrainProgress",
             "TrainResult", "balance_loss", "compare_variants", "evaluate_held_out", "format_report", "format_variant",
             "heldout_windows", "read_report", "source_texts", "specialization", "train_tiny_moe",
             "train_tokenizer", "train_variants", "variant_config"}
    assert set(train.__all__) == names and all(hasattr(train, n) for n in names)
    assert callable(train.evaluate_held_out) and callable(train.specialization)  # the functions, not their modules
    assert train.specialization is workbench.routing.specialization.specialization


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_moe_train_and_info(tmp_path, capsys):
    out = tmp_path / "run"
    tok = str(ASSETS_DIR / "tokenizer.json")
    rc = main(["moe", "train", "--variant", "global", "--steps", "3", "--out", str(out), "--tokenizer", tok,
               "--quiet", "--threads", "1", "--micro-batch", "1", "--eval-windows", "2"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "global:" in text and "held-out ppl" in text
    assert (out / "tiny_moe_global.safetensors").is_file()
    assert main(["moe", "info", "--dir", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["variants"]["global"]["train"]["steps"] == 3 and "global" in info["load_ms"]
    assert info["variants"]["global"]["train"]["micro_batch"] == 1
    # a second run into the same folder refuses to overwrite
    assert main(["moe", "train", "--variant", "global", "--steps", "1", "--out", str(out), "--tokenizer", tok,
                 "--quiet"]) == 2
    assert "exist" in capsys.readouterr().err


def test_cli_moe_info_shipped(capsys):
    assert main(["moe", "info"]) == 0
    text = capsys.readouterr().out
    for v in VARIANTS:
        assert f"{v}:" in text
    assert "specialization" in text and "perplexity by domain" in text
