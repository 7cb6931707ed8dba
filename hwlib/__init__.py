"""hwlib: QLoRA fine-tuning of a small chat LLM to classify tweet sentiment (TweetEval)."""

from .runtime import tune_malloc

__version__ = "0.1.0"

tune_malloc()

