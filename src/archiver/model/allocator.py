"""Keep freed memory in the process for the next allocation (glibc), so that training and latent
optimization do not page-fault their way through fresh activations every step.

torch frees a step's activations (tens of MB each) when the step ends; glibc returns blocks that
large to the kernel (``mmap``) and the next step's allocation comes back zero-filled, page by page.
Raising glibc's mmap and trim thresholds keeps them in the heap for reuse. Measured on the 2-core
machine: fine-tuning the default codec on 16 crops for 38 s made 425 steps instead of 328 (1.30×); an
out-of-place multiply of two 32 MB tensors took 4.0 ms instead of 10.7. The peak memory is the same;
what changes is that the process keeps it after the peak (bounded by that peak).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["keep_freed_memory"]

#: glibc's ``mallopt`` parameters (malloc.h): M_TRIM_THRESHOLD and M_MMAP_THRESHOLD.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: Allocations below this many bytes come from the heap instead of their own mapping: 1 GiB covers
#: every activation of a step (16 crops of 128² at 32 channels: 34 MB; glibc 2.36 accepts it).
MMAP_THRESHOLD = 1 << 30
_done = False


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process (Linux with glibc); elsewhere, or if
    refused, nothing. Returns whether the setting is in effect."""
    global _done
    if _done or not sys.platform.startswith("linux"):
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _done = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        _done = False
    return _done
