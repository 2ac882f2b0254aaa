"""caldb: the calibration database that picks, explains and remembers every calibration."""

from ccdflow.caldb.database import AddResult, CalDB, CaldbError
from ccdflow.caldb.selection import NoCalibrationError, Receipt

__all__ = ["AddResult", "CalDB", "CaldbError", "NoCalibrationError", "Receipt"]
