"""Limit declarations: validated when the worker class is defined, with clear errors."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from powertools_core.errors import InvalidInput
from powertools_core.limits.declarations import (
    ConcurrencyLimit,
    RateLimit,
    resolve_partition,
    resolve_weight,
    worker_demands,
)
from powertools_core.workers import Worker


def _worker(name: str, limits: Any) -> type[Worker]:
    def perform(self: Worker, job: Any) -> None:
        return None

    return type(name, (Worker,), {"limits": limits, "perform": perform, "__module__": __name__})


def test_a_weight_above_the_capacity_fails_at_class_definition() -> None:
    with pytest.raises(InvalidInput, match="weight 5 exceeds bucket_capacity 3"):
        _worker(
            "TooHeavy", (RateLimit("decl-heavy", bucket_capacity=3, bucket_span="1s", weight=5),)
        )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: RateLimit("", bucket_capacity=1, bucket_span="1s"), "name must be"),
        (lambda: RateLimit("x", bucket_capacity=0, bucket_span="1s"), "bucket_capacity must be"),
        (lambda: RateLimit("x", bucket_capacity=1, bucket_span="soon"), "invalid rate limit"),
        (lambda: RateLimit("x", bucket_capacity=1, bucket_span=0), "at least 1ms"),
        (lambda: RateLimit("x", bucket_capacity=1, bucket_span="1s", weight=0), "weight must"),
        (lambda: RateLimit("x", bucket_capacity=1, bucket_span="1s", partition_by=3), "args key"),
        (lambda: ConcurrencyLimit("x"), "global_limit, partition_limit, or both"),
        (lambda: ConcurrencyLimit("x", partition_limit=2), "partition_limit needs partition_by"),
        (lambda: ConcurrencyLimit("x", global_limit=2, partition_by="t"), "needs partition_limit"),
        (lambda: ConcurrencyLimit("x", global_limit=-1), "global_limit must be"),
    ],
)
def test_bad_declarations_say_what_is_wrong(make: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        make()


def test_limits_must_be_a_tuple_of_limits_with_distinct_names() -> None:
    with pytest.raises(InvalidInput, match="tuple"):
        _worker("NotATuple", RateLimit("decl-solo", bucket_capacity=1, bucket_span="1s"))
    with pytest.raises(InvalidInput, match="may only hold"):
        _worker("Junk", ("nope",))
    twice = RateLimit("decl-twice", bucket_capacity=1, bucket_span="1s")
    with pytest.raises(InvalidInput, match="declared twice"):
        _worker("Twice", (twice, twice))


def test_workers_sharing_a_name_must_agree_on_the_numbers() -> None:
    _worker("SharedA", (RateLimit("decl-shared", bucket_capacity=10, bucket_span="1s"),))
    _worker(
        "SharedB",
        (RateLimit("decl-shared", bucket_capacity=10, bucket_span=timedelta(seconds=1)),),
    )
    with pytest.raises(InvalidInput, match="also declared by"):
        _worker("SharedC", (RateLimit("decl-shared", bucket_capacity=11, bucket_span="1s"),))


def test_partition_and_weight_resolve_from_args_keys_or_functions() -> None:
    by_key = RateLimit(
        "r", bucket_capacity=10, bucket_span="1m", partition_by="tenant", weight_by="cost"
    )
    assert resolve_partition(by_key, {"tenant": 42}) == "42"
    assert resolve_weight(by_key, {"cost": 3}) == 3
    by_fn = ConcurrencyLimit(
        "c", global_limit=5, partition_limit=1, partition_by=lambda a: a["host"].lower()
    )
    demands = worker_demands((by_fn,), {"host": "Example.COM"})
    assert [(d.gate.kind, d.gate.partition, d.gate.capacity) for d in demands] == [
        ("concurrency", "", 5),
        ("partition_concurrency", "example.com", 1),
    ]
    with pytest.raises(InvalidInput, match="no 'tenant' key"):
        resolve_partition(by_key, {})
    with pytest.raises(InvalidInput, match="positive integer"):
        resolve_weight(by_key, {"cost": "3"})
    with pytest.raises(InvalidInput, match="exceeds bucket_capacity"):
        resolve_weight(by_key, {"cost": 11})
    with pytest.raises(InvalidInput, match="failed on these args"):
        resolve_partition(by_fn, {"host": None})
    with pytest.raises(InvalidInput, match="empty string"):
        resolve_partition(by_key, {"tenant": ""})
