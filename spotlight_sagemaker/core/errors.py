"""Typed errors of the core.

Every error a user can cause (bad data, bad hyperparameter, bad artifact) is a subclass of
:class:`SpotlightError` and of the builtin type a caller would expect (``ValueError``), so adapters
can tell user errors from internal failures without string matching.
"""

from __future__ import annotations


class SpotlightError(Exception):
    """Base class of every error the core raises on purpose."""


class DataError(SpotlightError, ValueError):
    """Interaction data that cannot be used: names the file, line or column at fault."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        column: str | None = None,
    ) -> None:
        self.source = source
        self.line = line
        self.column = column
        where = []
        if source is not None:
            where.append(str(source))
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column!r}")
        prefix = f"{', '.join(where)}: " if where else ""
        super().__init__(prefix + message)


class ArtifactError(SpotlightError, ValueError):
    """A model artifact that is missing, truncated, foreign or of an unsupported format."""


class UnknownIdError(SpotlightError, KeyError):
    """A user or item id the model has never seen, when the caller asked for strictness."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "unknown id"


class HyperparameterError(SpotlightError, ValueError):
    """Hyperparameters that cannot work on this data (e.g. a step or model that would not fit
    in memory); names the values and what to lower."""


class DivergedError(SpotlightError, ArithmeticError):
    """Training produced a non-finite loss or parameters (names the epoch); the model is unusable
    and is never saved."""


class NotFittedError(SpotlightError, RuntimeError):
    """The model is used before ``fit``/``load``."""
