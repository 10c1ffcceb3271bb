"""Process-level settings that make CPU training faster; the pipeline's scripts apply them.

Importing vqbet changes nothing in the process: a library that imports our tokenizer keeps its own
allocator. `retain_freed_memory` is called by scripts/train.py and scripts/eval.py (config key
`retain_freed_memory`, on by default).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3


def retain_freed_memory(mmap_threshold_mb: int = 256, trim_threshold_mb: int = 1024) -> bool:
    """Keep freed blocks of up to `mmap_threshold_mb` in the C heap for reuse (glibc only).

    Why: glibc serves every allocation above its mmap threshold (128 KB, rising as blocks are freed
    to at most 32 MB) with a fresh `mmap` and unmaps it on free, and gives freed memory at the top
    of the heap back to the system beyond its trim threshold, so new activations, image batches
    and distance matrices are zero-filled by the kernel page by page on first touch (a
    PushT-from-pixels run took ~117 million minor page faults). With the blocks kept, a step reuses
    warm memory (benchmarks/bench_policy.py's allocator row measures the difference). Freed memory
    above `trim_threshold_mb` at the top of the heap is still returned to the system.

    Returns True when applied, False where the C library is not glibc (macOS, musl): nothing
    changes there. Process-wide and irreversible for the process, so only entry-point scripts call it.
    """
    if not 0 < mmap_threshold_mb <= trim_threshold_mb < 2048:  # mallopt takes a C int of bytes
        raise ValueError(
            f"retain_freed_memory: need 0 < mmap_threshold_mb <= trim_threshold_mb < 2048, "
            f"got {mmap_threshold_mb} and {trim_threshold_mb}"
        )
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only
    except (OSError, AttributeError):
        return False
    trim = libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(trim_threshold_mb << 20))
    mmap = libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(mmap_threshold_mb << 20))
    return bool(trim) and bool(mmap)
