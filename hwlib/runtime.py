"""Process-wide speed settings that must be in place before tensors are allocated.

PyTorch on CPU allocates and frees large temporary tensors every step. With glibc's default malloc those
above a dynamic threshold come from fresh `mmap`s and go straight back to the kernel, so each step page-faults
them in again (here ~100,000 minor faults/s and most CPU time in the kernel). Raising the mmap and trim
thresholds keeps the memory in the heap for reuse. `GLIBC_TUNABLES` does the same but must be set before the
process starts; `mallopt` works from inside it, so importing `hwlib` is enough (CLI, notebooks, tests).

mallopt caps the mmap threshold at 32 MB, so mmap is switched off for malloc instead (M_MMAP_MAX=0), and the heap
is only trimmed when more than ~2 GB at its top is free. Memory is bounded by the process's own peak (freed memory is
reused, not returned), measured by `python -m bench training --profile cpu` (peak RSS column). Opt out with
`HWLIB_NO_MALLOC_TUNING=1`.

Also here: the two library notices that say nothing about a user's run are hidden (`quiet_known_notices`), unless
`HWLIB_VERBOSE=1`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import warnings

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's upper bound on 64-bit
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: the largest it accepts; 1 GB still re-faulted ~1 GB a step
TOP_PAD = 64 * 1024 * 1024
DISABLE_ENV = "HWLIB_NO_MALLOC_TUNING"

malloc_tuned = False


def tune_malloc() -> bool:
    """Keep freed memory in the heap instead of returning it to the kernel; True if glibc accepted it."""
    global malloc_tuned
    if malloc_tuned or os.environ.get(DISABLE_ENV) == "1":
        return malloc_tuned
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
        return False
    malloc_tuned = all(
        mallopt(option, value)
        for option, value in (
            (M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD),
            (M_MMAP_MAX, 0),
        )
    )
    return malloc_tuned


VERBOSE_ENV = "HWLIB_VERBOSE"
# (logger, start of the message): notices known to be harmless, each with the reason.
KNOWN_NOTICES = (
    # bitsandbytes on a CPU first tries to fetch an optional faster kernel from the Hugging Face Hub ("kernels-community");
    # offline, or without trust for that repository, it falls back to its own CPU kernel, which computes the same values.
    ("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward"),
)
# transformers deprecated `is_gradient_checkpointing` for `is_activation_checkpointing`; TRL 1.16 still calls the old
# name. Both return the same flag, so nothing about training changes.
KNOWN_WARNINGS = (r".*`is_gradient_checkpointing` is deprecated",)


class _DropKnownNotices(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(record.name == name and record.getMessage().startswith(start) for name, start in KNOWN_NOTICES)


def quiet_known_notices() -> bool:
    """Hide KNOWN_NOTICES and KNOWN_WARNINGS (see the comments there), unless `$HWLIB_VERBOSE` is 1; True if hidden."""
    if os.environ.get(VERBOSE_ENV) == "1":
        return False
    for name in {name for name, _ in KNOWN_NOTICES}:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropKnownNotices) for f in logger.filters):
            logger.addFilter(_DropKnownNotices())
    for message in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=FutureWarning)
    return True
