"""A run directory's files: ``state.json`` and the per-epoch weight snapshots.

Shared by training (``train.fit``, which writes them) and weight averaging (``train.average``, which reads
them), so that neither module has to import the other for the layout.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

SNAPSHOT_DIR = "snapshots"
_SNAPSHOT = re.compile(r"epoch_(\d+)\.keras$")


class RunState:
    """Reads and writes ``state.json`` in the run directory."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / "state.json"
        self.data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def save(self, **updates: Any) -> None:
        self.data.update(updates)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2))
        tmp.replace(self.path)


def snapshot_path(run_dir: Path, epoch: int) -> Path:
    return run_dir / SNAPSHOT_DIR / f"epoch_{epoch:03d}.keras"


def list_snapshots(run_dir: Path, from_epoch: int = 0) -> dict[int, Path]:
    """Snapshots of a run by epoch (1-based), only those at or after ``from_epoch``."""
    found = {}
    for path in sorted((run_dir / SNAPSHOT_DIR).glob("epoch_*.keras")):
        match = _SNAPSHOT.search(path.name)
        if match and int(match.group(1)) >= from_epoch:
            found[int(match.group(1))] = path
    return found
