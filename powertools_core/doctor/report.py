"""The doctor's result model: the JSON contract of ``powertools doctor --format json``.

Shape (``schema_version`` 1; ``schema.json`` next to this file is generated from these models
and a test keeps it in step):

- ``command`` ``"doctor"``; ``prefix`` the schema inspected; ``strict`` whether ``--strict`` ran.
- ``database``: ``server_version`` (e.g. ``"16.4"``) and ``url`` (password masked).
- ``oban_version_expected`` (14) and ``oban_version_db`` (from the ``oban_jobs`` table comment;
  ``null`` when the table or its comment is absent or unreadable).
- ``exit_code``: 0 clean, 1 warnings only, 2 any error; always the process exit code.
- ``summary``: finding counts by severity, ``{"error": n, "warning": n}``.
- ``checks``: every check that ran, in order: ``id``, ``status`` (``ok``/``warning``/``error``,
  the worst severity among its findings) and ``duration_ms``.
- ``findings``: ``check`` (a check id), ``severity`` (``error``/``warning``; already promoted
  under ``--strict``), ``message`` (names the object), ``remediation`` (a command or SQL to
  copy), ``object`` (what it is about: ``schema.table``, ``schema.index``, ``queue:NAME``,
  ``job:ID``, ``producer:UUID``, ``pid:N``, ``database:NAME`` or ``schema:NAME``).
- ``thresholds``: the thresholds in force, as written in the config file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from powertools_core.results import CommandResult
from powertools_core.schema.oban import OBAN_VERSION

Severity = Literal["error", "warning"]
Status = Literal["ok", "warning", "error"]

SCHEMA_PATH: Final = Path(__file__).with_name("schema.json")


class Finding(BaseModel):
    """One problem: what is wrong with which object, and what to run about it."""

    model_config = ConfigDict(extra="forbid")

    check: str = Field(description="id of the check that found it")
    severity: Severity = Field(description="error or warning (after --strict promotion)")
    message: str = Field(description="what is wrong, naming the object")
    remediation: str = Field(description="a command or SQL statement to copy and run")
    object: str = Field(description="the object: schema.table, queue:NAME, job:ID, pid:N, ...")


class CheckResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="stable check id")
    status: Status = Field(description="worst severity among the check's findings, else ok")
    duration_ms: float = Field(description="wall time the check took")


class DatabaseInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    server_version: str = Field(description="PostgreSQL server_version")
    url: str = Field(description="connection URL with the password masked")


class Summary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error: int = Field(default=0, description="findings with severity error")
    warning: int = Field(default=0, description="findings with severity warning")


class DoctorResult(CommandResult):
    """``powertools doctor``: every check run, every finding, and the exit code they imply."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    command: Literal["doctor"] = "doctor"
    prefix: str = Field(description="the schema inspected")
    strict: bool = Field(description="whether --strict promoted warnings")
    database: DatabaseInfo = Field(description="server version and masked URL")
    oban_version_expected: int = Field(
        default=OBAN_VERSION, description="the Oban schema version powertools expects"
    )
    oban_version_db: int | None = Field(
        description="the version in the oban_jobs table comment; null when absent"
    )
    exit_code: Literal[0, 1, 2] = Field(
        description="0 clean, 1 warnings only, 2 any error; equals the process exit code"
    )
    summary: Summary = Field(description="finding counts by severity")
    checks: list[CheckResult] = Field(description="every check run, in order")
    findings: list[Finding] = Field(description="every problem found, in check order")
    thresholds: dict[str, str] = Field(description="the thresholds in force, as in config")

    def exit_status(self) -> int:
        return self.exit_code


def exit_code_for(findings: list[Finding]) -> Literal[0, 1, 2]:
    if any(f.severity == "error" for f in findings):
        return 2
    if findings:
        return 1
    return 0


def summarise(findings: list[Finding]) -> Summary:
    return Summary(
        error=sum(f.severity == "error" for f in findings),
        warning=sum(f.severity == "warning" for f in findings),
    )


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the output, generated from the model (``schema.json`` is this)."""
    schema = DoctorResult.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
