"""The classification-head variant: the same base, 4-bit weights and LoRA targets, but a 3-way head on the prompt's
last token trained with cross-entropy on the label (transformers' `...ForSequenceClassification`, peft's `SEQ_CLS`),
instead of generating the card's answer sentence. A comparison, not the card's method (`TrainConfig.head`).

TRL's trainers do not do sequence classification, so this trains with transformers' `Trainer` on the same
arguments as the generative runs (`hwlib.train.training_arguments`).
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from .data import ID2LABEL, LABELS

HEAD_MODULE = "score"  # the head's name in transformers' Llama-family ...ForSequenceClassification


def is_classifier(model) -> bool:
    """Whether `model` ends in a classification head (the `classify` variant) rather than the LM head."""
    return type(model).__name__.endswith("ForSequenceClassification") or (
        hasattr(model, "get_base_model") and type(model.get_base_model()).__name__.endswith("ForSequenceClassification"))


def head_examples(dataset, tokenizer, max_length: int):
    """Tokenized prompts (chat template, generation prompt appended: the answer would start here) and label ids."""
    from datasets import Dataset

    from .prompts import render_prompt

    rows = []
    for text, label in zip(dataset["text"], dataset["label"]):
        ids = tokenizer(render_prompt(tokenizer, text), add_special_tokens=False, truncation=True,
                        max_length=max_length)["input_ids"]
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": int(label)})
    return Dataset.from_list(rows)


def build_head_trainer(config, model, tokenizer, dataset):
    """transformers' `Trainer` with LoRA on the config's modules and a trainable 3-way head (peft's SEQ_CLS keeps
    the head whole and trainable: `modules_to_save`)."""
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from .train import cast_adapter, training_arguments

    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.target_modules), bias="none", task_type="SEQ_CLS")
    model = get_peft_model(model, lora)
    cast_adapter(model, torch.float32)
    return Trainer(model=model, args=TrainingArguments(**training_arguments(config)),
                   train_dataset=head_examples(dataset, tokenizer, config.max_length),
                   data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer)


@torch.inference_mode()
def classify(model, tokenizer, texts: list[str], batch_size: int = 32, progress: bool = True,
             bar=None, share: tuple[int, int] = (0, 1)) -> tuple[list[str | None], np.ndarray]:
    """Label and label probabilities per message from the head's three logits (softmax), shortest prompts first;
    `share` as in `hwlib.evaluate.score`."""
    from .prompts import render_prompt

    device = next(model.parameters()).device
    prompts = [render_prompt(tokenizer, text) for text in texts]
    order = sorted(range(len(texts)), key=lambda i: len(prompts[i]))
    batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)][share[0]::share[1]]
    probs = np.full((len(texts), len(LABELS)), np.nan)
    own_bar = bar is None
    if own_bar:
        bar = tqdm(total=sum(map(len, batches)), desc="classify", unit="tweet", disable=not progress, mininterval=2)
    for batch in batches:
        encoded = tokenizer([prompts[i] for i in batch], padding=True, return_tensors="pt",
                            add_special_tokens=False).to(device)
        logits = model(**encoded).logits.float()
        probs[batch] = torch.softmax(logits, dim=-1).cpu().numpy()
        bar.update(len(batch))
    if own_bar:
        bar.close()
    return [None if np.isnan(p).any() else ID2LABEL[int(p.argmax())] for p in probs], probs
