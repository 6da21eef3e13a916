"""The run's ``metrics.jsonl``: one JSON object per training iteration, then the test line."""

import json
import math
from pathlib import Path
from typing import Any

from nip.checkpointing import atomic_write_text


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

    def read(self) -> list[dict[str, Any]]:
        """All complete lines (a torn last line after a crash is ignored)."""
        if not self.path.exists():
            return []
        rows = []
        for line in self.path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return rows

    def num_lines(self) -> int:
        """Number of complete lines."""
        return len(self.read())

    def append(self, row: dict[str, Any]) -> None:
        """Append one line and flush it to disk."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps({k: _jsonable(v) for k, v in row.items()}) + "\n")
            f.flush()

    def truncate(self, num_lines: int) -> None:
        """Keep only the first ``num_lines`` lines (atomically), dropping work to be redone."""
        if not self.path.exists():
            return
        text = self.path.read_text()
        lines = text.splitlines(keepends=True)
        if len(lines) == num_lines and text.endswith("\n"):
            return
        atomic_write_text(self.path, "".join(lines[:num_lines]))
