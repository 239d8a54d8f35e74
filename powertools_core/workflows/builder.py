"""``Workflow``: declare steps (jobs) and their dependencies, validate, insert atomically."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from powertools_core.db.identifiers import qualify
from powertools_core.errors import InvalidInput
from powertools_core.jobs.insert import caller_errors, default_prefix, insert_ids, sync_connection
from powertools_core.jobs.spec import JobSpec
from powertools_core.workflows import graph, store

META_WORKFLOW_ID: Final = "workflow_id"
META_STEP: Final = "workflow_step"


@dataclass(frozen=True, slots=True)
class InsertedWorkflow:
    """What ``Workflow.insert`` wrote: the workflow id and each step's job id."""

    id: int
    name: str
    job_ids: Mapping[str, int]


def check_step_spec(name: str, spec: object) -> JobSpec:
    if not isinstance(spec, JobSpec):
        raise InvalidInput(f"step {name!r}: expected a JobSpec (Worker.new(...)), got {spec!r}")
    if spec.receipt_key is not None:
        raise InvalidInput(
            f"step {name!r}: unique jobs cannot be workflow steps",
            hint="pass unique=False to Worker.new",
        )
    return spec


def step_edges(
    name: str,
    deps: Iterable[str | graph.AddedBy] | str | graph.AddedBy,
    on_failure: str | Mapping[str, str],
) -> list[graph.Edge]:
    """The edges of step ``name`` (validated; ``on_failure`` one policy or one per dep)."""
    if isinstance(deps, str | graph.AddedBy):
        deps = (deps,)
    kinds = graph.split_deps(deps, f"step {name!r}")
    if name in kinds:
        raise InvalidInput(f"step {name!r} depends on itself")
    if isinstance(on_failure, Mapping):
        extra = set(on_failure) - set(kinds)
        if extra:
            raise InvalidInput(f"step {name!r}: on_failure names non-deps {sorted(extra)}")
        policies = {d: graph.check_policy(on_failure.get(d, "cascade"), name) for d in kinds}
    else:
        policy = graph.check_policy(on_failure, name)
        policies = {d: policy for d in kinds}
    return [graph.Edge(name, d, policies[d], kinds[d]) for d in kinds]


class Workflow:
    """A DAG of jobs. Steps with dependencies wait in ``suspended`` until the deps end.

    Example::

        wf = Workflow("import-42")
        wf.add("fetch", Fetch.new({"url": url}))
        wf.add("parse", Parse.new({}), deps=["fetch"])
        wf.add("cleanup", Cleanup.new({}), deps=["parse"], on_failure="continue")
        inserted = wf.insert(conn=conn)

    ``on_failure`` is per edge: ``"cascade"`` (default) cancels the step when that dep is
    discarded or cancelled (``cancelled_by_dependency``); ``"continue"`` treats the failed dep
    as satisfied. Give a mapping ``{dep: policy}`` to mix them.

    Fan-out at run time: a running step calls ``job.workflow.add(name, spec)``; the steps are
    inserted when its attempt is acked. ``deps=[added_by("split")]`` waits for ``split`` and
    every step it added (fan-in).
    """

    def __init__(self, name: str) -> None:
        self.name = graph.check_name(name, "workflow name")
        self.kind = "workflow"
        self.run_if: dict[str, graph.RunIf] = {}
        """Steps that run only under a condition on their deps (a batch's on_discard)."""
        self._steps: dict[str, JobSpec] = {}
        self._order: list[str] = []
        self._edges: list[graph.Edge] = []

    @property
    def steps(self) -> tuple[str, ...]:
        return tuple(self._order)

    @property
    def edges(self) -> tuple[graph.Edge, ...]:
        return tuple(self._edges)

    def add(
        self,
        name: str,
        spec: JobSpec,
        deps: Iterable[str | graph.AddedBy] | str | graph.AddedBy = (),
        *,
        on_failure: str | Mapping[str, str] = "cascade",
    ) -> Workflow:
        """Add a step; ``deps`` name earlier or later steps (checked at insert), or
        ``added_by("x")`` for x and every step x adds while it runs (fan-in)."""
        graph.check_name(name)
        if name in self._steps:
            raise InvalidInput(f"{self.name}: duplicate step name {name!r}")
        check_step_spec(name, spec)
        self._steps[name] = spec
        self._order.append(name)
        self._edges.extend(step_edges(name, deps, on_failure))
        return self

    def validate(self) -> list[str]:
        """Check the graph; returns the steps in dependency order."""
        graph.validate(self._order, self._edges, workflow=self.name)
        return graph.topo_order(self._order, self._edges)

    def specs(self, workflow_id: int) -> list[tuple[str, JobSpec]]:
        """The job specs as inserted: meta tagged, steps with deps ``suspended``."""
        has_deps = {e.step for e in self._edges}
        out = []
        for name in self.validate():
            spec = self._steps[name]
            meta = {**spec.meta, META_WORKFLOW_ID: workflow_id, META_STEP: name}
            state = "suspended" if name in has_deps else spec.state
            out.append((name, dataclasses.replace(spec, meta=meta, state=state)))
        return out

    def insert(self, *, conn: Any, prefix: str | None = None) -> InsertedWorkflow:
        """Insert the workflow row, its steps, edges and jobs in the caller's transaction (its
        own transaction on an autocommit connection)."""
        self.validate()
        pg = sync_connection(conn)
        schema = default_prefix(prefix)
        with caller_errors(), store.own_tx(pg):
            row = pg.execute(
                qualify(store.INSERT_WORKFLOW, schema), {"name": self.name, "kind": self.kind}
            ).fetchone()
            assert row is not None
            workflow_id = int(row[0])
            named = self.specs(workflow_id)
            job_ids = insert_ids(pg, [s for _, s in named], schema)
            ids = dict(zip((n for n, _ in named), job_ids, strict=True))
            pg.execute(
                qualify(store.INSERT_STEPS, schema),
                {
                    "workflow_id": workflow_id,
                    "names": list(ids),
                    "job_ids": list(ids.values()),
                    "added_by": [None] * len(ids),
                    "run_if": [self.run_if.get(n) for n in ids],
                },
            )
            if self._edges:
                pg.execute(
                    qualify(store.INSERT_EDGES, schema),
                    {
                        "workflow_id": workflow_id,
                        "steps": [e.step for e in self._edges],
                        "deps": [e.dep for e in self._edges],
                        "policies": [e.policy for e in self._edges],
                        "kinds": [e.kind for e in self._edges],
                    },
                )
        return InsertedWorkflow(id=workflow_id, name=self.name, job_ids=ids)
