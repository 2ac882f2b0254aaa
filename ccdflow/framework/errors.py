"""Error taxonomy: callers decide what to do by the class, users read the message.

- ``NoWorkError``: nothing to do for this frame (wrong type, step not applicable).
- ``UnprocessableInputError``: the input itself is bad (corrupt file, missing keyword).
- ``AlgorithmError``: a step failed on valid input (e.g. a fit did not converge).
- ``ConfigError``: the configuration is wrong; fix it and re-run.
- ``PluginError``: a plugin could not be loaded or declared something invalid.
"""

from __future__ import annotations


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


class AlgorithmError(CcdflowError):
    """A step failed on input that looked valid."""


class ConfigError(CcdflowError):
    """The configuration is invalid; the message names the source, key and expectation."""


class PluginError(CcdflowError):
    """A plugin failed to load or registered something invalid."""
