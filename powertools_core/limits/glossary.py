"""The rate-limit glossary: one text shown in ``limiter explain --help``, ``limiter simulate
--help`` and docs/limits.md (a test keeps the three identical)."""

from __future__ import annotations

from typing import Final

GLOSSARY: Final = """\
Rate-limit glossary

token bucket: a rate limit. It holds up to bucket_capacity tokens and refills continuously at \
bucket_capacity per bucket_span; a full bucket stops filling. A job takes weight tokens when it \
is admitted; tokens are never given back.

bucket_capacity: the most tokens a bucket holds, so the largest burst it admits at once.

bucket_span: the time a bucket takes to refill from empty to full, written 500ms, 30s, 10m, 2h \
or 7d.

weight: the tokens one job costs (default 1). weight_by reads it from the job's args. A weight \
above bucket_capacity could never run and is rejected when the worker is defined.

partition: one independent bucket or counter of a limit, chosen by partition_by (an args key or \
a function of the args), e.g. one per tenant. A limit without partition_by has one global \
partition.

concurrency limit: global_limit caps the jobs executing under a limit across all nodes; \
partition_limit caps them per partition. A slot is taken while a job runs and freed when it \
finishes; a worker process keeps freed slots leased for its next jobs, and gives back what it \
has not needed within about a second.

cooldown: an operator hold on a limit (or one partition) until a time, set by limiter cooldown \
and lifted by limiter resume. It blocks regardless of tokens or slots.

Blocker codes: limit_reached (not enough tokens; retry_at is the exact moment enough will have \
refilled), cooldown (retry_at is the end of the hold), concurrency_reached and \
partition_concurrency_reached (slots free when running jobs finish, so no retry_at), \
queue_paused, no_producer (no live worker serves the queue), scheduled_in_future, \
out_of_attempts. A suspended workflow step or durable job says why it waits: \
waiting_on_dependencies, waiting_on_retryable_dependency, ready_to_promote (its dependencies \
ended; the leader's reconciler moves it on), waiting_on_signal (retry_at is the wait's \
timeout, if any), expired_wait, cancel_requested.
"""
