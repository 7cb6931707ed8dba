"""hwlib's two training speed-ups, in TRL's `SFTTrainer` with `compute_loss` replaced: the prompt every example
shares computed once per batch (`TrainConfig.shared_prefix`), and the LM head projected only where the loss is
(`TrainConfig.loss_positions_only`).

Both are optional: the loss and gradients equal the plain path's up to float rounding (tests/test_train.py), and
lesson 03 checks them on one batch.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager, nullcontext

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


@contextmanager
def loss_positions_only():
    """Inside it, TRL's fused LM head projects only the positions whose label is not -100 on every device.

    TRL (`trl.trainer.utils.add_fused_lm_head`) does so on CUDA/XPU only; elsewhere it projects every position, to
    keep tile shapes fixed for compiled backends. Eager CPU training has no such need, and with ~55 prompt tokens in
    the loss-free part of each row the LM head was a large share of a step. The switch is TRL's own
    (`trl.trainer.utils._use_triton`, read there for this choice only); where a TRL release no longer has it, TRL's
    default path runs, with the same loss. Same loss and gradients either way (`tests/test_train.py`).
    """
    import trl.trainer.utils as fused

    chooser = getattr(fused, "_use_triton", None)
    if chooser is None:
        yield
        return
    fused._use_triton = lambda device: True
    try:
        yield
    finally:
        fused._use_triton = chooser


def make_hwlib_trainer(base, shared_prefix: bool = True, positions_only: bool = True):
    """`base` (TRL's SFTTrainer) with a `compute_loss` that runs the batch's common prefix once (`shared_prefix`) and
    projects the LM head only where the loss is (`positions_only`, `loss_positions_only`).

    Every example starts with the same ~55 tokens (system prompt, chat markup). Here they go through the model once,
    as a batch of one, with gradients (the LoRA weights on k_proj/v_proj shape their keys and values); the keys and
    values are shared by every row through a broadcast cache, and only each row's own tokens are computed. The loss
    and the LoRA gradients equal the plain path's up to float rounding (`tests/test_train.py`). TRL computes the loss
    and its metrics as usual, on the rows' own tokens. Batches without a common prefix take the plain path.
    """
    import torch

    class HwlibSFTTrainer(base):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            with loss_positions_only() if positions_only else nullcontext():
                if not shared_prefix:
                    return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
                if isinstance(model, torch.nn.parallel.DistributedDataParallel):
                    shared, why = None, "data-parallel training (DDP must see the whole forward pass)"
                elif not self.args.completion_only_loss:
                    shared, why = None, "the prompt is in the loss (completion_only_loss=False)"
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

    return HwlibSFTTrainer


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


