"""The CPU allocator setting (rlprompt/lm/allocator.py): freed big tensors are reused, not
page-faulted in again."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")

# Make a 64 MiB tensor ten times; count the minor page faults that costs.
_SCRIPT = """
import resource, sys, torch
from rlprompt.lm.allocator import keep_freed_memory
on = keep_freed_memory()
x = torch.ones(16 * 2**20); del x  # warm up: the first one always faults its pages in
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    x = torch.ones(16 * 2**20); del x
print(on, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _run(malloc: str | None) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if k not in ("RLPROMPT_MALLOC", "GLIBC_TUNABLES")}
    if malloc is not None:
        env["RLPROMPT_MALLOC"] = malloc
    out = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    return out[0] == "True", int(out[1])


def test_freed_big_tensors_are_reused_without_page_faults() -> None:
    on, faults = _run(None)
    off, faults_system = _run("system")
    assert on and not off
    pages = 10 * 64 * 2**20 // 4096
    assert faults_system > pages // 2  # the C library's default maps and unmaps each one
    assert faults <= pages // 5  # kept in the heap: reused (at most one more first touch)


def test_load_lm_sets_it_for_a_cpu_model(tiny_dir_lm) -> None:  # noqa: ANN001
    from rlprompt.lm import allocator

    assert tiny_dir_lm.device.type == "cpu"  # loaded through load_lm
    assert allocator._done is (os.environ.get("RLPROMPT_MALLOC", "").strip().lower() != "system")
