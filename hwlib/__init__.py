"""hwlib: QLoRA fine-tuning of a small chat LLM to classify tweet sentiment (TweetEval)."""

import os
import sys

from .runtime import tune_malloc

__version__ = "0.1.0"

tune_malloc()


def _one_line_errors(kind, error, traceback, _default=sys.excepthook):
    """Uncaught hwlib input errors print as one line (`HWLIB_TRACEBACK=1` shows the traceback)."""
    from .config import HwlibError

    if isinstance(error, HwlibError) and os.environ.get("HWLIB_TRACEBACK") != "1":
        print(f"hwlib: error: {error}", file=sys.stderr)
    else:
        _default(kind, error, traceback)


sys.excepthook = _one_line_errors
