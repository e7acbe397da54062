"""Error types the CLI turns into a one-line ``error:`` message (exit status 2)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PerfmodelError(Exception):
    """Any input the tool refuses: bad config, unknown name, impossible request."""


class ConfigError(PerfmodelError):
    """A model description whose fields are missing, malformed or contradict each other."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class UnknownNameError(PerfmodelError):
    """A name (preset, accelerator, dtype, quantity) not in its registry; suggests close matches."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known = sorted(known)
        close = difflib.get_close_matches(name.lower(), known, n=4, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(known)}"
        super().__init__(f"unknown {kind} {name!r}{hint}")


class PerfmodelWarning(UserWarning):
    """A result given with a caveat the user must see (does not fit, extrapolated)."""


def warn(message: str) -> None:
    """Issue ``message`` as a :class:`PerfmodelWarning` (the CLI prints ``warning: …``)."""
    import warnings

    warnings.warn(message, PerfmodelWarning, stacklevel=2)
