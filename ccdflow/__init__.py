"""ccdflow: instrument signature removal for CCD/CMOS frames, with a calibration database."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ccdflow")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
