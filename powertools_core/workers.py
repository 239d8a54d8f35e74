"""Workers: the class an application subclasses, its registry, outcomes and backoff.

A worker is identified in ``oban_jobs.worker`` by its import path (``app.workers.SendEmail``).
Defining a subclass registers it; ``load_app`` imports the modules named by ``--app`` so the
runtime and the CLI know every worker; ``resolve`` accepts the path or an unambiguous bare name.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import random
import sys
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from powertools_core.errors import InvalidInput

if TYPE_CHECKING:
    from powertools_core.jobs.model import Job

T = TypeVar("T")


class _RedactedMarker:
    """Metadata marking an ``Args`` field whose value no operator surface may show."""

    def __repr__(self) -> str:
        return "Redacted"


REDACTED: Any = _RedactedMarker()
Redacted = Annotated[T, REDACTED]
"""``api_key: Redacted[str]``: validated and given to ``perform``, shown as «redacted» elsewhere."""


class AnyArgs(BaseModel):
    """Args of a worker that declares no ``Args`` model: any JSON object, kept as is."""

    model_config = ConfigDict(extra="allow")


# Outcomes -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snooze:
    """Run again in ``seconds`` without using up an attempt (Oban semantics)."""

    seconds: float

    def __post_init__(self) -> None:
        if self.seconds < 0:
            raise ValueError("Snooze seconds must be >= 0")


@dataclass(frozen=True, slots=True)
class Cancel:
    """Stop for good: the job ends ``cancelled`` with the reason recorded in ``errors``."""

    reason: str = "cancelled"


@dataclass(frozen=True, slots=True)
class Discard:
    """Give up: the job ends ``discarded`` with the reason recorded in ``errors``."""

    reason: str = "discarded"


Outcome = Snooze | Cancel | Discard | None


# Backoff --------------------------------------------------------------------------------------


def exponential_backoff(
    attempt: int, *, base: float = 15.0, cap: float = 24 * 3600.0, jitter: float = 0.1
) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): base·2^(attempt-1), capped,
    with ±``jitter`` proportional noise so a burst of failures does not retry in lockstep."""
    raw: float = min(cap, base * (2.0 ** max(0, attempt - 1)))
    if jitter:
        raw *= 1 + random.uniform(-jitter, jitter)
    return max(0.0, raw)


# Registry -------------------------------------------------------------------------------------

_REGISTRY: dict[str, type[Worker]] = {}


def registered() -> dict[str, type[Worker]]:
    """Every worker class defined so far, by import path."""
    return dict(_REGISTRY)


def worker_name(cls: type[Any]) -> str:
    module = cls.__module__
    if module == "__main__":
        # A worker defined in a script run as __main__ is stored under the script's module
        # name when it can be imported that way; otherwise __main__ (works in that process).
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        if spec is not None and spec.name:
            module = spec.name
    return f"{module}.{cls.__qualname__}"


def load_app(modules: Iterable[str]) -> dict[str, type[Worker]]:
    """Import the application's modules (registering their workers)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and (module == exc.name or module.startswith(exc.name + ".")):
                raise InvalidInput(
                    f"cannot import app module {module!r}",
                    hint="check --app / POWERTOOLS_APP and that it is importable from here "
                    "(PYTHONPATH)",
                ) from None
            raise InvalidInput(
                f"importing app module {module!r} failed: {exc}",
                hint="fix the import error in your application",
            ) from None
        except Exception as exc:
            raise InvalidInput(
                f"importing app module {module!r} failed: {type(exc).__name__}: {exc}",
                hint="fix the error in your application module",
            ) from None
    return registered()


def resolve(name: str) -> type[Worker]:
    """A registered worker by import path, or by bare class name when that is unambiguous.

    An import path that is not registered yet is imported (its module registers it), so jobs
    written by one process can be run by another that only named the package.
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    bare = [cls for path, cls in _REGISTRY.items() if path.rsplit(".", 1)[-1] == name]
    if len(bare) == 1:
        return bare[0]
    if len(bare) > 1:
        paths = ", ".join(sorted(worker_name(c) for c in bare))
        raise InvalidInput(f"worker name {name!r} is ambiguous", hint=f"use one of: {paths}")
    if "." in name:
        module, _, _attr = name.rpartition(".")
        with contextlib.suppress(Exception):
            importlib.import_module(module)
        if name in _REGISTRY:
            return _REGISTRY[name]
    known = ", ".join(sorted(p.rsplit(".", 1)[-1] for p in _REGISTRY)) or "none registered"
    raise InvalidInput(
        f"unknown worker {name!r}",
        hint=f"known workers: {known}; pass --app MODULE so powertools can import yours",
    )


# The base class -------------------------------------------------------------------------------


class Worker(ABC):
    """Subclass, set the class attributes you need, and implement ``perform``.

    ``perform(job)`` may be ``def`` (run in a thread) or ``async def`` (run on the loop). Return
    ``None`` (or any value) to complete, or a ``Snooze``/``Cancel``/``Discard``; an exception
    retries with ``backoff`` until ``max_attempts``, then discards.
    """

    queue: ClassVar[str] = "default"
    priority: ClassVar[int] = 0
    max_attempts: ClassVar[int] = 20
    tags: ClassVar[tuple[str, ...]] = ()
    timeout: ClassVar[float | None] = None
    """Seconds a single attempt may run before it fails as an error (None: no limit)."""
    unique: ClassVar[Any] = None
    """Default uniqueness for enqueue (a ``powertools_core.jobs.Unique``), or None."""
    limits: ClassVar[tuple[Any, ...]] = ()
    """Concurrency and rate limits (see ``powertools_core.limits``)."""
    Args: ClassVar[type[BaseModel]] = AnyArgs

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if inspect.isabstract(cls):
            return
        _validate_declaration(cls)
        _REGISTRY[worker_name(cls)] = cls

    @classmethod
    def name(cls) -> str:
        return worker_name(cls)

    @classmethod
    def is_async(cls) -> bool:
        return inspect.iscoroutinefunction(cls.perform)

    @classmethod
    def validate_args(cls, args: BaseModel | dict[str, Any] | None) -> BaseModel:
        """Validate args before anything touches the database; errors name the field."""
        if isinstance(args, cls.Args):
            return args
        if isinstance(args, BaseModel):
            args = args.model_dump(mode="json")
        try:
            return cls.Args.model_validate(args or {})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'args'}: {e['msg']}" for e in exc.errors()
            )
            raise InvalidInput(f"invalid args for {cls.name()}: {problems}") from None

    @classmethod
    def dump_args(cls, args: BaseModel) -> dict[str, Any]:
        return args.model_dump(mode="json", exclude_none=False)

    @classmethod
    def redacted_fields(cls) -> frozenset[str]:
        return frozenset(
            name
            for name, info in cls.Args.model_fields.items()
            if any(m is REDACTED for m in info.metadata)
        )

    def backoff(self, attempt: int) -> float:
        """Seconds before the next attempt after failed attempt ``attempt``; override freely."""
        return exponential_backoff(attempt)

    @abstractmethod
    def perform(self, job: Job) -> Any | Awaitable[Any]:
        """Do the work. ``job.args`` is a validated instance of ``Args``."""


def _validate_declaration(cls: type[Worker]) -> None:
    where = worker_name(cls)
    if not isinstance(cls.queue, str) or not 0 < len(cls.queue) < 128:
        raise InvalidInput(f"{where}: queue must be a non-empty string under 128 characters")
    if len(where) >= 128:
        raise InvalidInput(f"{where}: worker import path must be under 128 characters")
    if not isinstance(cls.max_attempts, int) or cls.max_attempts < 1:
        raise InvalidInput(f"{where}: max_attempts must be an integer >= 1")
    if not isinstance(cls.priority, int) or cls.priority < 0:
        raise InvalidInput(f"{where}: priority must be an integer >= 0")
    if cls.timeout is not None and cls.timeout <= 0:
        raise InvalidInput(f"{where}: timeout must be a positive number of seconds or None")
    if not (isinstance(cls.Args, type) and issubclass(cls.Args, BaseModel)):
        raise InvalidInput(f"{where}: Args must be a pydantic BaseModel subclass")
    if cls.limits:
        from powertools_core.limits.declarations import validate_worker_limits

        cls.limits = validate_worker_limits(cls.limits, where)
