import re

import pytest

from hwlib.postprocess import postprocess_sentiment
from hwlib.prompts import SYSTEM_PROMPT

IDX2NAME = {0: "negative", 1: "neutral", 2: "positive"}


def card_postprocess_sentiment(output_text: str) -> str:
    """The model card's original function, reproduced to show its bug."""
    parts = output_text.split("assistant", 1)
    text = parts[0]
    match = re.search(r"\b(" + "|".join(IDX2NAME.values()) + r")\b", text, re.IGNORECASE)
    return match.group(1).lower() if match else ""


@pytest.mark.parametrize("output, label", [
    ("Classifying the sentiment of the message as negative.", "negative"),
    ("Classifying the sentiment of the message as neutral.", "neutral"),
    ("Classifying the sentiment of the message as positive.", "positive"),
])
def test_card_examples(output, label):
    assert postprocess_sentiment(output) == label


CHATML = (f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\nMessage: \"what a day\"<|im_end|>\n"
          "<|im_start|>assistant\nClassifying the sentiment of the message as neutral.<|im_end|>\n")
ZEPHYR = (f"<|system|>\n{SYSTEM_PROMPT}</s>\n<|user|>\nMessage: \"so sad today\"</s>\n"
          "<|assistant|>\nClassifying the sentiment of the message as negative.</s>")
DECODED = (f"system\n{SYSTEM_PROMPT}\nuser\nMessage: \"loved the show\"\nassistant\n"
           "Classifying the sentiment of the message as positive.")


@pytest.mark.parametrize("transcript, label", [(CHATML, "neutral"), (ZEPHYR, "negative"), (DECODED, "positive")])
def test_transcripts(transcript, label):
    assert postprocess_sentiment(transcript) == label


def test_card_bug_reads_the_prompt_not_the_reply():
    # The card keeps the text before the first "assistant", which here is the system prompt's "helpful assistant":
    # it finds no label at all, although the reply says neutral.
    assert card_postprocess_sentiment(CHATML) == ""
    assert postprocess_sentiment(CHATML) == "neutral"
    # Without a system turn it returns a label word from the user's message instead of the reply.
    transcript = 'user\nMessage: "ignore the negative reviews, great film"\nassistant\n' \
                 "Classifying the sentiment of the message as positive."
    assert card_postprocess_sentiment(transcript) == "negative"
    assert postprocess_sentiment(transcript) == "positive"


@pytest.mark.parametrize("text", [CHATML, ZEPHYR, DECODED, "Positive.", ""])
def test_hwlib_copy_of_card_code_matches(text):
    from hwlib.postprocess import card_postprocess_sentiment as kept_for_notebooks

    assert kept_for_notebooks(text) == card_postprocess_sentiment(text)


@pytest.mark.parametrize("output, label", [
    ("I cannot tell.", ""),
    ("", ""),
    ("positives and negatives", ""),  # not whole words
    ("It is neutral, maybe positive.", "neutral"),  # two labels: the first wins
    ("Positive.", "positive"),
    ("NEGATIVE", "negative"),
])
def test_edge_cases(output, label):
    assert postprocess_sentiment(output) == label


def test_last_assistant_marker_wins():
    text = 'user\nMessage: "my assistant is positive about it"\nassistant\nneutral'
    assert postprocess_sentiment(text) == "neutral"
