"""Shared fixtures: small frames, the plugin manager, and the real data folder."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from ccdflow.framework.frame import FrameMeta
from ccdflow.framework.plugins import get_plugin_manager

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REAL_DATA = SHARED / "data" / "real"


@pytest.fixture
def manager():
    """A freshly loaded plugin manager (entry points re-read)."""
    return get_plugin_manager(reload=True)


@pytest.fixture
def real_data() -> Path:
    if not REAL_DATA.is_dir():
        pytest.skip(f"real data not available: {REAL_DATA} is missing (clone without ../shared)")
    return REAL_DATA


def make_meta(**overrides) -> FrameMeta:
    values = dict(
        path="frame.fits", frame_type="science", instrument="generic", exposure_time=60.0,
        filter="V", date_obs=datetime(2026, 3, 1, 22, tzinfo=UTC), temperature=-20.0,
        shape=(40, 60),
    )
    values.update(overrides)
    return FrameMeta(**values)
