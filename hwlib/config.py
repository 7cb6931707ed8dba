"""One typed configuration with the model card's defaults, named profiles, and the one device rule."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

PROFILE_ENV = "HWLIB_PROFILE"
# The folder that holds the `hwlib` package: a clone's root (with data/, notebooks/) when running from a clone or an
# editable install; site-packages after a regular install.
PACKAGE_PARENT = Path(__file__).resolve().parent.parent


class HwlibError(Exception):
    """Base of the errors hwlib raises for bad input; each message names the problem and the fix."""


class ConfigError(HwlibError, ValueError):
    """A setting that cannot work: the message says which and how to fix it."""


def setting(default, help: str):
    """A config field with its one-sentence help (shown by `python -m hwlib train --help` and `evaluate --help`)."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Everything a training run depends on. Defaults are the model card's recipe."""

    model: str = setting("smollm2-135m", "the base model: a preset (smollm2-135m, gemma3-270m, lite-oute-300m, "
                         "tinyllama-1.1b, tiny-random, tiny-random-gemma3) or a local folder or Hub id")
    quantize: str | None = setting("nf4", "4-bit NormalFloat base weights (QLoRA); None trains plain LoRA")
    target_modules: tuple[str, ...] = setting(("k_proj", "v_proj"), "the layers that get a LoRA adapter "
                                              "(comma-separated on the command line)")
    lora_r: int = setting(8, "rank r of each adapter's update B·A")
    lora_alpha: int = setting(16, "the update is scaled by lora_alpha / lora_r")
    lora_dropout: float = setting(0.05, "dropout on the adapter's input during training")
    learning_rate: float = setting(5e-4, "the optimizer's peak learning rate")
    lr_scheduler: str = setting("linear", "how the learning rate decays: linear, cosine, constant, ...")
    warmup_ratio: float = setting(0.0, "share of the steps over which the learning rate rises from 0")
    batch_size: int = setting(12, "training examples per step")
    epochs: float = setting(1.0, "passes over the training rows")
    max_steps: int = setting(-1, "stop after this many steps (> 0; smoke runs); -1 runs the epochs")
    max_length: int = setting(256, "tokens per training conversation; longer ones are cut")
    head: str = setting("generate", "what is trained: generate (the card's answer sentence, by the LM head) or classify "
                        "(a 3-way classification head on the prompt's last token; hwlib.head)")
    completion_only_loss: bool = setting(True, "loss on the answer only (TRL's completion_only_loss); False puts "
                                         "the whole conversation, prompt included, in the loss")
    forged_share: float = setting(0.0, "share of training messages that get a forged answer for another label "
                                  "written into them, keeping their own label (a defence; hwlib.forged)")
    train_size: int | None = setting(None, "training rows drawn from the train split; None uses every row")
    sampling: str = setting("stratified", "how the rows are drawn: stratified (train's class shares) or balanced "
                            "(equal rows per class)")
    seed: int = setting(42, "seed of the sample, the adapter's initialisation and the data order")
    logging_steps: int = setting(5, "record the loss every this many steps")
    save_steps: int = setting(50, "write a checkpoint to resume from every this many steps")
    activation_checkpointing: bool = setting(False, "recompute activations in the backward pass (TRL's default "
                                             "on; a 135M model on a CPU does not need it)")
    group_by_length: bool = setting(True, "batch examples of similar length, so less is padding")
    shared_prefix: bool = setting(True, "compute the prompt every example shares once per batch "
                                  "(hwlib.shared_prefix)")
    loss_positions_only: bool = setting(True, "project the LM head only at the positions in the loss, on every "
                                        "device (TRL does so on CUDA and XPU only; hwlib.shared_prefix)")
    data_dir: str | None = setting(None, "a local data folder; None: $HWLIB_DATA_DIR, the bundled copy, the Hub")
    output_dir: str = setting("runs/default", "the run folder")
    profile: str = setting("custom", "the profile these settings came from (bookkeeping)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class EvalConfig:
    """How predictions are made and reported."""

    method: str = setting("score", "score (the three labels' log-probabilities) or generate (the card's greedy "
                          "decoding and regex)")
    split: str = setting("test", "the split to evaluate: train, validation or test")
    limit: int | None = setting(None, "a seeded stratified sample of this many rows; None: every row")
    batch_size: int = setting(32, "messages per forward pass")
    max_new_tokens: int = setting(16, "the longest reply generate writes")
    seed: int = setting(42, "seed of the sample and the bootstrap")
    examples_per_class: int = setting(2, "example predictions per class kept for the model card")
    generate_limit: int | None = setting(500, "seeded sample for the card's (slower) generate method; 0 or None "
                                         "skips it")
    max_length: int = setting(256, "prompt + message + answer in tokens (the training length); longer messages are "
                              "truncated")
    merged: bool = setting(True, "predict with the NF4 weights dequantized and the adapter merged (same model, "
                           "faster)")
    calibrate: bool = setting(True, "fit per-class offsets on validation, report test raw and calibrated")
    baselines: bool = setting(True, "put the TF-IDF + logistic-regression baseline in the results table")


PROFILES: dict[str, dict] = {
    # Plumbing only: a tiny random model learns nothing about sentiment, its numbers mean nothing.
    "smoke": dict(model="tiny-random", train_size=48, sampling="balanced", batch_size=12, max_steps=4,
                  logging_steps=1, save_steps=2, max_length=512, lora_r=4, lora_alpha=8),
    # The card's recipe on this CPU's budget: SmolLM2-135M, a class-balanced subset of train.
    "cpu-card": dict(model="smollm2-135m", train_size=1800, sampling="balanced", logging_steps=5, save_steps=50),
    # The improved CPU profile: settings chosen on validation (`python -m hwlib search`, `curve`).
    "cpu": dict(model="smollm2-135m", train_size=3000, sampling="balanced", learning_rate=2e-3,
                lr_scheduler="cosine", warmup_ratio=0.1, lora_r=16, lora_alpha=32, logging_steps=5, save_steps=50),
    # A CUDA GPU (Colab's free T4 included): the improved recipe carried to TinyLlama-1.1B (PROFILE_NOTES says why).
    "gpu": dict(model="tinyllama-1.1b", train_size=12000, sampling="balanced", learning_rate=1e-3,
                lr_scheduler="cosine", warmup_ratio=0.1, lora_r=16, lora_alpha=32, logging_steps=25, save_steps=200),
    # The card's recipe exactly as published: TinyLlama-1.1B on the whole train split, lr 5e-4 linear, r=8.
    "gpu-card": dict(model="tinyllama-1.1b", train_size=None, sampling="stratified", logging_steps=25, save_steps=500),
}
# Why each profile exists; `hwlib.train.profile_note` adds what it cost, read from the shipped run's record.
PROFILE_NOTES: dict[str, str] = {
    "smoke": "plumbing only: a 2-layer random model, 4 steps; seconds on any machine, its numbers mean nothing",
    "cpu": "the improved recipe on SmolLM2-135M (3,000 balanced tweets, 250 steps, lr 2e-3 cosine, r=16), chosen on "
           "validation (docs/results.md); a 2-core AVX2 CPU takes about twice the time of an AVX-512 one",
    "cpu-card": "the card's exact recipe on SmolLM2-135M and 1,800 tweets, for the comparison with the improved one",
    "gpu": "the improved recipe carried to TinyLlama-1.1B in 4-bit: 12,000 balanced tweets (1,000 steps of 12), "
           "cosine with 10% warm-up, r=16; lr 1e-3, half the cpu profile's, because the 2e-3 was chosen for 250 steps "
           "on a 135M model, here there are four times the steps on an 8x larger model, and on SmolLM2 the wider "
           "adapter at 1e-3 was as good as at 2e-3. Not yet measured on a GPU: times are estimates (~0.7 s a step on "
           "a T4 from ~5.3 TFLOP a step at ~8 TFLOP/s effective fp16, so ~12 min of training and ~15 min of "
           "evaluation)",
    "gpu-card": "the card's recipe exactly (TinyLlama-1.1B in 4-bit, all 45,615 tweets, 3,802 steps, lr 5e-4 linear, "
                "r=8), to compare with the card's reported macro-F1 0.54. Not yet measured on a GPU: by the same "
                "estimate ~45 min of training on a T4, about 1 hour with evaluation; resumable with --resume",
}
EVAL_PROFILES: dict[str, dict] = {
    "smoke": dict(limit=24, batch_size=8, examples_per_class=1, generate_limit=24, baselines=False),
    "cpu": dict(),
    "cpu-card": dict(),
    "gpu": dict(batch_size=128),
    "gpu-card": dict(batch_size=128),
}


def default_profile() -> str:
    """`$HWLIB_PROFILE` if set, else `gpu` where CUDA is present and `cpu` elsewhere."""
    return os.environ.get(PROFILE_ENV) or ("gpu" if device() == "cuda" else "cpu")


def _check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}")
    if profile.startswith("gpu") and device() != "cuda":
        raise ConfigError(f"profile {profile!r} needs a CUDA GPU and none is visible: use --profile cpu (or smoke)")


def _apply(config, overrides: dict):
    names = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}: valid ones are {', '.join(sorted(names))}")
    return dataclasses.replace(config, **overrides)


def _check_ranges(config, rules: dict[str, tuple]) -> None:
    """Refuse values that cannot work, naming the setting, the value and what it needs."""
    for name, (ok, need) in rules.items():
        value = getattr(config, name)
        if not ok(value):
            raise ConfigError(f"{name}={value!r} cannot work: it must be {need}")


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


TRAIN_RULES = {
    "quantize": (lambda v: v in (None, "nf4"), "'nf4' (QLoRA) or None (plain LoRA)"),
    "lora_r": (_positive_int, "a positive integer"),
    "lora_alpha": (lambda v: isinstance(v, (int, float)) and v > 0, "positive"),
    "lora_dropout": (lambda v: isinstance(v, (int, float)) and 0 <= v < 1, "in [0, 1)"),
    "learning_rate": (lambda v: isinstance(v, (int, float)) and v > 0, "positive"),
    "warmup_ratio": (lambda v: isinstance(v, (int, float)) and 0 <= v < 1, "in [0, 1)"),
    "forged_share": (lambda v: isinstance(v, (int, float)) and 0 <= v < 1, "in [0, 1)"),
    "batch_size": (_positive_int, "a positive integer"),
    "epochs": (lambda v: isinstance(v, (int, float)) and v > 0, "positive"),
    "max_steps": (lambda v: isinstance(v, int) and (v == -1 or v >= 1), "-1 (the whole epoch) or a positive integer"),
    "max_length": (lambda v: _positive_int(v) and v >= 32, "an integer of at least 32 tokens"),
    "train_size": (lambda v: v is None or _positive_int(v), "None (every row) or a positive integer"),
    "sampling": (lambda v: v in ("stratified", "balanced"), "'stratified' or 'balanced'"),
    "head": (lambda v: v in ("generate", "classify"), "'generate' (the card's method) or 'classify'"),
    "logging_steps": (_positive_int, "a positive integer"),
    "save_steps": (_positive_int, "a positive integer"),
    "target_modules": (lambda v: len(v) > 0, "at least one module name, e.g. k_proj,v_proj"),
}
EVAL_RULES = {
    "method": (lambda v: v in ("score", "generate"), "'score' or 'generate'"),
    "split": (lambda v: v in ("train", "validation", "test"), "train, validation or test"),
    "limit": (lambda v: v is None or _positive_int(v), "None (every row) or a positive number of rows"),
    "batch_size": (_positive_int, "a positive number of messages"),
    "max_new_tokens": (_positive_int, "a positive integer"),
    "max_length": (lambda v: _positive_int(v) and v >= 32, "an integer of at least 32 tokens"),
    "generate_limit": (lambda v: v is None or (isinstance(v, int) and v >= 0), "None or 0 (skip) or a row count"),
}


def train_config(profile: str | None = None, **overrides) -> TrainConfig:
    """The profile's training settings (default by hardware) with `overrides` on top.

    Every override given is applied, None included (`quantize=None` trains plain LoRA, `train_size=None` uses every
    row); bad values are refused with the setting's name.
    """
    profile = profile or default_profile()
    _check_profile(profile)
    config = _apply(TrainConfig(profile=profile, output_dir=f"runs/{profile}"), PROFILES[profile])
    config = _apply(config, overrides)
    if isinstance(config.quantize, str) and config.quantize.lower() in ("", "none"):
        config.quantize = None
    if isinstance(config.target_modules, str):
        config.target_modules = tuple(m.strip() for m in config.target_modules.split(",") if m.strip())
    config.target_modules = tuple(config.target_modules)
    if config.output_dir is None:
        raise ConfigError("output_dir=None: give a folder for the run (default runs/PROFILE)")
    _check_ranges(config, TRAIN_RULES)
    return config


def eval_config(profile: str | None = None, **overrides) -> EvalConfig:
    """The profile's evaluation settings with `overrides` on top (None included: `limit=None` means every row)."""
    profile = profile or default_profile()
    _check_profile(profile)
    config = _apply(_apply(EvalConfig(), EVAL_PROFILES[profile]), overrides)
    _check_ranges(config, EVAL_RULES)
    return config


@lru_cache(maxsize=1)
def device() -> str:
    """The one device rule: CUDA when present, else CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has AMX tiles for bf16. With AVX-512 BF16 alone, bf16 matmuls were 2x slower than fp32
    ones on this repo's CPU (torch 2.13, oneDNN), and a training step 1.5x slower, so bf16 is not worth it there."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags


INSTRUCTION_SETS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")  # the CPU features that decide speed and dtype here


def machine() -> dict:
    """The machine class a time was measured on: processor model, cores, the instruction sets that matter here
    (AVX2, AVX-512, AVX-512 BF16, AMX), and the GPU with its compute capability where CUDA is used."""
    import platform

    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    info = {"processor": names[0] if names else (platform.processor() or platform.machine()),
            "cpu_cores": os.cpu_count(), "instruction_sets": [f for f in INSTRUCTION_SETS if f in flags]}
    if device() == "cuda":
        import torch

        info["gpu"] = torch.cuda.get_device_name()
        info["gpu_capability"] = ".".join(map(str, torch.cuda.get_device_capability()))
    return info


DTYPE_ENV = "HWLIB_COMPUTE_DTYPE"


def cuda_has_native_bf16() -> bool:
    """Whether the GPU computes bf16 in hardware (compute capability 8.0, Ampere, or newer).

    `torch.cuda.is_bf16_supported()` alone also counts emulation and says True on a T4 (7.5), where bf16 runs slowly
    or the Trainer refuses it; fp16 is the fast half precision there.
    """
    import torch

    return torch.cuda.get_device_capability() >= (8, 0)


@lru_cache(maxsize=1)
def compute_dtype():
    """bf16 where the hardware runs it natively (Ampere+ GPUs, CPUs with AMX), fp16 on older GPUs, fp32 on other CPUs.

    The same dtype drives the Trainer's bf16/fp16 flags and the 4-bit layers' compute dtype.
    `$HWLIB_COMPUTE_DTYPE` (float32, bfloat16, float16) overrides the rule, e.g. to measure the alternatives.
    """
    import torch

    chosen = os.environ.get(DTYPE_ENV)
    if chosen:
        if chosen not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"{DTYPE_ENV}={chosen!r}: use float32, bfloat16 or float16")
        return getattr(torch, chosen)
    if device() == "cuda":
        return torch.bfloat16 if cuda_has_native_bf16() else torch.float16
    return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32


# Two computations of one quantity that take different paths (a prompt computed once against whole rows, a batch
# against a single message) round differently along the way. In half precision every result is rounded to the
# dtype's significand, so the gap scales with its last place: lesson 04's by-hand label probabilities differed from
# `hwlib.evaluate.score`'s by at most 4.1 units of bf16's last place (0.032) and 3.9 of fp16's (0.0038), over 30 test
# tweets with SmolLM2 and the shipped adapter (`tools/half_precision.py`); twice that is the bound. In fp32 only the
# order of long sums differs, far below it (9.5e-7 on lesson 04's tweet).
HALF_PRECISION_ULPS = 8
FLOAT32_TOLERANCE = 1e-4


def agreement_tolerance(dtype=None, float32: float = FLOAT32_TOLERANCE) -> float:
    """How far two computations of one quantity near 1 (a probability, a loss over its mean) may differ in `dtype`
    (default: the compute dtype): HALF_PRECISION_ULPS units in the last place of 1 in half precision, whose
    `torch.finfo(dtype).eps` is 2^-7 for bf16 (an 8-bit significand) and 2^-10 for fp16 (11 bits); `float32` in fp32."""
    import torch

    dtype = dtype or compute_dtype()
    return float32 if dtype == torch.float32 else HALF_PRECISION_ULPS * torch.finfo(dtype).eps


def dtype_name(dtype) -> str:
    """`torch.bfloat16` as `bfloat16`: how records name a dtype."""
    return str(dtype).removeprefix("torch.")


def cache_dir() -> Path:
    """Where downloaded and converted models live: `$HWLIB_CACHE`, else the user's cache folder."""
    root = os.environ.get("HWLIB_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hwlib"
    return Path(root).expanduser()


__all__ = [
    "ConfigError", "EvalConfig", "PROFILES", "PROFILE_NOTES", "TrainConfig", "cache_dir", "compute_dtype", "default_profile",
    "device", "eval_config", "train_config",
]
