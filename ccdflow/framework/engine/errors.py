"""Error taxonomy: callers decide what to do by the class, users read the message.

- ``NoWorkError``: nothing to do for this frame (wrong type, step not applicable).
- ``UnprocessableInputError``: the input itself is bad (corrupt file, missing keyword).
- ``MissingCalibrationError``: no calibration of a type the recipe needs matches the frame.
- ``SectionError`` (and ``IlluminatedOverscanError``): a detector section unusable on this frame.
- ``AlgorithmError``: a step failed on valid input (e.g. a fit did not converge).
- ``ConfigError``: the configuration is wrong; fix it and re-run.
- ``PluginError``: a plugin could not be loaded or declared something invalid.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable


class CcdflowError(Exception):
    """Base class of every error ccdflow raises on purpose."""


class NoWorkError(CcdflowError):
    """There is nothing to do for this frame; not a failure."""


class UnprocessableInputError(CcdflowError):
    """The input frame or file cannot be processed as given."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        keyword: str | None = None,
        value: object = None,
        expected: str | None = None,
    ) -> None:
        self.path, self.keyword, self.value, self.expected = path, keyword, value, expected
        parts = [f"{path}: " if path else "", message]
        if keyword is not None:
            parts.append(f" (keyword {keyword}")
            parts.append(f", found {value!r}" if value is not None else ", not present")
            parts.append(f", expected {expected})" if expected else ")")
        super().__init__("".join(parts))


class SectionError(UnprocessableInputError):
    """A detector section cannot be used on this frame: it lies outside the frame or the
    readout window, overlaps the data it should be apart from, or no geometry variant matches
    the frame. ``keyword`` names where the section came from (a header keyword such as BIASSEC,
    or the YAML key such as ``geometry.amplifiers[0].overscan``), ``value`` the section."""


class IlluminatedOverscanError(SectionError):
    """The overscan region's pixels do not look like an overscan (light in it on an exposed
    frame, or a level or noise far from the data area's on a bias): subtracting it would
    subtract light or structure. The message gives the figures (levels, noise, thresholds)."""


class MissingCalibrationError(UnprocessableInputError):
    """No calibration of a type the frame's recipe needs was given or matched the frame.

    The framework's side of the caldb's NoCalibrationError: whoever applies the instrument's
    calibration policy catches it to skip an optional calibration, or adds ``hint`` (the
    instrument YAML line that would make the calibration optional) to a required one's message.
    """

    hint: str | None = None

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text}; {self.hint}" if self.hint else text


class AlgorithmError(CcdflowError):
    """A step failed on input that looked valid."""


class ConfigError(CcdflowError):
    """The configuration is invalid; the message names the source, key and expectation."""


class PluginError(CcdflowError):
    """A plugin failed to load or registered something invalid."""


class DiskFullError(CcdflowError):
    """A write ran out of space or quota: the whole run stops (every later write would fail too),
    and the partial file was removed. Build it with :meth:`in_folder`, which measures what is free."""

    #: errno values that mean "no room": ENOSPC (device full) and EDQUOT (quota exceeded).
    ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})

    def __init__(self, message: str, *, folder: str = "", needed: int | None = None,
                 free: int | None = None) -> None:
        # The message is the only positional argument, so the error pickles (Dask) as it is.
        super().__init__(message)
        self.folder, self.needed, self.free = folder, needed, free

    @classmethod
    def in_folder(cls, folder: str | object, *, needed: int | None = None, what: str = "",
                  at_least: bool = False) -> DiskFullError:
        """The error for ``folder``: ``needed`` bytes (``at_least``: a lower bound), free now."""
        import shutil

        try:
            free: int | None = shutil.disk_usage(str(folder)).free
        except OSError:
            free = None
        need = "" if needed is None else f"{'more than ' if at_least else ''}{needed:,} bytes needed"
        have = "" if free is None else f"{free:,} bytes free"
        detail = ", ".join(p for p in (need, have) if p)
        target = f" writing {what}" if what else ""
        return cls(f"no space left in {folder}{target}" + (f" ({detail})" if detail else "")
                   + ": free some space (or use another folder) and run again",
                   folder=str(folder), needed=needed, free=free)


class CalibrationChangedError(CcdflowError):
    """A calibration file's bytes differ from the checksum its caldb record holds: it was
    changed after it was registered, so applying it would make products whose provenance lies.
    Never retried silently; ``ccdflow caldb verify`` lists every such file."""


def did_you_mean(names: str | Iterable[str], known: Iterable[str]) -> str:
    """``"; did you mean 'dark'?"`` for the closest known name to (each of) ``names``, or ``""``:
    one wording for every unknown step, instrument and calibration type."""
    import difflib

    pool = sorted(known)
    close = [c[0] for n in ([names] if isinstance(names, str) else names)
             if (c := difflib.get_close_matches(n, pool, n=1, cutoff=0.6))]
    return f"; did you mean {', '.join(repr(c) for c in dict.fromkeys(close))}?" if close else ""

