"""A durable, bounded, ordered outbox of alert events (SQLite in the state directory).

Alerts are written here before any delivery is attempted and leave only when the broker has
acknowledged them (PUBACK), so a broker outage or a daemon restart loses nothing and keeps the
order and the original timestamps.

Policy when full (``max_rows``): the oldest *non-critical* event is dropped first; only when every
queued event is critical is the oldest critical dropped. Drops are counted (``dropped``) and logged.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutboxItem:
    seq: int
    topic: str
    payload: dict[str, Any]


class Outbox:
    def __init__(self, path: str | Path, max_rows: int = 10_000):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # an alert survives power loss once put() returns
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
            "payload TEXT NOT NULL, critical INTEGER NOT NULL DEFAULT 0)"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
        if "created" not in columns:  # an outbox written before queue ages were kept: count from now
            self._db.execute("ALTER TABLE outbox ADD COLUMN created REAL")
            self._db.execute("UPDATE outbox SET created = ?", (time.time(),))
        self.dropped = self._meta("dropped")

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def put(self, topic: str, payload: dict[str, Any]) -> int:
        critical = int(payload.get("severity") == "critical")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                depth = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
                if depth >= self.max_rows:
                    victim = self._db.execute(
                        "SELECT seq FROM outbox ORDER BY critical ASC, seq ASC LIMIT 1").fetchone()
                    self._db.execute("DELETE FROM outbox WHERE seq = ?", (victim[0],))
                    self.dropped += 1
                    self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('dropped', ?)", (self.dropped,))
                    log.warning("outbox full (%d): dropped queued event %d", self.max_rows, victim[0])
                cur = self._db.execute("INSERT INTO outbox (topic, payload, critical, created) VALUES (?, ?, ?, ?)",
                                       (topic, json.dumps(payload, separators=(",", ":")), critical, time.time()))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return int(cur.lastrowid)

    def peek(self, limit: int = 1) -> list[OutboxItem]:
        with self._lock:
            rows = self._db.execute("SELECT seq, topic, payload FROM outbox ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [OutboxItem(seq, topic, json.loads(payload)) for seq, topic, payload in rows]

    def remove(self, seq: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    def depth(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def oldest_age(self) -> float | None:
        """Seconds (wall clock) the oldest undelivered message has waited; None when the outbox is empty."""
        with self._lock:
            row = self._db.execute("SELECT MIN(created) FROM outbox").fetchone()
        return None if row[0] is None else max(0.0, time.time() - row[0])

    def topics(self, prefix: str) -> set[str]:
        """Distinct topics of queued messages that start with ``prefix``."""
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT topic FROM outbox WHERE substr(topic, 1, ?) = ?",
                                    (len(prefix), prefix)).fetchall()
        return {row[0] for row in rows}

    def close(self) -> None:
        with self._lock:
            self._db.close()
