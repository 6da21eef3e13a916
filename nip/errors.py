"""Exceptions for user mistakes.

The entry points catch these and print one line to stderr with exit code 2; anything else is
a bug and keeps its traceback.
"""


class NipError(Exception):
    """Base class for errors caused by user input rather than by a bug."""


class NipConfigError(NipError):
    """The composed configuration is inconsistent or refers to something that does not exist."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`NipConfigError` with ``message`` (one line) unless ``condition``."""
    if not condition:
        raise NipConfigError(message)


class NipDataError(NipError):
    """A dataset file is missing, unreadable or not in a known dataset format."""


class NipCheckpointError(NipError):
    """A checkpoint is missing, corrupt, or belongs to a different experiment."""


class NipRunError(NipError):
    """A run cannot go on for a reason the user can act on (divergence, a damaged history)."""


class NipInterrupted(NipError):
    """The run stopped on a signal; its exit status is the conventional 128 + signal number."""

    prefix = "nip: "

    def __init__(self, message: str, signum: int, signals: frozenset[int] = frozenset()):
        super().__init__(message)
        self.what_happened = message
        self.exit_code = 128 + signum
        self.signum = signum
        # Every stop signal that had arrived (the entry point decides on a requeue by them).
        self.signals = signals or frozenset({signum})

    def __str__(self) -> str:
        return f"{self.what_happened}; run the same command to resume"
