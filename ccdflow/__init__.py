"""ccdflow: instrument signature removal for CCD/CMOS frames, with a calibration database.

From Python::

    import ccdflow
    sci = ccdflow.reduce_frame("raw/sci_001.fits", bias=bias, dark=dark, flat=flat)

``reduce_frame``, ``build_master``, ``CalDB`` and ``run_night`` are loaded on first use (see
docs/api.md), so ``import ccdflow`` and the ``ccdflow`` command stay quick.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("ccdflow")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time, __getattr__ below loads them
    from ccdflow.api.caldb import CalDB as CalDB
    from ccdflow.api.masters import build_master as build_master
    from ccdflow.api.night import run_night as run_night
    from ccdflow.api.reduce import reduce_frame as reduce_frame

#: Public name -> module that defines it.
_LAZY = {"reduce_frame": "ccdflow.api.reduce", "build_master": "ccdflow.api.masters",
         "CalDB": "ccdflow.api.caldb", "run_night": "ccdflow.api.night"}

__all__ = ["CalDB", "__version__", "build_master", "reduce_frame", "run_night"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ccdflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later look-ups do not come back here
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
