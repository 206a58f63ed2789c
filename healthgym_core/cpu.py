"""Process settings that speed up training on a CPU without touching its maths."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

# glibc mallopt parameters
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest
TRIM_THRESHOLD = 1 << 30

# BLAS pools numpy and scipy may start: one thread each, as torch in a trial (idle pool threads spin on the core a
# neighbouring trial uses).
SINGLE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@functools.cache
def keep_freed_memory() -> bool:
    """Let glibc serve a step's large tensors from memory the previous step freed, instead of mapping fresh pages
    for each (a page fault per 4 KiB, measured in bench/README.md) and returning them at once. True if it applied
    (glibc); elsewhere nothing changes."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
