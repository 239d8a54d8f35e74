"""Structured logs on stderr: ``text`` for people, ``json`` (one object per line) for machines."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime

from powertools_core.runtime.config import LogFormat

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process or os.getpid(),
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(fmt: LogFormat = "text", level: int | str = logging.INFO) -> None:
    """Route the ``powertools`` loggers to stderr in the chosen format (idempotent)."""
    root = logging.getLogger("powertools")
    for handler in list(root.handlers):
        if getattr(handler, "_powertools", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._powertools = True  # type: ignore[attr-defined]
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
        )
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    root.propagate = False
