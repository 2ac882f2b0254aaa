"""retain_freed_memory: freed frame-sized arrays are reused without fresh page faults.

Each case runs in its own interpreter: the allocator setting is process-wide and permanent.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

PROBE = """
import json, resource, sys
import numpy as np
from ccdflow.framework.numerics.memory import retain_freed_memory

retained = retain_freed_memory() if sys.argv[1] == "retain" else False
faults = []
for _ in range(4):  # a 2048x2048 float32 frame, then a float64 plane, as a reduction allocates them
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = np.ones((2048, 2048), np.float32)
    b = a.astype(np.float64) * 2
    del a, b
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"retained": retained, "faults": faults}))
"""

glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                           reason="glibc's mallopt is Linux/glibc only")


def probe(mode: str, **env: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         check=True, env={**os.environ, **env})
    return json.loads(out.stdout)


@glibc
def test_retained_arrays_are_reused_without_page_faults() -> None:
    plain, kept = probe("plain"), probe("retain")
    assert kept["retained"] is True
    # 48 MiB per round; after the first round nothing new is touched (transparent huge pages
    # make the default's count machine-dependent: here 528 faults a round against 0)
    assert max(kept["faults"][1:]) < 50, kept
    assert min(plain["faults"][1:]) > 10 * max(kept["faults"][1:]), (plain, kept)


@glibc
def test_environment_variable_turns_it_off() -> None:
    off, kept = probe("retain", CCDFLOW_RETAIN_MEMORY="0"), probe("retain")
    assert off["retained"] is False
    assert min(off["faults"][1:]) > 10 * max(kept["faults"][1:]), (off, kept)
