"""Pure workflow graph logic: validation, topological order and blocker derivation (no I/O)."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from powertools_core.errors import InvalidInput

Policy = Literal["cascade", "continue"]
POLICIES: Final = ("cascade", "continue")

RunIf = Literal["any_discarded"]
ANY_DISCARDED: Final = "any_discarded"
NOT_NEEDED_PREFIX: Final = "not_needed:"
"""How a skipped conditional step (``run_if``) is written into the job's ``errors``."""

EdgeKind = Literal["step", "added_by", "added"]
"""``step``: declared on a step; ``added_by``: on "the steps X adds at run time" (the dependent
waits for X and all of them); ``added``: one such step, recorded when X added it."""

NAME_MAX: Final = 200

TERMINAL_STATES: Final = frozenset({"completed", "discarded", "cancelled"})
FAILED_STATES: Final = frozenset({"discarded", "cancelled"})

# Blocker codes (DESIGN §6, workflow codes).
WAITING_ON_DEPENDENCIES: Final = "waiting_on_dependencies"
WAITING_ON_RETRYABLE_DEPENDENCY: Final = "waiting_on_retryable_dependency"
CANCELLED_BY_DEPENDENCY: Final = "cancelled_by_dependency"
CANCEL_REQUESTED: Final = "cancel_requested"
READY_TO_PROMOTE: Final = "ready_to_promote"
WAITING_ON_SIGNAL: Final = "waiting_on_signal"
EXPIRED_WAIT: Final = "expired_wait"

CANCELLED_BY_DEPENDENCY_PREFIX: Final = CANCELLED_BY_DEPENDENCY + ":"
"""How a cascade cancellation is written into the job's ``errors`` (followed by the dep name)."""


@dataclass(frozen=True, slots=True)
class Edge:
    """``step`` runs after ``dep``; ``policy`` says what a failed ``dep`` does to ``step``."""

    step: str
    dep: str
    policy: Policy = "cascade"
    kind: EdgeKind = "step"


@dataclass(frozen=True, slots=True)
class AddedBy:
    """A fan-in dependency: step ``step`` and every step it adds while it runs."""

    step: str


def added_by(step: str) -> AddedBy:
    """``deps=[added_by("split")]``: wait for ``split`` and all steps ``split`` adds at run time
    (``job.workflow.add``), e.g. one per file; read their results with
    ``job.workflow.added_by("split")``."""
    return AddedBy(check_name(step, "added_by step"))


def split_deps(deps: Iterable[str | AddedBy], where: str) -> dict[str, EdgeKind]:
    """Dependency names with their edge kind (``added_by`` wins over a plain dep on the same
    step); refuses anything that is not a name or ``added_by(name)``."""
    out: dict[str, EdgeKind] = {}
    for dep in deps:
        if isinstance(dep, AddedBy):
            out[dep.step] = "added_by"
        elif isinstance(dep, str):
            check_name(dep, f"{where}: dependency name")
            out.setdefault(dep, "step")
        else:
            raise InvalidInput(
                f"{where}: a dependency is a step name or added_by(name), got {dep!r}"
            )
    return out


def check_name(name: object, what: str = "step name") -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"{what} must be a non-empty string, got {name!r}")
    if len(name) > NAME_MAX:
        raise InvalidInput(f"{what} {name[:40]!r}… is longer than {NAME_MAX} characters")
    return name


def check_policy(policy: object, step: str) -> Policy:
    if policy == "cascade":
        return "cascade"
    if policy == "continue":
        return "continue"
    raise InvalidInput(
        f"step {step!r}: unknown failure policy {policy!r}", hint="use 'cascade' or 'continue'"
    )


def validate(steps: Sequence[str], edges: Iterable[Edge], *, workflow: str = "workflow") -> None:
    """Raise ``InvalidInput`` naming the step for: no steps, duplicates, unknown deps, cycles."""
    if not steps:
        raise InvalidInput(f"{workflow}: a workflow needs at least one step")
    seen: set[str] = set()
    for name in steps:
        if name in seen:
            raise InvalidInput(f"{workflow}: duplicate step name {name!r}")
        seen.add(name)
    edge_list = list(edges)
    for edge in edge_list:
        if edge.step not in seen:
            raise InvalidInput(f"{workflow}: edge from unknown step {edge.step!r}")
        if edge.dep not in seen:
            raise InvalidInput(
                f"{workflow}: step {edge.step!r} depends on unknown step {edge.dep!r}"
            )
        if edge.dep == edge.step:
            raise InvalidInput(f"{workflow}: step {edge.step!r} depends on itself")
    cycle = find_cycle(steps, edge_list)
    if cycle:
        raise InvalidInput(f"{workflow}: dependency cycle {' -> '.join(cycle)}")


def _deps_of(steps: Sequence[str], edges: Iterable[Edge]) -> dict[str, list[str]]:
    deps: dict[str, list[str]] = {s: [] for s in steps}
    for edge in edges:
        deps.setdefault(edge.step, []).append(edge.dep)
    return deps


def find_cycle(steps: Sequence[str], edges: Iterable[Edge]) -> list[str]:
    """One dependency cycle as a closed path (``[a, b, a]``), or ``[]`` when there is none."""
    deps = _deps_of(steps, edges)
    colour: dict[str, int] = {s: 0 for s in deps}  # 0 new, 1 on stack, 2 done
    for root in deps:
        if colour[root]:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = [root]
        colour[root] = 1
        while stack:
            node, i = stack[-1]
            children = deps[node]
            if i < len(children):
                stack[-1] = (node, i + 1)
                child = children[i]
                if colour.get(child, 2) == 1:
                    return [*path[path.index(child) :], child]
                if colour.get(child, 2) == 0:
                    colour[child] = 1
                    stack.append((child, 0))
                    path.append(child)
            else:
                colour[node] = 2
                stack.pop()
                path.pop()
    return []


def topo_order(steps: Sequence[str], edges: Iterable[Edge]) -> list[str]:
    """Steps with every dependency before its dependents; ties keep the declaration order."""
    edge_list = list(edges)
    position = {s: i for i, s in enumerate(steps)}
    indegree = {s: 0 for s in steps}
    dependents: dict[str, list[str]] = {s: [] for s in steps}
    for edge in edge_list:
        indegree[edge.step] += 1
        dependents[edge.dep].append(edge.step)
    ready = [(position[s], s) for s in steps if indegree[s] == 0]
    heapq.heapify(ready)
    out: list[str] = []
    while ready:
        _, node = heapq.heappop(ready)
        out.append(node)
        for child in dependents[node]:
            indegree[child] -= 1
            if indegree[child] == 0:
                heapq.heappush(ready, (position[child], child))
    if len(out) != len(steps):
        raise InvalidInput("dependency cycle: " + " -> ".join(find_cycle(steps, edge_list)))
    return out


def blocker(
    state: str,
    deps: Mapping[str, tuple[str, Policy]],
    *,
    errors_tail: str | None = None,
    cancel_requested: bool = False,
    awaiting: bool = False,
    expired: bool = False,
) -> str | None:
    """The workflow blocker code of one step from its job state and its deps' (state, policy).

    A durable step parked by ``Await`` is ``waiting_on_signal``; one whose wait timed out and
    has not resumed yet is ``expired_wait``.
    A suspended step waits on dependencies (on a retryable one when any dep is retryable);
    it is ``ready_to_promote`` when every dep is terminal and none cascades a failure (the
    reconciler's case). A cancelled step whose last error names a cascade is
    ``cancelled_by_dependency``. Other states have no workflow blocker.
    """
    if state == "cancelled" and errors_tail and errors_tail.startswith(CANCELLED_BY_DEPENDENCY):
        return CANCELLED_BY_DEPENDENCY
    if expired and state in ("available", "scheduled"):
        return EXPIRED_WAIT
    if awaiting and state == "suspended":
        return CANCEL_REQUESTED if cancel_requested else WAITING_ON_SIGNAL
    if state != "suspended":
        if cancel_requested and state == "executing":
            return CANCEL_REQUESTED
        return None
    if cancel_requested:
        return CANCEL_REQUESTED
    if any(s in FAILED_STATES and p == "cascade" for s, p in deps.values()):
        return CANCELLED_BY_DEPENDENCY
    if any(dep_state == "retryable" for dep_state, _ in deps.values()):
        return WAITING_ON_RETRYABLE_DEPENDENCY
    if all(dep_state in TERMINAL_STATES for dep_state, _ in deps.values()):
        return READY_TO_PROMOTE
    return WAITING_ON_DEPENDENCIES


def decide(
    deps: Mapping[str, tuple[str, Policy]], run_if: RunIf | None = None
) -> Literal["wait", "promote", "cancel", "skip"]:
    """What promotion does with a suspended step given its deps: the spec the SQL follows.

    ``run_if="any_discarded"`` (a batch's ``on_discard`` callback): once every dep has ended,
    the step runs only if one of them was discarded, and is otherwise cancelled as not needed
    (``skip``).
    """
    if any(s in FAILED_STATES and p == "cascade" for s, p in deps.values()):
        return "cancel"
    if all(s in TERMINAL_STATES for s, _ in deps.values()):
        if run_if == ANY_DISCARDED and not any(s == "discarded" for s, _ in deps.values()):
            return "skip"
        return "promote"
    return "wait"
