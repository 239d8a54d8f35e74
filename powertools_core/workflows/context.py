"""What a step sees while it runs: ``job.workflow`` and the signal in ``job.durable``.

The runtime loads both right after the fetch, in one query per kind for the whole batch (plain
jobs cost nothing: their ``meta`` is empty). A step reads the results of its *dependencies*
only: those have ended before it was promoted, so what it reads is committed and final.
Reading any other step's result could race that step, so it is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg

from powertools_core.db.arrays import int_array
from powertools_core.db.identifiers import qualify
from powertools_core.errors import InvalidInput
from powertools_core.jobs.model import Job
from powertools_core.jobs.spec import JobSpec
from powertools_core.workflows import graph
from powertools_core.workflows.batch import META_BATCH_CALLBACK, BatchSummary
from powertools_core.workflows.builder import (
    META_STEP,
    META_WORKFLOW_ID,
    check_step_spec,
    step_edges,
)
from powertools_core.workflows.durable import META_DURABLE, DurableContext, Signal, awaiting_meta
from powertools_core.workflows.values import NotJSON, encode

# Every dependency of the given steps with its state and result (the walk LOAD_BATCH counts;
# LOAD_DEPS reads shared dependencies once instead), probed per step through the edge and step
# primary keys. The LATERAL is fenced (OFFSET 0) so the planner cannot flatten
# it into hash joins over whole tables: with young statistics it did, and every fetched batch
# of steps scanned all edges and steps of every workflow (2.9 ms -> 1.0 ms for 100 steps of a
# 10,000-step workflow, and the scan grows with the tables while the probes do not).
_DEPS_OF_STEPS: Final = """
FROM {prefix}.powertools_workflow_steps s
CROSS JOIN LATERAL (
    SELECT e.dep, ds.added_by, coalesce(dj.state::text, 'archived') AS state, ds.result,
           ds.result_at IS NOT NULL AS has_result
    FROM {prefix}.powertools_workflow_edges e
    JOIN {prefix}.powertools_workflow_steps ds
      ON ds.workflow_id = e.workflow_id AND ds.name = e.dep
    LEFT JOIN {prefix}.oban_jobs dj ON dj.id = ds.job_id
    WHERE e.workflow_id = s.workflow_id AND e.step = s.name
    OFFSET 0
) d
WHERE s.job_id = ANY(%(ids)s::bigint[])
"""

# What a fetched batch of steps depends on, each dependency's state and result read once per
# batch however many of the steps share it (100 children of one root: one probe of the root, not
# 100). The edges are probed per step as in ``_DEPS_OF_STEPS``; the row of the first step naming
# a dependency carries its details, the others carry the name only (NULL state).
LOAD_DEPS: Final = """
WITH e AS MATERIALIZED (
    SELECT s.job_id, s.workflow_id, x.dep,
           row_number() OVER (PARTITION BY s.workflow_id, x.dep) = 1 AS first
    FROM {prefix}.powertools_workflow_steps s
    CROSS JOIN LATERAL (
        SELECT e.dep FROM {prefix}.powertools_workflow_edges e
        WHERE e.workflow_id = s.workflow_id AND e.step = s.name
        OFFSET 0
    ) x
    WHERE s.job_id = ANY(%(ids)s::bigint[])
)
SELECT e.job_id, e.workflow_id, e.dep, i.added_by, i.state, i.result, i.has_result
FROM e
LEFT JOIN LATERAL (
    SELECT ds.added_by, coalesce(dj.state::text, 'archived') AS state, ds.result,
           ds.result_at IS NOT NULL AS has_result
    FROM {prefix}.powertools_workflow_steps ds
    LEFT JOIN {prefix}.oban_jobs dj ON dj.id = ds.job_id
    WHERE e.first AND ds.workflow_id = e.workflow_id AND ds.name = e.dep
    OFFSET 0
) i ON true
"""

# How the members of each batch callback ended (a callback does not load member results).
LOAD_BATCH: Final = "SELECT s.job_id, d.state, count(*)" + _DEPS_OF_STEPS + "GROUP BY 1, 2\n"

# The oldest unconsumed signal matching what each resumed job awaited.
LOAD_SIGNALS: Final = """
SELECT DISTINCT ON (j.id) j.id, s.id, s.name, s.payload, s.inserted_at
FROM {prefix}.oban_jobs j
JOIN {prefix}.powertools_signals s
  ON s.target = j.id::text AND s.consumed_at IS NULL
 AND s.name IN (SELECT jsonb_array_elements_text(j.meta -> 'durable' -> 'await' -> 'signals'))
WHERE j.id = ANY(%(ids)s::bigint[])
ORDER BY j.id, s.id
"""


@dataclass(frozen=True, slots=True)
class Dependency:
    """One dependency of the running step as it ended."""

    name: str
    state: str
    added_by: str | None
    has_result: bool
    result: Any


@dataclass(frozen=True, slots=True)
class Addition:
    """A step added at run time, inserted when the adding attempt is acked."""

    name: str
    spec: JobSpec
    edges: tuple[graph.Edge, ...]


@dataclass(frozen=True, slots=True)
class FanOut:
    """What one attempt added: ``additions`` to workflow ``workflow_id`` by step ``adder``."""

    workflow_id: int
    adder: str
    additions: tuple[Addition, ...]


@dataclass(slots=True)
class WorkflowContext:
    """``job.workflow``: the running step's view of its workflow.

    Example::

        def perform(self, job):
            rows = job.workflow.result("fetch")          # what "fetch" returned
            for part in job.workflow.added_by("split").values(): ...   # fan-in
    """

    workflow_id: int
    step: str
    dependencies: dict[str, Dependency] = field(default_factory=dict)
    additions: list[Addition] = field(default_factory=list)
    batch: BatchSummary | None = None
    """In a batch callback: how the batch's jobs ended (``None`` in other steps)."""
    _added: set[str] = field(default_factory=set, repr=False, compare=False)
    """The names in ``additions`` (a clash check per ``add`` without a scan: fan-outs are wide)."""

    def add(
        self,
        name: str,
        spec: JobSpec,
        deps: Iterable[str | graph.AddedBy] | str | graph.AddedBy = (),
        *,
        on_failure: str | Mapping[str, str] = "cascade",
    ) -> WorkflowContext:
        """Add a step to this workflow (fan-out), e.g. one per file::

            for f in files:
                job.workflow.add(f"parse-{f}", Parse.new({"file": f}))

        The steps are inserted when this attempt is acked (with ``Next``/``Await`` too), in the
        same transaction, so a failed or retried attempt adds nothing twice. Their deps may be
        steps added earlier in this run, this step itself, steps that have already ended, or
        ``added_by(...)``. Names must be new in the workflow: a clash fails the attempt.
        """
        graph.check_name(name)
        if len(self._added) != len(self.additions):
            self._added = {a.name for a in self.additions}
        if name == self.step or name in self._added:
            raise InvalidInput(f"step {self.step!r} already adds or is a step named {name!r}")
        check_step_spec(name, spec)
        for what, value in (("args", spec.args), ("meta", spec.meta)):
            try:
                encode(value, f"the {what} of added step {name!r}")
            except NotJSON as exc:
                raise InvalidInput(str(exc)) from None
        edges = step_edges(name, deps, on_failure)
        self.additions.append(Addition(name, spec, tuple(edges)))
        self._added.add(name)
        if edges:
            self._check_cycles()
        return self

    def _check_cycles(self) -> None:
        """Steps added in one run, with the fan-in edges ``added_by(this step)`` will get."""
        names = [a.name for a in self.additions]
        known = set(names)
        edges = [e for a in self.additions for e in a.edges if e.dep in known]
        for a in self.additions:
            if any(e.kind == "added_by" and e.dep == self.step for e in a.edges):
                edges += [
                    graph.Edge(a.name, other, kind="added") for other in names if other != a.name
                ]
        cycle = graph.find_cycle(names, edges)
        if cycle:
            self._added.discard(self.additions.pop().name)
            raise InvalidInput(f"adding these steps makes a dependency cycle: {' -> '.join(cycle)}")

    def result(self, step: str) -> Any:
        """The JSON result ``step`` returned; ``step`` must be one of this step's deps."""
        dep = self._dep(step)
        if not dep.has_result:
            raise InvalidInput(
                f"dependency {step!r} of step {self.step!r} ended {dep.state} without a result",
                hint="use job.workflow.get(name, default) when a dep may fail (continue edges)",
            )
        return dep.result

    def get(self, step: str, default: Any = None) -> Any:
        """Like :meth:`result`, but ``default`` when the dependency left no result."""
        dep = self._dep(step)
        return dep.result if dep.has_result else default

    def results(self) -> dict[str, Any]:
        """Every dependency's result, by step name (deps without a result are left out)."""
        return {n: d.result for n, d in sorted(self.dependencies.items()) if d.has_result}

    def added_by(self, step: str) -> dict[str, Any]:
        """The results of the steps ``step`` added at run time (this step's fan-in deps)."""
        return {
            n: d.result
            for n, d in sorted(self.dependencies.items())
            if d.added_by == step and d.has_result
        }

    def _dep(self, step: str) -> Dependency:
        dep = self.dependencies.get(step)
        if dep is None:
            raise InvalidInput(
                f"step {self.step!r} does not depend on {step!r}, so its result is not loaded",
                hint="a step reads only its dependencies' results: add it to deps=[...]",
            )
        return dep


def is_step(job: Job) -> bool:
    return META_WORKFLOW_ID in job.meta


def is_resumed(job: Job) -> bool:
    return META_DURABLE in job.meta and awaiting_meta(job.meta) is not None


def needs_context(job: Job) -> bool:
    """Whether the runtime must load something before this job runs."""
    meta = job.meta
    return bool(meta) and (META_WORKFLOW_ID in meta or META_DURABLE in meta)


def _new_context(job: Job) -> WorkflowContext:
    return WorkflowContext(
        workflow_id=int(job.meta[META_WORKFLOW_ID]), step=str(job.meta.get(META_STEP, ""))
    )


def _apply_deps(jobs: Iterable[Job], rows: Sequence[Any]) -> None:
    """LOAD_DEPS rows into each step's context; a dependency shared by several steps is one
    (frozen) ``Dependency``, built from the one row that carries its details."""
    by_id = {j.id: j for j in jobs}
    for job in by_id.values():
        job.workflow_context = _new_context(job)
    shared: dict[tuple[int, str], Dependency] = {
        (workflow_id, name): Dependency(name, state, added_by, bool(has_result), result)
        for _, workflow_id, name, added_by, state, result, has_result in rows
        if state is not None
    }
    for job_id, workflow_id, name, *_ in rows:
        ctx = by_id[job_id].workflow_context
        assert ctx is not None
        ctx.dependencies[name] = shared[(workflow_id, name)]


def _apply_signals(jobs: Iterable[Job], rows: Sequence[Any]) -> None:
    by_id = {j.id: j for j in jobs}
    for job in by_id.values():
        job.durable_context = DurableContext.from_meta(job.meta)
    for job_id, signal_id, name, payload, at in rows:
        ctx = by_id[job_id].durable_context
        assert ctx is not None
        ctx.signal = Signal(id=signal_id, name=name, payload=payload, inserted_at=at)
        ctx.timed_out = False


def _apply_batch(jobs: Iterable[Job], rows: Sequence[Any]) -> None:
    by_id = {j.id: j for j in jobs}
    counts: dict[int, dict[str, int]] = {j: {} for j in by_id}
    for job_id, state, n in rows:
        counts[job_id][state] = int(n)
    for job_id, job in by_id.items():
        ctx = _new_context(job)
        ctx.batch = BatchSummary(
            batch_id=ctx.workflow_id,
            callback=str(job.meta[META_BATCH_CALLBACK]),
            total=sum(counts[job_id].values()),
            counts=dict(sorted(counts[job_id].items())),
        )
        job.workflow_context = ctx


def _split(jobs: Iterable[Job]) -> tuple[list[Job], list[Job], list[Job]]:
    all_steps = [j for j in jobs if is_step(j)]
    callbacks = [j for j in all_steps if META_BATCH_CALLBACK in j.meta]
    steps = [j for j in all_steps if META_BATCH_CALLBACK not in j.meta]
    resumed = [j for j in jobs if is_resumed(j)]
    return steps, callbacks, resumed


async def load_async(conn: psycopg.AsyncConnection[Any], prefix: str, jobs: Iterable[Job]) -> None:
    """Attach ``job.workflow`` to steps (a summary to batch callbacks) and the waking signal to
    resumed durable jobs."""
    steps, callbacks, resumed = _split(jobs)
    if callbacks:
        cur = await conn.execute(
            qualify(LOAD_BATCH, prefix), {"ids": int_array([j.id for j in callbacks])}, prepare=True
        )
        _apply_batch(callbacks, await cur.fetchall())
    if steps:
        cur = await conn.execute(
            qualify(LOAD_DEPS, prefix), {"ids": int_array([j.id for j in steps])}, prepare=True
        )
        _apply_deps(steps, await cur.fetchall())
    if resumed:
        cur = await conn.execute(
            qualify(LOAD_SIGNALS, prefix), {"ids": [j.id for j in resumed]}, prepare=True
        )
        _apply_signals(resumed, await cur.fetchall())


def load(conn: psycopg.Connection[Any], prefix: str, jobs: Iterable[Job]) -> None:
    """Sync twin of :func:`load_async` (for tests and scripts that call ``perform`` by hand)."""
    steps, callbacks, resumed = _split(jobs)
    if callbacks:
        rows = conn.execute(
            qualify(LOAD_BATCH, prefix), {"ids": int_array([j.id for j in callbacks])}
        ).fetchall()
        _apply_batch(callbacks, rows)
    if steps:
        rows = conn.execute(
            qualify(LOAD_DEPS, prefix), {"ids": int_array([j.id for j in steps])}
        ).fetchall()
        _apply_deps(steps, rows)
    if resumed:
        rows = conn.execute(
            qualify(LOAD_SIGNALS, prefix), {"ids": [j.id for j in resumed]}
        ).fetchall()
        _apply_signals(resumed, rows)
