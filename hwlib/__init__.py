"""hwlib: QLoRA fine-tuning of a small chat LLM to classify tweet sentiment (TweetEval)."""

from .runtime import quiet_known_notices, tune_malloc

__version__ = "0.1.0"

tune_malloc()
quiet_known_notices()

