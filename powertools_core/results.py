"""The JSON contract: every command returns a pydantic model derived from ``CommandResult``.

Serialised, a result is one JSON object ``{"schema_version": 1, "command": "...", ...}``. A
breaking change to any field bumps ``SCHEMA_VERSION``. Capability packages define their own
result models next to their code; the shared base and the small shared ones live here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

SCHEMA_VERSION: Literal[1] = 1


class CommandResult(BaseModel):
    """Base of every command result. ``exit_status`` is the process exit code it implies."""

    model_config = ConfigDict(populate_by_name=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    command: str

    def exit_status(self) -> int:
        return 0

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class ErrorResult(CommandResult):
    """What ``--format json`` prints on stdout when a command fails with an expected error."""

    error: ErrorDetail
    exit_code: int = 2

    def exit_status(self) -> int:
        return self.exit_code


class ErrorDetail(BaseModel):
    code: str
    message: str
    hint: str | None = None


ErrorResult.model_rebuild()
