"""Run-time fan-out and fan-in, written by the acker inside the flush transaction.

A running step's ``job.workflow.add(...)`` calls travel with its ack (``Effects.fanout``):

- ``check`` (before the ack statement) locks the workflows being added to, in id order, so
  two adders of one workflow serialise, and refuses an attempt whose additions clash with an
  existing step name or depend on a step that has not ended (the attempt then fails with that
  reason instead of writing anything). Additions to a cancelled workflow are dropped.
- ``insert`` (after the ack statement, only for acks that matched) inserts the new jobs,
  steps (``added_by`` = the adder) and edges.
- ``materialize`` gives every ``added_by(X)`` edge one ``added`` edge per step X added, when X
  ends; from then on ordinary promotion handles the fan-in.

Why a run-time step may depend only on its own run's additions, the adder, or steps that have
ended: a step that can still wait could (through a fan-in edge) be waiting for this very
addition, which would be a cycle nobody could see at build time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg

from powertools_core.db.identifiers import qualify
from powertools_core.jobs.insert import insert_ids_async
from powertools_core.jobs.spec import JobSpec
from powertools_core.runtime.outcomes import Ack
from powertools_core.workflows.builder import META_STEP, META_WORKFLOW_ID
from powertools_core.workflows.context import FanOut

TERMINAL: Final = frozenset({"completed", "discarded", "cancelled", "archived"})

LOCK_WORKFLOWS: Final = """
SELECT id, cancelled_at IS NOT NULL
FROM {prefix}.powertools_workflows
WHERE id = ANY(%(ids)s::bigint[])
ORDER BY id
FOR UPDATE
"""

# Which of the given (workflow, step name) pairs exist, and in which job state.
LOOKUP_STEPS: Final = """
SELECT u.workflow_id, u.name, coalesce(j.state::text, 'archived')
FROM unnest(%(workflow_ids)s::bigint[], %(names)s::text[]) AS u(workflow_id, name)
JOIN {prefix}.powertools_workflow_steps s ON s.workflow_id = u.workflow_id AND s.name = u.name
LEFT JOIN {prefix}.oban_jobs j ON j.id = s.job_id
"""

INSERT_STEPS_MANY: Final = """
INSERT INTO {prefix}.powertools_workflow_steps (workflow_id, name, job_id, added_by)
SELECT u.workflow_id, u.name, u.job_id, u.added_by
FROM unnest(%(workflow_ids)s::bigint[], %(names)s::text[], %(job_ids)s::bigint[],
            %(added_by)s::text[]) AS u(workflow_id, name, job_id, added_by)
"""

INSERT_EDGES_MANY: Final = """
INSERT INTO {prefix}.powertools_workflow_edges (workflow_id, step, dep, on_failure, kind)
SELECT u.workflow_id, u.step, u.dep, u.policy, u.kind
FROM unnest(%(workflow_ids)s::bigint[], %(steps)s::text[], %(deps)s::text[],
            %(policies)s::text[], %(kinds)s::text[]) AS u(workflow_id, step, dep, policy, kind)
"""

# For each (workflow, X): every step with an added_by(X) edge now also waits for each step X
# added (not for itself). Idempotent.
MATERIALIZE: Final = """
INSERT INTO {prefix}.powertools_workflow_edges (workflow_id, step, dep, on_failure, kind)
SELECT e.workflow_id, e.step, c.name, e.on_failure, 'added'
FROM unnest(%(workflow_ids)s::bigint[], %(names)s::text[]) AS x(workflow_id, name)
JOIN {prefix}.powertools_workflow_edges e
  ON e.workflow_id = x.workflow_id AND e.dep = x.name AND e.kind = 'added_by'
JOIN {prefix}.powertools_workflow_steps c
  ON c.workflow_id = x.workflow_id AND c.added_by = x.name AND c.name <> e.step
ON CONFLICT (workflow_id, step, dep) DO NOTHING
"""


@dataclass(slots=True)
class Inserted:
    """What ``insert`` wrote: the new suspended steps (to settle), queues made runnable, and
    the adders whose fan-in edges must be materialised."""

    count: int = 0
    suspended: list[int] = field(default_factory=list)
    queues: set[str] = field(default_factory=set)
    targets: set[tuple[int, str]] = field(default_factory=set)


def problems(fanout: FanOut, found: dict[tuple[int, str], str]) -> list[str]:
    """Why ``fanout`` cannot be written, given the states of the steps it names (pure)."""
    wf = fanout.workflow_id
    own = {a.name for a in fanout.additions}
    out = [
        f"step {a.name!r} already exists in workflow {wf}"
        for a in fanout.additions
        if (wf, a.name) in found
    ]
    for a in fanout.additions:
        for edge in a.edges:
            dep = edge.dep
            if dep in own or dep == fanout.adder:
                continue
            state = found.get((wf, dep))
            if state is None:
                out.append(f"step {a.name!r} depends on unknown step {dep!r}")
            elif edge.kind == "step" and state not in TERMINAL:
                out.append(
                    f"step {a.name!r} depends on {dep!r}, which has not ended ({state}); a step "
                    "added at run time may depend on steps added in the same run, on the step "
                    "adding it, on added_by(...), or on steps that have ended"
                )
    return out


def _lookups(fanouts: Iterable[FanOut]) -> tuple[list[int], list[str]]:
    workflow_ids: list[int] = []
    names: list[str] = []
    for fo in fanouts:
        own = {a.name for a in fo.additions}
        wanted = set(own)
        wanted.update(e.dep for a in fo.additions for e in a.edges if e.dep not in own)
        wanted.discard(fo.adder)
        for name in sorted(wanted):
            workflow_ids.append(fo.workflow_id)
            names.append(name)
    return workflow_ids, names


async def check(
    conn: psycopg.AsyncConnection[Any], prefix: str, batch: Sequence[Ack], refused: list[int]
) -> list[Ack]:
    """The batch to write: refused fan-outs replaced by their failed acks (ids in ``refused``),
    additions to cancelled workflows dropped."""
    fanouts = {a.id: a.effects.fanout for a in batch if a.effects and a.effects.fanout}
    if not fanouts:
        return list(batch)
    cur = await conn.execute(
        qualify(LOCK_WORKFLOWS, prefix),
        {"ids": sorted({fo.workflow_id for fo in fanouts.values()})},
        prepare=True,
    )
    cancelled = {r[0] for r in await cur.fetchall() if r[1]}
    workflow_ids, names = _lookups(fanouts.values())
    cur = await conn.execute(
        qualify(LOOKUP_STEPS, prefix),
        {"workflow_ids": workflow_ids, "names": names},
        prepare=True,
    )
    found = {(r[0], r[1]): r[2] for r in await cur.fetchall()}
    out: list[Ack] = []
    for ack in batch:
        fo = fanouts.get(ack.id)
        fx = ack.effects
        if fo is None or fx is None:
            out.append(ack)
        elif fo.workflow_id in cancelled:
            out.append(dataclasses.replace(ack, effects=dataclasses.replace(fx, fanout=None)))
        elif wrong := problems(fo, found):
            assert fx.refuse is not None
            refused.append(ack.id)
            out.append(fx.refuse("fan-out refused: " + "; ".join(wrong)))
        else:
            out.append(ack)
    return out


async def insert(
    conn: psycopg.AsyncConnection[Any], prefix: str, fanouts: Sequence[FanOut]
) -> Inserted:
    """Insert the steps of ``fanouts`` (already checked) in the caller's transaction."""
    out = Inserted()
    specs: list[JobSpec] = []
    owners: list[tuple[FanOut, str]] = []
    edges: dict[str, list[Any]] = {k: [] for k in ("workflow_ids", "steps", "deps", "policies")}
    edges["kinds"] = []
    for fo in fanouts:
        for a in fo.additions:
            spec = dataclasses.replace(
                a.spec,
                meta={**a.spec.meta, META_WORKFLOW_ID: fo.workflow_id, META_STEP: a.name},
                state="suspended" if a.edges else a.spec.state,
            )
            specs.append(spec)
            owners.append((fo, a.name))
            for e in a.edges:
                edges["workflow_ids"].append(fo.workflow_id)
                edges["steps"].append(e.step)
                edges["deps"].append(e.dep)
                edges["policies"].append(e.policy)
                edges["kinds"].append(e.kind)
                if e.kind == "added_by":
                    out.targets.add((fo.workflow_id, e.dep))
    if not specs:
        return out
    ids = await insert_ids_async(conn, specs, prefix)
    await conn.execute(
        qualify(INSERT_STEPS_MANY, prefix),
        {
            "workflow_ids": [fo.workflow_id for fo, _ in owners],
            "names": [name for _, name in owners],
            "job_ids": ids,
            "added_by": [fo.adder for fo, _ in owners],
        },
        prepare=True,
    )
    if edges["steps"]:
        await conn.execute(qualify(INSERT_EDGES_MANY, prefix), edges, prepare=True)
    out.count = len(ids)
    for spec, job_id in zip(specs, ids, strict=True):
        if spec.state == "suspended":
            out.suspended.append(job_id)
        elif spec.state == "available":
            out.queues.add(spec.queue)
    return out


async def materialize(
    conn: psycopg.AsyncConnection[Any], prefix: str, targets: Iterable[tuple[int, str]]
) -> None:
    """Fan-in edges for the steps ``targets`` (workflow id, name) added so far."""
    pairs = sorted(set(targets))
    if pairs:
        await conn.execute(
            qualify(MATERIALIZE, prefix),
            {"workflow_ids": [p[0] for p in pairs], "names": [p[1] for p in pairs]},
            prepare=True,
        )
