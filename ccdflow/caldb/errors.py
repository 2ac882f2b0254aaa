"""caldb errors, in their own module so schema.py and database.py can both raise them."""

from __future__ import annotations

from ccdflow.framework.errors import CcdflowError


class CaldbError(CcdflowError):
    """The caldb itself is unusable (not initialised, too old, unknown id)."""
