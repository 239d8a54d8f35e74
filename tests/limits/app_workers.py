"""Workers with limits, imported by the limiter tests (in-process and via --app)."""

from __future__ import annotations

from typing import Any

from powertools_core import ConcurrencyLimit, RateLimit
from powertools_core.workers import Worker


class LimApiCall(Worker):
    """Three per second, globally."""

    queue = "lim_api"
    limits = (RateLimit("lim-api", bucket_capacity=3, bucket_span="1s"),)

    def perform(self, job: Any) -> None:
        return None


class LimTenantSync(Worker):
    """Two per minute per tenant, weighted by args.cost; at most one running per tenant."""

    queue = "lim_tenant"
    limits = (
        RateLimit(
            "lim-tenant",
            bucket_capacity=2,
            bucket_span="1m",
            partition_by="tenant",
            weight_by="cost",
        ),
        ConcurrencyLimit(
            "lim-tenant-run", global_limit=3, partition_limit=1, partition_by="tenant"
        ),
    )

    def perform(self, job: Any) -> None:
        return None


class LimPlain(Worker):
    """No limits at all."""

    queue = "lim_plain"

    def perform(self, job: Any) -> None:
        return None
