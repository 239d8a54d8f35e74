"""Declaring cron entries in code: ``Cron("*/5 * * * *", SendDigest, ...)`` at module level.

Everything is validated when the line runs (the app's import fails on a bad expression, zone,
policy or args), and the entry is registered so the scheduler syncs it as a ``code`` entry::

    from powertools_core import Cron

    Cron("0 7 * * MON-FRI", SendDigest, args={"kind": "daily"}, name="digest",
         timezone="Europe/Paris", overlap="skip", catch_up="latest")

Runtime entries (``powertools cron add``) use the same ``EntryConfig`` and the same validation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

from powertools_core.cron.expression import DEFAULT_TIMEZONE, Schedule, parse_schedule
from powertools_core.cron.overlap import Overlap, parse_overlap
from powertools_core.cron.slots import CatchUp, check_max_catch_up, parse_catch_up
from powertools_core.errors import InvalidInput
from powertools_core.jobs.spec import canonical_json, check_json

NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
NAME_HINT: Final = "1-128 letters, digits, '_', '.', ':' or '-', starting with a letter or digit"
DEFAULT_OVERLAP: Final = Overlap.skip
DEFAULT_CATCH_UP: Final = CatchUp.latest
DEFAULT_MAX_CATCH_UP: Final = 10


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidInput(f"invalid cron entry name {name!r}", hint=NAME_HINT)
    return name


@dataclass(frozen=True, slots=True)
class EntryConfig:
    """What an entry is configured to do (the columns a sync writes)."""

    name: str
    schedule: Schedule
    worker: str
    args: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    """``None``: the worker's own queue."""
    overlap: Overlap = DEFAULT_OVERLAP
    catch_up: CatchUp = DEFAULT_CATCH_UP
    max_catch_up: int = DEFAULT_MAX_CATCH_UP

    def as_dict(self) -> dict[str, Any]:
        """The configuration as JSON (audit before/after, equality across processes)."""
        return {
            "name": self.name,
            "expression": self.schedule.expression,
            "timezone": self.schedule.timezone,
            "worker": self.worker,
            "args": self.args,
            "queue": self.queue,
            "overlap": self.overlap.value,
            "catch_up": self.catch_up.value,
            "max_catch_up": self.max_catch_up,
        }

    def fingerprint(self) -> str:
        return canonical_json(self.as_dict())


def _worker_path(worker: Any) -> tuple[str, Any]:
    """(import path, worker class or None) for a Worker class, @worker function or a path."""
    from powertools_core.workers import Worker, resolve

    cls = getattr(worker, "worker_class", worker)
    if isinstance(cls, type) and issubclass(cls, Worker):
        return cls.name(), cls
    if isinstance(worker, str) and worker.strip():
        resolved = resolve(worker.strip())
        return resolved.name(), resolved
    raise InvalidInput(f"cron worker must be a Worker class or its import path, not {worker!r}")


def build_config(
    expression: str,
    worker: Any,
    *,
    args: dict[str, Any] | None = None,
    name: str | None = None,
    timezone: str = DEFAULT_TIMEZONE,
    queue: str | None = None,
    overlap: str | Overlap = DEFAULT_OVERLAP,
    catch_up: str | CatchUp = DEFAULT_CATCH_UP,
    max_catch_up: int = DEFAULT_MAX_CATCH_UP,
) -> EntryConfig:
    """Validate everything about an entry (the worker must be registered or importable)."""
    schedule = parse_schedule(expression, timezone)
    path, cls = _worker_path(worker)
    if args is not None and not isinstance(args, dict):
        raise InvalidInput("cron args must be a JSON object")
    dumped = cls.dump_args(cls.validate_args(args or {}))
    check_json(dumped, f"cron {name or path} args")
    if queue is not None and (not isinstance(queue, str) or not 0 < len(queue) < 128):
        raise InvalidInput("cron queue must be a non-empty string under 128 characters")
    return EntryConfig(
        name=check_name(name if name is not None else path.rsplit(".", 1)[-1]),
        schedule=schedule,
        worker=path,
        args=dumped,
        queue=queue,
        overlap=parse_overlap(overlap),
        catch_up=parse_catch_up(catch_up),
        max_catch_up=check_max_catch_up(max_catch_up),
    )


_DECLARED: dict[str, EntryConfig] = {}


class Cron:
    """A cron entry declared in code (source ``code``); registered when constructed.

    ``name`` defaults to the worker's class name; declare two entries for one worker with
    distinct names. Re-running the same declaration (a module reload) is harmless; a different
    entry under a taken name is an error.
    """

    __slots__ = ("config",)

    def __init__(
        self,
        expression: str,
        worker: Any,
        *,
        args: dict[str, Any] | None = None,
        name: str | None = None,
        timezone: str = DEFAULT_TIMEZONE,
        queue: str | None = None,
        overlap: str | Overlap = DEFAULT_OVERLAP,
        catch_up: str | CatchUp = DEFAULT_CATCH_UP,
        max_catch_up: int = DEFAULT_MAX_CATCH_UP,
    ) -> None:
        config = build_config(
            expression,
            worker,
            args=args,
            name=name,
            timezone=timezone,
            queue=queue,
            overlap=overlap,
            catch_up=catch_up,
            max_catch_up=max_catch_up,
        )
        taken = _DECLARED.get(config.name)
        if taken is not None and taken.fingerprint() != config.fingerprint():
            raise InvalidInput(
                f"cron entry {config.name!r} is declared twice with different settings",
                hint="give each Cron(...) its own name=",
            )
        _DECLARED[config.name] = config
        self.config = config

    @property
    def name(self) -> str:
        return self.config.name

    def __repr__(self) -> str:
        c = self.config
        return f"Cron({c.schedule.expression!r}, {c.worker}, name={c.name!r})"


def declared() -> dict[str, EntryConfig]:
    """Every entry declared in code so far, by name."""
    return dict(_DECLARED)


def forget(name: str) -> None:
    """Drop a declaration (tests that declare entries in a loop use this)."""
    _DECLARED.pop(name, None)
