"""The one device rule: which compute dtype each kind of hardware gets, and the Trainer flags that follow."""

import dataclasses

import pytest
import torch

from hwlib import config
from hwlib.config import PROFILE_NOTES, PROFILES, compute_dtype


@pytest.fixture
def fresh_rule(monkeypatch):
    """Clear the cached answers so each test sees the hardware it patches."""
    monkeypatch.delenv(config.DTYPE_ENV, raising=False)
    config.compute_dtype.cache_clear()
    config.device.cache_clear()
    yield monkeypatch
    config.compute_dtype.cache_clear()
    config.device.cache_clear()


def pretend_gpu(monkeypatch, capability: tuple[int, int], emulated_bf16: bool = True):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: capability)
    # What misled the old rule: torch counts emulated bf16 as supported on pre-Ampere GPUs.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: emulated_bf16)


@pytest.mark.parametrize("name, capability, expected", [
    ("T4 (Turing)", (7, 5), torch.float16),
    ("V100 (Volta)", (7, 0), torch.float16),
    ("A100 (Ampere)", (8, 0), torch.bfloat16),
    ("L4 (Ada)", (8, 9), torch.bfloat16),
    ("H100 (Hopper)", (9, 0), torch.bfloat16),
])
def test_gpu_dtype_rule(fresh_rule, name, capability, expected):
    pretend_gpu(fresh_rule, capability)
    assert compute_dtype() == expected, name


@pytest.mark.parametrize("capability, bf16, fp16", [((7, 5), False, True), ((8, 0), True, False)])
def test_trainer_flags_and_4bit_dtype_follow_the_rule(fresh_rule, capability, bf16, fp16):
    import bitsandbytes  # noqa: F401  (imported before torch.cuda is patched: it probes the CUDA runtime)
    from transformers import BitsAndBytesConfig  # noqa: F401

    from hwlib.models import quantization_config
    from hwlib.train import precision_flags

    pretend_gpu(fresh_rule, capability)
    assert precision_flags() == {"bf16": bf16, "fp16": fp16}  # what sft_config passes to the Trainer
    assert quantization_config("nf4").bnb_4bit_compute_dtype == compute_dtype()


def test_cpu_rule_and_override(fresh_rule):
    fresh_rule.setattr(torch.cuda, "is_available", lambda: False)
    fresh_rule.setattr(config, "cpu_has_fast_bf16", lambda: False)
    assert compute_dtype() == torch.float32
    config.compute_dtype.cache_clear()
    fresh_rule.setenv(config.DTYPE_ENV, "float16")
    assert compute_dtype() == torch.float16


def test_every_profile_says_why_and_how_long():
    """Why from PROFILE_NOTES; how long, for a profile that ships a run, read from that run's record."""
    from hwlib.runs import read_run, shipped_adapter
    from hwlib.train import profile_note

    assert set(PROFILE_NOTES) == set(PROFILES)
    assert "estimate" in PROFILE_NOTES["gpu"].lower()
    record = read_run(shipped_adapter("cpu"))
    assert f"{record['wall_time_s'] / 60:.1f} min of training, {record['steps']} steps" in profile_note("cpu")
    assert "machine class not recorded" in profile_note("cpu")  # the shipped record predates machine()


def test_gpu_profiles_carry_the_improved_recipe_and_keep_the_cards(fresh_rule, capsys):
    """`gpu` uses the recipe chosen on validation (not the card's); `gpu-card` is the card's exactly, on all rows."""
    from hwlib.__main__ import main
    from hwlib.config import TrainConfig

    improved, gpu, card = PROFILES["cpu"], PROFILES["gpu"], PROFILES["gpu-card"]
    for setting in ("sampling", "lr_scheduler", "warmup_ratio", "lora_r", "lora_alpha"):
        assert gpu[setting] == improved[setting], setting
    card_defaults = TrainConfig()
    assert card["train_size"] is None and card["model"] == "tinyllama-1.1b"
    assert not set(card) & {"learning_rate", "lr_scheduler", "lora_r", "lora_alpha", "target_modules", "epochs",
                            "batch_size"}, "the card's recipe is the TrainConfig defaults"
    assert (card_defaults.learning_rate, card_defaults.lora_r, card_defaults.batch_size) == (5e-4, 8, 12)
    fresh_rule.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["profiles"]) == 0
    shown = capsys.readouterr().out
    for name in ("gpu", "gpu-card"):
        assert f"\n{name}\n  {PROFILE_NOTES[name]}" in "\n" + shown  # no shipped run: the note alone
        assert "estimate" in PROFILE_NOTES[name]


def test_every_setting_has_a_sentence_that_help_shows(capsys):
    from hwlib.__main__ import main
    from hwlib.config import EvalConfig, TrainConfig

    for cls, command in ((TrainConfig, "train"), (EvalConfig, "evaluate")):
        for field in dataclasses.fields(cls):
            assert len(field.metadata.get("help", "")) > 10, f"{cls.__name__}.{field.name} has no help sentence"
        with pytest.raises(SystemExit):
            main([command, "--help"])
        shown = " ".join(capsys.readouterr().out.split())
        skipped = {"output_dir", "profile"} if command == "train" else set()
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in skipped
                   and " ".join(f.metadata["help"].split()[:4]) not in shown]
        assert not missing, f"{command} --help lacks the sentence of {missing}"
