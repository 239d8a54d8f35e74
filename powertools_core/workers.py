"""Workers: the class an application subclasses, its registry, outcomes and backoff.

A worker is identified in ``oban_jobs.worker`` by its import path (``app.workers.SendEmail``).
Defining a subclass registers it; ``load_app`` imports the modules named by ``--app`` so the
runtime and the CLI know every worker; ``resolve`` accepts the path or an unambiguous bare name.

Enqueueing starts here too: ``Worker.new`` validates args and options into a ``JobSpec`` without
touching the database (so a bad call fails before any SQL), and ``enqueue``/``enqueue_async``
hand it to ``powertools_core.jobs.insert``. The ``@worker`` decorator makes a plain function a
registered worker with the same API.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import random
import sys
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Generic, TypeVar, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError

from powertools_core.errors import InvalidInput
from powertools_core.jobs.spec import (
    IDEMPOTENT,
    InsertResult,
    JobSpec,
    Unique,
    check_json,
    idempotency_receipt_key,
    normalise_tags,
    schedule,
    unique_key,
)

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from powertools_core.jobs.model import Job

T = TypeVar("T")
_INT4_MAX = 2**31 - 1  # priority and max_attempts are integer columns


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

    @classmethod
    def new(
        cls,
        args: BaseModel | dict[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        tags: Iterable[str] | None = None,
        meta: dict[str, Any] | None = None,
        schedule_in: float | int | str | timedelta | None = None,
        scheduled_at: datetime | None = None,
        unique: Unique | bool | None = None,
        idempotency_key: str | None = None,
    ) -> JobSpec:
        """A validated job for this worker, not yet inserted (``insert_all`` takes these).

        Everything is checked here, before any database access, so a bad enqueue fails with a
        message naming the field and leaves nothing behind. Options left ``None`` take the
        worker's class attributes. ``unique=False`` turns off a class-level ``unique``; an
        ``idempotency_key`` makes the job unique by that key (for as long as its job exists,
        unless ``unique`` narrows the states or period).
        """
        validated = cls.validate_args(args)
        dumped = cls.dump_args(validated)
        where = cls.name()
        chosen_queue = cls.queue if queue is None else queue
        if not isinstance(chosen_queue, str) or not 0 < len(chosen_queue) < 128:
            raise InvalidInput(f"{where}: queue must be a non-empty string under 128 characters")
        chosen_priority = cls.priority if priority is None else priority
        if isinstance(chosen_priority, bool) or not isinstance(chosen_priority, int):
            raise InvalidInput(f"{where}: priority must be an integer >= 0")
        if not 0 <= chosen_priority <= _INT4_MAX:
            raise InvalidInput(f"{where}: priority must be an integer >= 0")
        attempts = cls.max_attempts if max_attempts is None else max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int):
            raise InvalidInput(f"{where}: max_attempts must be an integer >= 1")
        if not 1 <= attempts <= _INT4_MAX:
            raise InvalidInput(f"{where}: max_attempts must be an integer >= 1")
        if meta is not None and not isinstance(meta, dict):
            raise InvalidInput(f"{where}: meta must be a dict")
        job_meta = dict(meta) if meta else {}
        if job_meta:
            check_json(job_meta, f"{where}: meta")
        if schedule_in is None and scheduled_at is None:
            state, at = "available", None
        else:
            state, at = schedule(schedule_in, scheduled_at)

        rule: Unique | None
        if unique is None:
            rule = cls.unique
        elif unique is True:
            rule = Unique()
        elif unique is False:
            rule = None
        else:
            rule = unique
        if rule is not None and not isinstance(rule, Unique):
            raise InvalidInput(f"{where}: unique must be a Unique(...), True, False or None")
        receipt = None
        if idempotency_key is not None:
            receipt = idempotency_receipt_key(idempotency_key)
            rule = rule if unique not in (None, True, False) else IDEMPOTENT
        elif rule is not None:
            if rule.keys is not None and cls.Args is not AnyArgs:
                missing = [k for k in rule.keys if k not in cls.Args.model_fields]
                if missing:
                    raise InvalidInput(
                        f"{where}: unique key(s) {', '.join(missing)} are not Args fields",
                        hint=f"Args fields: {', '.join(cls.Args.model_fields) or 'none'}",
                    )
            receipt = unique_key(where, chosen_queue, dumped, rule)
        return JobSpec(
            worker=where,
            queue=chosen_queue,
            args=dumped,
            priority=chosen_priority,
            max_attempts=attempts,
            tags=normalise_tags(cls.tags if tags is None else tags),
            meta=job_meta,
            scheduled_at=at,
            state=state,
            unique=rule,
            receipt_key=receipt,
        )

    @classmethod
    def enqueue(
        cls,
        args: BaseModel | dict[str, Any] | None = None,
        *,
        conn: Any = None,
        prefix: str | None = None,
        schedule_in: float | int | str | timedelta | None = None,
        scheduled_at: datetime | None = None,
        priority: int | None = None,
        queue: str | None = None,
        tags: Iterable[str] | None = None,
        meta: dict[str, Any] | None = None,
        unique: Unique | bool | None = None,
        idempotency_key: str | None = None,
        max_attempts: int | None = None,
    ) -> InsertResult:
        """Validate and insert one job; with ``conn``, inside the caller's transaction.

        ``conn`` is a psycopg ``Connection`` or a SQLAlchemy ``Connection``/``Session``
        (use :meth:`enqueue_async` for async connections). A unique duplicate returns the
        existing job with ``conflict=True`` instead of inserting.
        """
        from powertools_core.jobs.insert import insert_job

        spec = cls.new(
            args,
            queue=queue,
            priority=priority,
            max_attempts=max_attempts,
            tags=tags,
            meta=meta,
            schedule_in=schedule_in,
            scheduled_at=scheduled_at,
            unique=unique,
            idempotency_key=idempotency_key,
        )
        return insert_job(spec, conn=conn, prefix=prefix)

    @classmethod
    async def enqueue_async(
        cls,
        args: BaseModel | dict[str, Any] | None = None,
        *,
        conn: Any = None,
        prefix: str | None = None,
        schedule_in: float | int | str | timedelta | None = None,
        scheduled_at: datetime | None = None,
        priority: int | None = None,
        queue: str | None = None,
        tags: Iterable[str] | None = None,
        meta: dict[str, Any] | None = None,
        unique: Unique | bool | None = None,
        idempotency_key: str | None = None,
        max_attempts: int | None = None,
    ) -> InsertResult:
        """:meth:`enqueue` for asyncio: ``conn`` is a psycopg ``AsyncConnection`` or a
        SQLAlchemy ``AsyncConnection``/``AsyncSession``."""
        from powertools_core.jobs.insert import insert_job_async

        spec = cls.new(
            args,
            queue=queue,
            priority=priority,
            max_attempts=max_attempts,
            tags=tags,
            meta=meta,
            schedule_in=schedule_in,
            scheduled_at=scheduled_at,
            unique=unique,
            idempotency_key=idempotency_key,
        )
        return await insert_job_async(spec, conn=conn, prefix=prefix)

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
    if cls.unique is not None and not isinstance(cls.unique, Unique):
        raise InvalidInput(f"{where}: unique must be a powertools_core.Unique(...) or None")
    if not (isinstance(cls.Args, type) and issubclass(cls.Args, BaseModel)):
        raise InvalidInput(f"{where}: Args must be a pydantic BaseModel subclass")
    if cls.limits:
        from powertools_core.limits.declarations import validate_worker_limits

        cls.limits = validate_worker_limits(cls.limits, where)


# The decorator form ---------------------------------------------------------------------------

F = TypeVar("F", bound=Callable[..., Any])


class WorkerFunction(Generic[F]):
    """A plain function registered as a worker by :func:`worker`.

    Calling it calls the function; ``.enqueue``/``.enqueue_async``/``.new`` enqueue it, and
    ``.worker_class`` is the generated ``Worker`` subclass the runtime executes (stored under
    the function's import path, ``module.function``).
    """

    def __init__(self, fn: F, worker_class: type[Worker]) -> None:
        self.__wrapped__ = fn
        self.worker_class = worker_class
        self.new = worker_class.new
        self.enqueue = worker_class.enqueue
        self.enqueue_async = worker_class.enqueue_async
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<worker {self.worker_class.name()}>"


def _call_shape(fn: Callable[..., Any]) -> tuple[type[BaseModel] | None, str]:
    """Which Args model the function declares and how to call it: ``args``, ``job`` or
    ``args+job`` (the first parameter annotated with a pydantic model receives the args)."""
    params = list(inspect.signature(fn).parameters.values())
    try:
        hints = get_type_hints(fn)
    except Exception:
        hints = {}
    if not params:
        raise InvalidInput(f"{fn.__qualname__}: a worker function takes args, job or both")
    first = hints.get(params[0].name)
    model = first if isinstance(first, type) and issubclass(first, BaseModel) else None
    if len(params) >= 2:
        return model, "args+job"
    if model is not None or params[0].name == "args":
        return model, "args"
    return None, "job"


def worker(
    fn: Callable[..., Any] | None = None,
    *,
    queue: str = "default",
    priority: int = 0,
    max_attempts: int = 20,
    tags: Iterable[str] = (),
    timeout: float | None = None,
    unique: Unique | None = None,
    limits: Iterable[Any] = (),
    backoff: Callable[[int], float] | None = None,
) -> Any:
    """Turn a function into a registered worker::

        @worker(queue="mailers", max_attempts=5)
        def send_email(args: SendEmailArgs) -> None: ...

        send_email.enqueue({"to": "a@example.com"})

    The function takes ``args`` (typed by its annotation, validated like ``Worker.Args``),
    ``job``, or ``(args, job)``; ``async def`` works too. Its return value is the outcome,
    exactly as from ``perform``.
    """

    def wrap(func: Callable[..., Any]) -> WorkerFunction[Any]:
        model, shape = _call_shape(func)
        if inspect.iscoroutinefunction(func):

            async def perform(self: Worker, job: Job) -> Any:
                return await _call(func, shape, job)

        else:

            def perform(self: Worker, job: Job) -> Any:  # type: ignore[misc]
                return _call(func, shape, job)

        namespace: dict[str, Any] = {
            "__module__": func.__module__,
            "__qualname__": func.__qualname__,
            "__doc__": func.__doc__,
            "queue": queue,
            "priority": priority,
            "max_attempts": max_attempts,
            "tags": tuple(tags),
            "timeout": timeout,
            "unique": unique,
            "limits": tuple(limits),
            "Args": model or AnyArgs,
            "perform": perform,
        }
        if backoff is not None:
            namespace["backoff"] = lambda self, attempt: backoff(attempt)
        cls = type(func.__name__, (Worker,), namespace)
        return WorkerFunction(func, cls)

    return wrap(fn) if fn is not None else wrap


def _call(func: Callable[..., Any], shape: str, job: Job) -> Any:
    if shape == "args":
        return func(job.args)
    if shape == "job":
        return func(job)
    return func(job.args, job)
