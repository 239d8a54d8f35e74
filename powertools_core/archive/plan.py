"""The plan of an archive, restore or prune run, and the preview token that pins it (pure).

A preview is stateless, like ``ops``: its token is the start of a SHA-256 over the kind, the
selection and, per group of the selected rows ((state, queue, worker) for jobs, action for audit
events), the count, the sum and the range of their ids, plus the ids the run would leave alone.
Executing with the token recomputes the plan from the live tables and refuses when it differs.

A retention selects by age, and ages grow: rows that were too young at the preview become old
enough later. So for ``archive run`` and ``archive prune`` the plan includes the instant the
cutoffs were computed from (``as_of``, whole seconds), and the token carries it in clear
(``<hash>@<YYYYMMDDThhmmssZ>``): executing with the token computes the cutoffs from that instant,
not from now, so it moves exactly the rows that were old enough at the preview, and refuses if
any row joined or left that set since. ``archive restore`` selects by ids, run and filters (no
clock), and its token is the hash alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from powertools_core.archive.policy import utc_naive
from powertools_core.errors import InvalidInput
from powertools_core.ops.errors import PreviewDrifted
from powertools_core.ops.preview import TOKEN_LENGTH, token_matches, token_of
from powertools_core.schema.oban import TERMINAL_STATES

PLAN_VERSION: Final = 1
SAMPLE_SIZE: Final = 5
TIME_SEPARATOR: Final = "@"
TOKEN_TIME_FORMAT: Final = "%Y%m%dT%H%M%SZ"
TIMED_KINDS: Final = frozenset({"archive", "audit_archive", "prune", "audit_prune"})
"""Kinds whose selection depends on the clock (their token pins ``as_of``)."""
ROWS: Final[dict[str, str]] = {
    "archive": "jobs",
    "audit_archive": "audit events",
    "restore": "archived jobs",
    "prune": "archived jobs",
    "audit_prune": "archived audit events",
}
TOKEN_HINT: Final = "pass the preview_token that --dry-run of the same command printed"


@dataclass(frozen=True, slots=True)
class PlanGroup:
    """Selected rows sharing a key: (state, queue, worker) for jobs, (action,) for audit events."""

    key: tuple[str, ...]
    count: int
    id_sum: str
    """Text: the sum of many bigint ids does not fit a bigint."""
    id_min: int
    id_max: int
    oldest: datetime | None = None


@dataclass(frozen=True, slots=True)
class PreviewToken:
    """A parsed ``--preview-token``: the start of a plan hash, and the pinned instant if any."""

    text: str
    hash_prefix: str
    as_of: datetime | None


def pin(now: datetime) -> datetime:
    """The instant a preview computes cutoffs from: naive UTC, whole seconds (the token's
    precision, so the execution recomputes exactly the same cutoffs)."""
    return utc_naive(now).replace(microsecond=0)


def plan_hash(
    kind: str,
    selection: Mapping[str, Any],
    groups: Sequence[PlanGroup],
    *,
    left_alone: Iterable[int] = (),
    left_alone_count: int = 0,
    not_found: Iterable[int] = (),
) -> str:
    """Lower-case hex SHA-256 of the plan (same inputs, same hash). ``left_alone`` are the ids
    the run would not move (archived earlier and live again, or live again and archived)."""
    payload = {
        "v": PLAN_VERSION,
        "kind": kind,
        "selection": dict(selection),
        "groups": [
            [*g.key, g.count, g.id_sum, g.id_min, g.id_max]
            for g in sorted(groups, key=lambda g: g.key)
        ],
        "left_alone": [sorted(left_alone), left_alone_count],
        "not_found": sorted(not_found),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def make_token(hash_hex: str, as_of: datetime | None) -> str:
    """``<16 hex>`` or, for a clock-based selection, ``<16 hex>@<YYYYMMDDThhmmssZ>``."""
    head = token_of(hash_hex)
    if as_of is None:
        return head
    return f"{head}{TIME_SEPARATOR}{pin(as_of).strftime(TOKEN_TIME_FORMAT)}"


def parse_token(text: str, kind: str) -> PreviewToken:
    """Validate a token for ``kind`` before anything touches the database."""
    cleaned = text.strip().lower()
    head, sep, stamp = cleaned.partition(TIME_SEPARATOR)
    if not 8 <= len(head) <= 64 or any(c not in "0123456789abcdef" for c in head):
        raise InvalidInput(f"invalid --preview-token {text.strip()!r}", hint=TOKEN_HINT)
    timed = kind in TIMED_KINDS
    if timed and not sep:
        raise InvalidInput(
            f"--preview-token {text.strip()!r} has no @time part: it is not the token of a "
            "retention preview",
            hint=TOKEN_HINT,
        )
    if not timed and sep:
        raise InvalidInput(
            f"--preview-token {text.strip()!r} has an @time part: it is not the token of a "
            "restore preview",
            hint=TOKEN_HINT,
        )
    as_of = None
    if timed:
        try:
            as_of = datetime.strptime(stamp.upper(), TOKEN_TIME_FORMAT)
        except ValueError:
            raise InvalidInput(
                f"invalid time {stamp!r} in --preview-token {text.strip()!r}", hint=TOKEN_HINT
            ) from None
    return PreviewToken(text=text.strip(), hash_prefix=head, as_of=as_of)


def check_token(token: PreviewToken, kind: str, hash_hex: str, total: int) -> None:
    """Refuse (``PreviewDrifted``, exit 2) when the live plan is not the previewed one."""
    if token_matches(token.hash_prefix, hash_hex):
        return
    raise PreviewDrifted(
        f"the selection changed since preview {token.text} (it now holds {total:,} "
        f"{ROWS[kind]}, token {make_token(hash_hex, token.as_of)}); nothing was changed",
        hint="run the same command with --dry-run again, review, then execute",
    )


@dataclass(frozen=True, slots=True)
class Summary:
    """What a preview shows of its groups."""

    total: int
    by_state: dict[str, int]
    by_queue: dict[str, int]
    by_worker: dict[str, int]
    pairs: list[tuple[tuple[str, ...], int, datetime | None]]
    """(state, queue) for jobs or (action,) for audit events, with count and oldest, in the
    order the groups came (the ``groups`` a preview has always listed)."""


def _by_count(counts: Mapping[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def summarise(groups: Sequence[PlanGroup], *, audit: bool) -> Summary:
    """Counts by state/queue/worker (jobs; terminal states in their usual order, queues and
    workers by count) and the per-(state, queue) or per-action groups with their oldest row."""
    by_state: dict[str, int] = {}
    by_queue: dict[str, int] = {}
    by_worker: dict[str, int] = {}
    pairs: dict[tuple[str, ...], tuple[int, datetime | None]] = {}
    for g in groups:
        key = g.key[:1] if audit else g.key[:2]
        count, oldest = pairs.get(key, (0, None))
        if g.oldest is not None and (oldest is None or g.oldest < oldest):
            oldest = g.oldest
        pairs[key] = (count + g.count, oldest)
        if not audit:
            state, queue, worker = g.key
            by_state[state] = by_state.get(state, 0) + g.count
            by_queue[queue] = by_queue.get(queue, 0) + g.count
            by_worker[worker] = by_worker.get(worker, 0) + g.count
    order = {s: i for i, s in enumerate(TERMINAL_STATES)}
    return Summary(
        total=sum(g.count for g in groups),
        by_state=dict(sorted(by_state.items(), key=lambda kv: order.get(kv[0], len(order)))),
        by_queue=_by_count(by_queue),
        by_worker=_by_count(by_worker),
        pairs=[(k, c, o) for k, (c, o) in pairs.items()],
    )


__all__ = [
    "SAMPLE_SIZE",
    "TIMED_KINDS",
    "TOKEN_LENGTH",
    "PlanGroup",
    "PreviewToken",
    "Summary",
    "check_token",
    "make_token",
    "parse_token",
    "pin",
    "plan_hash",
    "summarise",
]
