"""The prompt every training example shares, computed once per batch: TRL's `SFTTrainer` with `compute_loss` replaced.

This course's speed-up, optional (`TrainConfig.shared_prefix`): the loss and gradients equal the plain path's up to
float rounding (tests/test_train.py), and lesson 03 checks it on one batch.
"""

from __future__ import annotations

import logging

log = logging.getLogger("hwlib.train")

MIN_SHARED_PREFIX = 8  # tokens; below this the extra forward pass costs more than it saves


def shared_prefix_length(input_ids, attention_mask, labels) -> int:
    """Leading tokens every row of a batch shares (the system prompt and chat markup), all real and all outside the
    loss, keeping at least one token of each row; 0 when there is nothing worth sharing."""
    if input_ids.shape[0] < 2:
        return 0
    same = (input_ids == input_ids[:1]).all(dim=0) & attention_mask.bool().all(dim=0)
    length = int(same.long().cumprod(0).sum())
    length = min(length, int(attention_mask.sum(dim=1).min()) - 1)
    ignored = (labels[:, : length + 1] == -100).all(dim=0)
    length = min(length, int(ignored.long().cumprod(0).sum()) - 1)  # the first label stays predictable
    return length if length >= MIN_SHARED_PREFIX else 0


def make_shared_prefix_trainer(base):
    """`base` (TRL's SFTTrainer) with a `compute_loss` that runs the batch's common prefix once.

    Every example starts with the same ~55 tokens (system prompt, chat markup). Here they go through the model once,
    as a batch of one, with gradients (the LoRA weights on k_proj/v_proj shape their keys and values); the keys and
    values are shared by every row through a broadcast cache, and only each row's own tokens are computed. The loss
    and the LoRA gradients equal the plain path's up to float rounding (`tests/test_train.py`). TRL computes the loss
    and its metrics as usual, on the rows' own tokens. Batches without a common prefix take the plain path.
    """
    import torch

    class SharedPrefixSFTTrainer(base):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if isinstance(model, torch.nn.parallel.DistributedDataParallel):
                shared, why = None, "data-parallel training (DDP must see the whole forward pass)"
            else:
                shared = shared_prefix_inputs(model, inputs)
                why = f"the rows share no prefix of {MIN_SHARED_PREFIX}+ tokens"
            if shared is None:
                told = self.__dict__.setdefault("_fallbacks_logged", set())
                if why not in told:
                    log.info("shared prefix not used: %s; computing the rows whole", why)
                    told.add(why)
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            return super().compute_loss(model, shared, return_outputs, num_items_in_batch)

    return SharedPrefixSFTTrainer


def shared_prefix_inputs(model, inputs: dict) -> dict | None:
    """The batch rewritten to start after its shared prefix, with the prefix's keys and values (computed here, once,
    with gradients) as a cache broadcast to every row; None when the rows share no usable prefix."""
    import torch
    from transformers import DynamicCache

    input_ids, mask, labels = inputs["input_ids"], inputs.get("attention_mask"), inputs.get("labels")
    if mask is None or labels is None or set(inputs) - {"input_ids", "attention_mask", "labels"}:
        return None  # padding-free batches, or inputs this path does not know: leave them alone
    prefix = shared_prefix_length(input_ids, mask, labels)
    if not prefix:
        return None
    decoder = model.get_base_model().get_decoder() if hasattr(model, "get_base_model") else model.get_decoder()
    cached = decoder(input_ids=input_ids[:1, :prefix], use_cache=True).cache
    rows = input_ids.shape[0]
    cache = DynamicCache([(layer[0].expand(rows, -1, -1, -1), layer[1].expand(rows, -1, -1, -1)) for layer in cached])
    width = input_ids.shape[1] - prefix
    positions = torch.arange(prefix, prefix + width, device=input_ids.device).unsqueeze(0).expand(rows, -1)
    return {"input_ids": input_ids[:, prefix:], "attention_mask": mask, "labels": labels[:, prefix:],
            "position_ids": positions, "cache": cache}


