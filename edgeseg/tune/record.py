"""The tune's record: one JSON line per measured configuration, keyed by the configuration's
hash (which covers the model and what it is measured against), so a killed tune resumes where
it stopped. Each line is written whole and flushed to disk before the next measurement; a line
cut short by a kill is ignored on reading.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["Record"]


class Record:
    """Measured rows by hash, read from and appended to a JSONL file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a kill
                if isinstance(row, dict) and isinstance(row.get("hash"), str):
                    self.rows[row["hash"]] = row

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def get(self, key: str) -> dict[str, Any] | None:
        return self.rows.get(key)

    def add(self, row: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(row, sort_keys=True, default=str)
        with open(self.path, "a", encoding="utf-8") as f:
            if f.tell() > 0:
                f.write("\n")  # after a cut line too: the new row starts its own line
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        self.rows[row["hash"]] = row
