"""Keep the memory of freed large tensors in the process, so the next one does not fault it in.

glibc's ``malloc`` serves every block above its mmap threshold (which it raises to at most
32 MiB) with a fresh ``mmap`` and gives it back to the kernel on ``free``; the next tensor of
that size then takes a page fault for each 4 KiB page it touches first. PyTorch's CPU
allocator is ``malloc``. A TopK training step at d_in 576 and 16384 latents makes several
37.7 MB float32 tensors every step (the encoder's and decoder's gradients, temporaries), so
each of them pays its faults again; so does every batch of a model's activations. Measured
on 2 cores of a virtual machine (AVX512-BF16): copying a 37.7 MB tensor into a fresh one takes
13 ms with glibc's defaults and 1.6 ms when freed memory is kept; the activation stream that
feeds training (``benchmarks/precision.py``) runs at 1,031 tokens/s in bfloat16 with the
defaults and 1,903 kept, 527 and 690 in float32 (``tests/test_memory.py`` counts the faults;
``benchmarks/peers.py`` times our training step both ways).

``keep_freed_memory()`` tells glibc to take large blocks from its heap instead of ``mmap``
(``M_MMAP_MAX`` 0; it still maps memory when the heap cannot grow) and to keep up to
``KEPT_BYTES`` of free memory at the heap's top instead of returning it (``M_TRIM_THRESHOLD``):
a freed gradient's pages then serve the next step's, already mapped. The cost is a process that
holds on to memory it freed, up to its peak use. It is called once by the command line, by
``load_model`` and by the dictionary trainer; it changes nothing off glibc (macOS, musl), and
``SPARSE_CIRCUITS_KEEP_FREED_MEMORY=0`` in the environment turns it off. It is process-wide
and stays: a notebook or server that calls ``load_model`` or trains keeps it for the rest of
its life, and memory freed below a live block is not returned (a freed 256 MiB tensor stayed
resident). Under a preloaded jemalloc or tcmalloc it reaches glibc's unused malloc and does
nothing.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

__all__ = ["KEPT_BYTES", "keep_freed_memory"]

KEPT_BYTES = 1 << 30
"""Free memory at the heap's top that glibc keeps instead of returning it to the kernel."""
OPT_OUT = "SPARSE_CIRCUITS_KEEP_FREED_MEMORY"
"""Environment variable: ``0`` leaves glibc's defaults alone."""

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
"""``mallopt`` parameters (glibc's ``malloc.h``)."""

_done: bool | None = None


def keep_freed_memory() -> bool:
    """Make glibc keep freed large blocks for reuse (once per process); whether it now does."""
    global _done
    if _done is None:
        _done = _apply()
    return _done


def _apply() -> bool:
    if os.environ.get(OPT_OUT, "1") == "0":
        return False
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols: glibc's mallopt
        # mallopt returns 1 on success
        kept = libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, KEPT_BYTES)
    except (OSError, AttributeError):
        return False
    return bool(kept)
