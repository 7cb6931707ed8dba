"""Label extraction from generated text: the model card's `postprocess_sentiment`, with its bug fixed."""

from __future__ import annotations

import re

ASSISTANT_MARKER = "assistant"
_LABEL_WORD = re.compile(r"\b(negative|neutral|positive)\b", re.IGNORECASE)


def postprocess_sentiment(output_text: str) -> str:
    """The first whole word negative/neutral/positive of the assistant's reply, lowercased; "" when none.

    A whole transcript (ChatML `<|im_start|>assistant`, Zephyr `<|assistant|>`, or decoded text with the
    special tokens stripped) is cut after its *last* "assistant" marker, so the labels named in the system
    prompt are never read. The card's code kept the text before the first marker instead.
    """
    reply = output_text.rpartition(ASSISTANT_MARKER)[2]
    match = _LABEL_WORD.search(reply)
    return match.group(1).lower() if match else ""


def card_postprocess_sentiment(output_text: str) -> str:
    """The model card's original code, kept only to show its bug: it reads the text *before* "assistant"."""
    text = output_text.split(ASSISTANT_MARKER, 1)[0]
    match = _LABEL_WORD.search(text)
    return match.group(1).lower() if match else ""
