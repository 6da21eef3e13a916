"""The run's ``metrics.jsonl``: one JSON object per training iteration, then the test line."""

import errno
import json
import math
from pathlib import Path
from typing import Any

from nip.checkpointing import atomic_write_bytes, no_space_error
from nip.errors import NipRunError


def _jsonable(value: Any) -> Any:
    # JSON has no NaN; null keeps every line parseable by strict readers.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsFile:
    """Append-only JSON-lines metrics with truncation for resumption.

    Parameters
    ----------
    path : Path
        Where the file lives (created on the first append).
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._count: int | None = None  # complete lines, once known

    def read(self, skip_damaged: bool = False) -> list[dict[str, Any]]:
        """All complete lines.

        A torn last line (a crash mid-write: invalid JSON or UTF-8) is ignored; a damaged
        line with complete lines after it is an error, since dropping it and what follows
        would silently lose history, unless ``skip_damaged`` (readers that only display).

        Raises
        ------
        NipRunError
            Naming the file and the damaged line.
        """
        if not self.path.exists():
            return []
        lines = self.path.read_bytes().split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        rows = []
        for number, line in enumerate(lines, start=1):
            try:
                rows.append(json.loads(line.decode("utf-8")))
            except (UnicodeDecodeError, json.JSONDecodeError):
                if number == len(lines) or skip_damaged:
                    continue  # torn by a crash: the work is redone on resume
                raise NipRunError(
                    f"{self.path} line {number} is damaged (not UTF-8 JSON) and complete lines "
                    f"follow it; repair or remove that line to resume"
                ) from None
        return rows

    def num_lines(self) -> int:
        """Number of complete lines (counted once, then kept up to date by this object)."""
        if self._count is None:
            self._count = len(self.read())
        return self._count

    def append(self, row: dict[str, Any]) -> None:
        """Append one line and flush it to disk."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        count = self.num_lines()
        line = json.dumps({k: _jsonable(v) for k, v in row.items()}) + "\n"
        try:
            with self.path.open("a") as f:
                f.write(line)
                f.flush()
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            # A partial line is dropped on resume, like any torn line.
            raise no_space_error(self.path, "its complete lines are intact") from e
        self._count = count + 1

    def truncate(self, num_lines: int) -> None:
        """Keep only the first ``num_lines`` lines (atomically), dropping work to be redone."""
        self._count = None
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        lines = data.splitlines(keepends=True)
        if len(lines) == num_lines and data.endswith(b"\n"):
            return
        atomic_write_bytes(self.path, b"".join(lines[:num_lines]))
