"""``keep_freed_memory``: a freed large tensor's pages serve the next one, counted in page
faults against glibc's defaults, in a fresh process each."""

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from sparse_circuits.memory import OPT_OUT

PAGES = (64 << 20) // 4096
"""4 KiB pages of the 64 MiB tensor the child process allocates, touches and frees again."""

CHILD = """
import resource, statistics
import torch
from sparse_circuits.memory import keep_freed_memory

applied = keep_freed_memory()
faults = []
for _ in range(12):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    tensor = torch.ones(16 << 20)
    tensor.sum()
    del tensor
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(applied, statistics.median(faults[4:]))  # once the heap has grown to hold it
"""


def median_faults(env_value: str | None) -> tuple[bool, float]:
    """Whether the child kept freed memory, and its median page faults per tensor."""
    env = {**os.environ, OPT_OUT: env_value} if env_value is not None else None
    out = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    return out[0] == "True", float(out[1])


GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")
HUGE_PAGES_ALWAYS = THP.is_file() and "[always]" in THP.read_text()
"""Transparent huge pages for every mapping: a fresh 64 MiB block faults in 2 MiB at a time."""


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc")
def test_freed_tensor_pages_are_reused():
    applied, faults = median_faults(None)
    assert applied
    assert faults < PAGES // 20  # its pages were mapped already


@pytest.mark.skipif(not GLIBC or HUGE_PAGES_ALWAYS, reason="glibc's malloc, 4 KiB pages")
def test_opt_out_leaves_glibc_mapping_fresh_memory():
    applied, faults = median_faults("0")
    assert not applied
    assert faults > PAGES // 2  # glibc's default: a fresh mmap, faulted in page by page
