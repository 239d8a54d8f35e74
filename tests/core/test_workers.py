"""Worker declarations, ``new`` (pure), the decorator, resolve, redaction marks, and the pure
helpers behind enqueue: durations, unique fingerprints, the NOTIFY debouncer and channel."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from powertools_core import Job, JobSpec, Redacted, Snooze, Unique, Worker, worker
from powertools_core.config import Settings
from powertools_core.durations import format_duration, parse_duration, to_timedelta
from powertools_core.errors import InvalidInput
from powertools_core.jobs.notify import Debouncer, insert_channel
from powertools_core.jobs.spec import IDEMPOTENT, schedule, unique_key
from powertools_core.workers import WorkerFunction, resolve


class WkSignup(Worker):
    queue = "signups"
    priority = 1
    max_attempts = 3
    tags = ("onboarding",)

    class Args(BaseModel):
        email: str
        api_key: Redacted[str]
        plan: str = "free"

    def perform(self, job: Any) -> None:
        return None


class WelcomeArgs(BaseModel):
    to: str
    lang: str = "en"


@worker(queue="mailers", max_attempts=5)
def send_welcome(args: WelcomeArgs) -> str:
    """Send the welcome mail."""
    return f"hello {args.to}"


@worker
def takes_job(job: Job) -> int:
    return job.id


@worker(queue="async")
async def takes_both(args: WelcomeArgs, job: Job) -> Snooze:
    return Snooze(job.attempt + len(args.to))


def make_job(args: Any, job_id: int = 7) -> Job:
    return Job(id=job_id, state="executing", queue="q", worker="w", args=args, attempt=1)


# new() --------------------------------------------------------------------------------------


def test_new_builds_a_spec_from_the_class_attributes() -> None:
    spec = WkSignup.new({"email": "a@x", "api_key": "secret"})
    assert isinstance(spec, JobSpec)
    assert spec.worker == "tests.core.test_workers.WkSignup"
    assert (spec.queue, spec.priority, spec.max_attempts) == ("signups", 1, 3)
    assert spec.tags == ("onboarding",)
    assert spec.args == {"email": "a@x", "api_key": "secret", "plan": "free"}
    assert spec.state == "available" and spec.scheduled_at is None
    assert spec.receipt_key is None and not spec.is_unique


def test_new_accepts_an_args_instance() -> None:
    args = WkSignup.Args(email="a@x", api_key="k")
    assert WkSignup.new(args).args["email"] == "a@x"


def test_redacted_fields_are_validated_kept_and_listed() -> None:
    assert WkSignup.redacted_fields() == frozenset({"api_key"})
    # perform needs the value, so it is stored; operator surfaces use redacted_fields().
    assert WkSignup.new({"email": "e", "api_key": "s"}).args["api_key"] == "s"
    with pytest.raises(InvalidInput, match="api_key"):
        WkSignup.new({"email": "e"})


def test_unique_options_shape_the_receipt_key() -> None:
    a = WkSignup.new({"email": "e", "api_key": "1"}, unique=Unique(keys=["email"]))
    b = WkSignup.new({"email": "e", "api_key": "2"}, unique=Unique(keys=["email"]))
    c = WkSignup.new({"email": "e", "api_key": "2"}, unique=True)
    assert a.receipt_key == b.receipt_key != c.receipt_key
    assert a.receipt_key is not None and a.receipt_key.startswith("u:")
    k = WkSignup.new({"email": "e", "api_key": "1"}, idempotency_key="signup-9")
    assert k.receipt_key == "k:signup-9" and k.unique == IDEMPOTENT
    narrow = WkSignup.new({"email": "e", "api_key": "1"}, idempotency_key="x", unique=Unique())
    assert narrow.unique == Unique()


def test_schedule_is_pure() -> None:
    now = datetime(2030, 1, 1)
    assert schedule(None, None, now) == ("available", None)
    assert schedule("10m", None, now) == ("scheduled", datetime(2030, 1, 1, 0, 10))
    assert schedule(0, None, now) == ("available", None)
    aware = datetime(2030, 1, 1, 1, tzinfo=UTC)
    assert schedule(None, aware, now) == ("scheduled", datetime(2030, 1, 1, 1))
    assert schedule(None, datetime(2029, 1, 1), now) == ("available", datetime(2029, 1, 1))


def test_class_declarations_are_checked() -> None:
    with pytest.raises(InvalidInput, match="unique"):
        type("BadUnique", (WkSignup,), {"unique": "yes"})
    with pytest.raises(InvalidInput, match="max_attempts"):
        type("BadAttempts", (WkSignup,), {"max_attempts": 0})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"states": ["available", "nope"]},
        {"states": []},
        {"keys": []},
        {"period": 0},
        {"period": "soon"},
    ],
)
def test_unique_rejects_bad_rules(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        Unique(**kwargs)


def test_unique_accepts_friendly_forms() -> None:
    rule = Unique(keys="to", states="available", period=timedelta(minutes=5))
    assert (rule.keys, rule.states, rule.period) == (("to",), ("available",), 300.0)
    assert Unique(period="2h").period == 7200.0


# The decorator --------------------------------------------------------------------------------


def test_decorator_registers_a_worker_under_the_function_path() -> None:
    assert isinstance(send_welcome, WorkerFunction)
    cls = send_welcome.worker_class
    assert cls.name() == "tests.core.test_workers.send_welcome"
    assert resolve("tests.core.test_workers.send_welcome") is cls
    assert (cls.queue, cls.max_attempts, cls.Args) == ("mailers", 5, WelcomeArgs)
    assert send_welcome.__doc__ == "Send the welcome mail."
    assert send_welcome(WelcomeArgs(to="direct")) == "hello direct"  # still a function
    spec = send_welcome.new({"to": "a"})
    assert (spec.worker, spec.queue, spec.args) == (
        cls.name(),
        "mailers",
        {"to": "a", "lang": "en"},
    )
    with pytest.raises(InvalidInput, match="to"):
        send_welcome.new({})


def test_decorated_perform_passes_args_job_or_both() -> None:
    welcome = send_welcome.worker_class
    assert not welcome.is_async()
    assert welcome().perform(make_job(WelcomeArgs(to="x"))) == "hello x"
    assert takes_job.worker_class().perform(make_job({}, job_id=42)) == 42
    both = takes_both.worker_class
    assert both.is_async() and both.queue == "async"
    outcome = asyncio.run(both().perform(make_job(WelcomeArgs(to="abc"))))  # type: ignore[arg-type]
    assert outcome == Snooze(4)


def test_decorated_worker_enqueues(installed: Settings, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        result = send_welcome.enqueue({"to": "z"}, conn=conn, prefix=installed.prefix)
        stored = conn.execute(
            f'SELECT worker, queue FROM "{installed.prefix}".oban_jobs WHERE id = %s',
            [result.id],
        ).fetchone()
    assert stored == ("tests.core.test_workers.send_welcome", "mailers")


def test_a_worker_function_needs_a_parameter() -> None:
    def nothing() -> None:
        return None

    with pytest.raises(InvalidInput, match="takes args"):
        worker(nothing)


# resolve -------------------------------------------------------------------------------------


def _perform(self: Worker, job: Any) -> None:
    return None


def test_resolve_by_path_bare_name_ambiguity_and_unknown() -> None:
    one = type("WkTwin", (Worker,), {"__module__": "tests.fake_one", "perform": _perform})
    two = type("WkTwin", (Worker,), {"__module__": "tests.fake_two", "perform": _perform})
    assert resolve("tests.fake_one.WkTwin") is one
    assert resolve("tests.fake_two.WkTwin") is two
    assert resolve("WkSignup") is WkSignup
    with pytest.raises(InvalidInput, match="ambiguous") as err:
        resolve("WkTwin")
    assert "tests.fake_one.WkTwin" in (err.value.hint or "")
    with pytest.raises(InvalidInput, match="unknown worker"):
        resolve("NoSuchWorkerAnywhere")
    with pytest.raises(InvalidInput, match="unknown worker"):
        resolve("no_such_module_xyz.Worker")


# Pure helpers ----------------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=10**12))
def test_format_then_parse_is_exact_at_millisecond_resolution(ms: int) -> None:
    value = timedelta(milliseconds=ms)
    text = format_duration(value)
    assert parse_duration(text) == value
    assert text == text.strip() and " " not in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("30s", timedelta(seconds=30)),
        ("10m", timedelta(minutes=10)),
        ("2h", timedelta(hours=2)),
        ("7d", timedelta(days=7)),
        ("1h30m", timedelta(minutes=90)),
        (" 2H ", timedelta(hours=2)),
        ("45", timedelta(seconds=45)),
        ("1.5", timedelta(seconds=1.5)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "x", "10x", "1h1h", "30s1h", "-5s", "h", "5 m s", "1.5h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(InvalidInput, match="--grace"):
        parse_duration(text, name="--grace")


def test_format_duration_examples() -> None:
    assert format_duration(timedelta(0)) == "0s"
    assert format_duration(timedelta(seconds=90)) == "1m30s"
    assert format_duration(timedelta(days=7)) == "7d"
    assert format_duration(timedelta(milliseconds=1500)) == "1s500ms"
    assert format_duration(-timedelta(minutes=5)) == "-5m"


@pytest.mark.parametrize("bad", [True, -1, float("nan"), float("inf"), [1], "-1s"])
def test_to_timedelta_rejects(bad: Any) -> None:
    with pytest.raises(InvalidInput, match="delay"):
        to_timedelta(bad, what="delay")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(st.dictionaries(st.text(max_size=6), json_values, max_size=6), st.randoms())
def test_fingerprint_ignores_key_order(args: dict[str, Any], rnd: Any) -> None:
    items = list(args.items())
    rnd.shuffle(items)
    shuffled = dict(items)
    rule = Unique()
    assert unique_key("w", "q", args, rule) == unique_key("w", "q", shuffled, rule)


@given(
    st.dictionaries(st.sampled_from("abcde"), json_values, min_size=1, max_size=5),
    json_values,
)
def test_fingerprint_uses_only_the_chosen_keys(args: dict[str, Any], extra: Any) -> None:
    chosen = sorted(args)[:1]
    rule = Unique(keys=chosen)
    changed = {**args, "zz_other": extra}
    assert unique_key("w", "q", args, rule) == unique_key("w", "q", changed, rule)
    assert unique_key("w", "q", args, rule) == unique_key("w", "other", args, rule)
    by_queue = Unique(keys=chosen, by_queue=True)
    assert unique_key("w", "q", args, by_queue) != unique_key("w", "other", args, by_queue)


@given(st.text(max_size=8), st.text(max_size=8))
def test_fingerprint_distinguishes_values(a: str, b: str) -> None:
    same = unique_key("w", "q", {"to": a}, Unique()) == unique_key("w", "q", {"to": b}, Unique())
    assert same == (a == b)


def test_debouncer_passes_one_per_queue_per_window() -> None:
    now = [100.0]
    deb = Debouncer(window=0.05, clock=lambda: now[0])
    assert deb.allow("p", ["a", "b", "a"]) == ["a", "b"]
    assert deb.allow("p", ["a"]) == []
    assert deb.allow("other_prefix", ["a"]) == ["a"]
    now[0] += 0.049
    assert deb.allow("p", ["a", "c"]) == ["c"]
    now[0] += 0.002
    assert deb.allow("p", ["a", "b"]) == ["a", "b"]
    deb.reset()
    assert deb.allow("p", ["c"]) == ["c"]


def test_insert_channel_is_stable_and_fits() -> None:
    assert insert_channel("public") == "powertools.public.insert"
    long = "x" * 63
    channel = insert_channel(long)
    assert len(channel.encode()) <= 63
    assert channel == insert_channel(long) != insert_channel("x" * 62 + "y")
    assert channel.startswith("powertools.") and channel.endswith(".insert")
    with pytest.raises(InvalidInput):
        insert_channel("bad;prefix")
