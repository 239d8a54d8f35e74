"""What every check gets: the read-only connection, the schema inventory, the thresholds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy.engine import Connection

from powertools_core.db.identifiers import qualify, quote_ident
from powertools_core.doctor.thresholds import Thresholds

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """A finding before the runner stamps its check id and applies ``--strict``."""

    severity: Severity
    message: str
    remediation: str
    object: str


class CannotRun(Exception):
    """Raised by a check that cannot look (missing schema or table): an error, never a pass."""

    def __init__(
        self, message: str, remediation: str, obj: str, *, partial: list[Problem] | None = None
    ) -> None:
        super().__init__(message)
        self.problem = Problem("error", message, remediation, obj)
        self.partial = list(partial or [])
        """Findings the check made before it had to stop."""


@dataclass(frozen=True)
class Inventory:
    schema_exists: bool
    tables: frozenset[str]
    oban_present: bool
    oban_comment: str | None
    oban_version: int | None
    states: tuple[str, ...]


@dataclass
class CheckContext:
    conn: Connection
    prefix: str
    thresholds: Thresholds
    retention: Mapping[str, timedelta]
    inventory: Inventory
    server_version_num: int
    database: str
    role: str
    now: datetime
    app: tuple[str, ...] = ()
    check_id: str = field(default="")

    # -- SQL --------------------------------------------------------------------------------
    def rows(self, template: str, params: Mapping[str, Any] | None = None) -> Sequence[Any]:
        """Run one statement from ``doctor.sql`` with ``{prefix}`` filled in."""
        stmt = qualify(template, self.prefix)
        return self.conn.exec_driver_sql(stmt, dict(params or {})).all()

    # -- naming -----------------------------------------------------------------------------
    def name(self, table: str) -> str:
        """How messages name an object: ``schema.table``."""
        return f"{self.prefix}.{table}"

    def sql_name(self, table: str) -> str:
        """How remediation SQL names it: quoted schema, so it pastes as is."""
        return f"{quote_ident(self.prefix)}.{quote_ident(table)}"

    def cli(self, command: str) -> str:
        """A powertools command line for this schema."""
        extra = f" --prefix {self.prefix}" if self.prefix != "public" else ""
        return f"powertools {command}{extra}"

    def worker_command(self) -> str:
        app = f" --app {','.join(self.app)}" if self.app else ""
        return self.cli(f"worker run{app}")

    def states(self, *wanted: str) -> list[str]:
        """The wanted job states this database's enum knows (older Oban lacks some)."""
        return [s for s in wanted if s in self.inventory.states]

    # -- preconditions ----------------------------------------------------------------------
    def require_schema(self) -> None:
        if not self.inventory.schema_exists:
            raise CannotRun(
                f"cannot run {self.check_id}: schema {self.prefix} does not exist",
                f"{self.cli('install')}   # or pass the --prefix that holds oban_jobs",
                f"schema:{self.prefix}",
            )

    def require_table(self, table: str) -> None:
        self.require_schema()
        if table not in self.inventory.tables:
            hint = self.cli("install")
            if table == "oban_jobs":
                hint += "   # or pass the --prefix that holds oban_jobs"
            raise CannotRun(
                f"cannot run {self.check_id}: table {self.name(table)} does not exist",
                hint,
                self.name(table),
            )

    def require_states(self) -> None:
        self.require_table("oban_jobs")
        if not self.inventory.states:
            raise CannotRun(
                f"cannot run {self.check_id}: type {self.name('oban_job_state')} does not exist",
                "upgrade with Oban's own migrations (powertools never alters Oban's objects)",
                self.name("oban_job_state"),
            )
