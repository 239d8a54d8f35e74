"""The demo's workers: what a small application's background jobs look like.

``powertools worker run --app examples.demo_app`` runs them. Each one does a little real work
(sleeps stand in for network calls) and a few fail on purpose so the demo shows retries,
backoff, scheduled jobs and discards.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from pydantic import BaseModel

from powertools_core.jobs.model import Job
from powertools_core.workers import Discard, Worker


class SendWelcomeEmail(Worker):
    """Async I/O-bound work: runs on the event loop."""

    queue = "mailers"
    max_attempts = 5

    class Args(BaseModel):
        user_id: int
        email: str

    async def perform(self, job: Job) -> Any:
        await asyncio.sleep(0.02)  # the SMTP round trip
        return None


class ResizeImage(Worker):
    """Blocking work: a plain ``def`` runs in the worker's thread pool."""

    queue = "media"

    class Args(BaseModel):
        image_id: int
        width: int

    def perform(self, job: Job) -> Any:
        data = f"image-{job.args.image_id}".encode() * 2000
        for _ in range(20):
            data = hashlib.sha256(data).digest() * 64
        return None


class DeliverWebhook(Worker):
    """Fails its first ``failures`` attempts (a flaky endpoint); retries a second later."""

    queue = "webhooks"
    max_attempts = 3

    class Args(BaseModel):
        endpoint: str
        failures: int = 0

    def backoff(self, attempt: int) -> float:
        return 1.0

    async def perform(self, job: Job) -> Any:
        await asyncio.sleep(0.01)
        if job.attempt <= job.args.failures:
            raise ConnectionError(f"{job.args.endpoint} answered 503 (attempt {job.attempt})")
        return None


class ChargeCard(Worker):
    """Gives up for good on bad input instead of retrying."""

    queue = "billing"
    max_attempts = 5

    class Args(BaseModel):
        order_id: int
        amount_cents: int

    async def perform(self, job: Job) -> Any:
        if job.args.amount_cents <= 0:
            return Discard(f"order {job.args.order_id}: amount must be positive")
        await asyncio.sleep(0.005)
        return None
