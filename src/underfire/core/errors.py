"""The exception types every layer of underfire raises, in one place.

Each derives from :class:`UnderfireError` *and* from the built-in exception a caller would
already catch (``ValueError``, ``FileNotFoundError``, ``KeyError``), so code written against
the built-ins keeps working. The CLI turns any :class:`UnderfireError`, ``ValueError``,
``TypeError`` or ``OSError`` raised by a user's input into one line and exit status 2.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "CommandError",
    "DatasetNotFoundError",
    "NonFiniteError",
    "OutputConflictError",
    "OutputLockedError",
    "UnderfireError",
    "UnknownNameError",
]


class UnderfireError(Exception):
    """Base of underfire's own errors; the message says what went wrong and what to do."""


class CheckpointError(UnderfireError, ValueError):
    """A checkpoint file is missing, corrupted, foreign, tampered with or inconsistent."""


class DatasetNotFoundError(UnderfireError, FileNotFoundError):
    """A data set's files are missing or malformed. The message names the files and the fix."""


class UnknownNameError(UnderfireError, KeyError, ValueError):
    """A name that no registry entry has. The message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class OutputLockedError(UnderfireError, RuntimeError):
    """An output directory is held by another live run (its lock file names the holder)."""


class NonFiniteError(UnderfireError, FloatingPointError):
    """A computation produced NaN or infinity (e.g. a diverging training loss)."""


class OutputConflictError(UnderfireError, FileExistsError):
    """An output folder holds a result written by a different run (other command or
    arguments), or one whose run record is damaged; it is replaced only when forced."""


class CommandError(UnderfireError):
    """A user error found by a command (a bad combination of arguments); the CLI prints it
    as one line, without a traceback."""
