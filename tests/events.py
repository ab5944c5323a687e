"""Reading the daemon's JSON-lines event file from tests."""

from __future__ import annotations

import json
import time
from pathlib import Path


def wait_for_event(events: Path, predicate, timeout: float = 20.0) -> dict:
    """The first event in the file that matches, waiting for it to be written."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if events.exists():
            for line in events.read_text().split("\n")[:-1]:  # complete lines only: the daemon may be mid-write
                event = json.loads(line)
                if predicate(event):
                    return event
        time.sleep(0.05)
    raise AssertionError(f"no matching event in {events}")
