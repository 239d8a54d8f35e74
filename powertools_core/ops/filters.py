"""Which jobs an operator means: the ``JobFilter`` model and its translation to SQL.

The translation is pure: every condition is a constant fragment below, chosen by which fields
are set, with the values bound as parameters. Nothing a user typed is ever formatted into SQL.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any, Final

from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, field_validator

from powertools_core.durations import format_duration, parse_duration
from powertools_core.errors import InvalidInput
from powertools_core.schema.oban import JOB_STATES

# One fragment per filter field; ``{prefix}`` is the quoted schema (see db.identifiers.qualify).
STATES_CLAUSE: Final = "j.state = ANY(%(states)s::text[]::{prefix}.oban_job_state[])"
QUEUE_CLAUSE: Final = "j.queue = %(queue)s"
WORKER_CLAUSE: Final = "j.worker = %(worker)s"
TAGS_CLAUSE: Final = "j.tags @> %(tags)s::text[]"
ARGS_CLAUSE: Final = "j.args @> %(args_contains)s"
OLDER_THAN_CLAUSE: Final = "j.inserted_at < timezone('UTC', now()) - %(older_than)s::interval"
IDS_CLAUSE: Final = "j.id = ANY(%(ids)s::bigint[])"
ALWAYS: Final = "TRUE"

MAX_LIMIT: Final = 10_000_000


def parse_args_contains(text: str) -> dict[str, Any]:
    """The ``--args-contains`` JSON: must be an object (containment like ``args @> '{...}'``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"--args-contains is not valid JSON: {exc.msg}",
            hint='e.g. --args-contains \'{"tenant": "acme"}\'',
        ) from None
    if not isinstance(value, dict):
        raise InvalidInput(
            "--args-contains must be a JSON object", hint="e.g. --args-contains '{\"id\": 42}'"
        )
    return value


class JobFilter(BaseModel):
    """A selection of jobs. Empty fields do not constrain; set fields are ANDed together.

    ``states`` empty means "any state" for listing; bulk actions substitute the action's default
    states (see ``actions.DEFAULT_STATES``). ``worker`` is the stored import path (``resolved``
    turns a bare class name into it when the worker is registered). ``older_than`` compares with
    ``inserted_at``. ``limit`` caps how many jobs a bulk action selects (lowest ids first).
    """

    model_config = ConfigDict(frozen=True)

    states: tuple[str, ...] = ()
    queue: str | None = None
    worker: str | None = None
    tags: tuple[str, ...] = ()
    args_contains: dict[str, Any] | None = None
    older_than: timedelta | None = None
    ids: tuple[int, ...] = ()
    limit: int | None = Field(default=None, ge=1, le=MAX_LIMIT)

    @field_validator("states")
    @classmethod
    def _known_states(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [s for s in value if s not in JOB_STATES]
        if unknown:
            raise ValueError(f"unknown state {unknown[0]!r}; states are {', '.join(JOB_STATES)}")
        return tuple(s for s in JOB_STATES if s in value)

    @field_validator("tags")
    @classmethod
    def _sorted_tags(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(set(value)))

    @field_validator("ids")
    @classmethod
    def _sorted_ids(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(sorted(set(value)))

    @field_validator("older_than")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("older_than must be positive")
        return value

    def with_states(self, states: tuple[str, ...]) -> JobFilter:
        return self.model_copy(update={"states": tuple(s for s in JOB_STATES if s in states)})

    def resolved(self) -> JobFilter:
        """``worker`` as the stored import path: a registered worker's path when the name
        resolves (path or unambiguous bare name), else the text as given."""
        if not self.worker:
            return self
        from powertools_core import workers

        registry = workers.registered()
        if self.worker in registry:
            return self
        matches = [p for p in registry if p.rsplit(".", 1)[-1] == self.worker]
        if len(matches) == 1:
            return self.model_copy(update={"worker": matches[0]})
        if len(matches) > 1:
            raise InvalidInput(
                f"worker name {self.worker!r} is ambiguous",
                hint=f"use one of: {', '.join(sorted(matches))}",
            )
        return self

    def canonical(self) -> dict[str, Any]:
        """A stable JSON form (sorted, durations spelled out) for plan hashes and audit."""
        out: dict[str, Any] = {}
        if self.states:
            out["states"] = list(self.states)
        if self.queue is not None:
            out["queue"] = self.queue
        if self.worker is not None:
            out["worker"] = self.worker
        if self.tags:
            out["tags"] = list(self.tags)
        if self.args_contains is not None:
            out["args_contains"] = self.args_contains
        if self.older_than is not None:
            out["older_than"] = format_duration(self.older_than)
        if self.ids:
            out["ids"] = list(self.ids)
        if self.limit is not None:
            out["limit"] = self.limit
        return out

    def describe(self) -> str:
        """One line for people: ``states=discarded queue=mailers``."""
        return describe(self.canonical())


def describe(canonical: dict[str, Any]) -> str:
    """A canonical filter (``JobFilter.canonical()``) as one line; ``all jobs`` when empty."""
    parts = []
    for key, value in canonical.items():
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, dict):
            value = json.dumps(value, sort_keys=True)
        parts.append(f"{key}={value}")
    return " ".join(parts) or "all jobs"


def where_clause(job_filter: JobFilter, *, with_states: bool = True) -> tuple[str, dict[str, Any]]:
    """The WHERE body (over alias ``j``) and its parameters; fragments come from the constants."""
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if with_states and job_filter.states:
        clauses.append(STATES_CLAUSE)
        params["states"] = list(job_filter.states)
    if job_filter.queue is not None:
        clauses.append(QUEUE_CLAUSE)
        params["queue"] = job_filter.queue
    if job_filter.worker is not None:
        clauses.append(WORKER_CLAUSE)
        params["worker"] = job_filter.worker
    if job_filter.tags:
        clauses.append(TAGS_CLAUSE)
        params["tags"] = list(job_filter.tags)
    if job_filter.args_contains is not None:
        clauses.append(ARGS_CLAUSE)
        params["args_contains"] = Jsonb(job_filter.args_contains)
    if job_filter.older_than is not None:
        clauses.append(OLDER_THAN_CLAUSE)
        params["older_than"] = job_filter.older_than
    if job_filter.ids:
        clauses.append(IDS_CLAUSE)
        params["ids"] = list(job_filter.ids)
    return (" AND ".join(clauses) or ALWAYS), params


def build_filter(
    *,
    states: list[str] | tuple[str, ...] | None = None,
    queue: str | None = None,
    worker: str | None = None,
    tags: list[str] | tuple[str, ...] | None = None,
    args_contains: str | dict[str, Any] | None = None,
    older_than: str | timedelta | None = None,
    ids: list[int] | tuple[int, ...] | None = None,
    limit: int | None = None,
) -> JobFilter:
    """A ``JobFilter`` from loosely typed input (CLI strings), with one-line InvalidInput errors."""
    from pydantic import ValidationError

    if isinstance(args_contains, str):
        args_contains = parse_args_contains(args_contains)
    if isinstance(older_than, str):
        older_than = parse_duration(older_than)
    try:
        return JobFilter(
            states=tuple(states or ()),
            queue=queue,
            worker=worker,
            tags=tuple(tags or ()),
            args_contains=args_contains,
            older_than=older_than,
            ids=tuple(ids or ()),
            limit=limit,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise InvalidInput(f"invalid filter {where}: {message}") from None
