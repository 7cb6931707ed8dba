"""The classification-head variant (`hwlib.head`) on tiny-random: plumbing only, its labels mean nothing."""

import numpy as np
import pytest
import torch

from hwlib.config import train_config
from hwlib.evaluate import EvalError, generate, score
from hwlib.head import HEAD_MODULE, is_classifier
from hwlib.models import load_adapter
from hwlib.train import build_trainer, train


@pytest.fixture(scope="module")
def head_run(tmp_path_factory, data_dir):
    output = tmp_path_factory.mktemp("head") / "run"
    return train(train_config("smoke", head="classify", output_dir=str(output), data_dir=str(data_dir)))


def test_only_lora_on_k_and_v_and_the_whole_head_train(tmp_path, data_dir):
    config = train_config("smoke", head="classify", output_dir=str(tmp_path / "run"), data_dir=str(data_dir))
    trainer = build_trainer(config)
    trainable = [name for name, p in trainer.model.named_parameters() if p.requires_grad]
    lora = [name for name in trainable if "lora_" in name]
    head = [name for name in trainable if "lora_" not in name]
    assert lora and all(any(f".{m}." in name for m in config.target_modules) for name in lora)
    assert head and all(f"{HEAD_MODULE}." in name for name in head)  # peft's SEQ_CLS copy of the head, kept whole
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters() if p.requires_grad)
    head_layer = trainer.model.get_base_model().score
    assert "4bit" not in type(getattr(head_layer, "modules_to_save", {"x": head_layer})["default"]).__name__
    example = trainer.train_dataset[0]
    assert isinstance(example["labels"], int) and example["labels"] in (0, 1, 2)


def test_a_head_run_scores_through_its_head_as_trained_and_merged(head_run, data_dir):
    from hwlib.data import load_split

    texts = load_split("validation", data_dir)["text"][:16]
    model, tokenizer = load_adapter(head_run)
    assert is_classifier(model)
    labels, probs = score(model, tokenizer, texts, progress=False)
    merged_labels, merged_probs = score(*load_adapter(head_run, merged=True), texts, progress=False)
    assert np.allclose(probs.sum(axis=1), 1) and set(labels) <= {"negative", "neutral", "positive"}
    assert np.abs(probs - merged_probs).max() < 0.02  # bf16 rounding in the 4-bit path (tests/test_models.py)
    with pytest.raises(EvalError, match="writes no text"):
        generate(model, tokenizer, texts[:2], progress=False)
