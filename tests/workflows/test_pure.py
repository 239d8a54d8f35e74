"""Graph validation, topological order and the promotion decision (pure, hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from powertools_core.errors import InvalidInput
from powertools_core.workflows import graph
from powertools_core.workflows.graph import Edge


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[str], list[Edge]]:
    n = draw(st.integers(1, 12))
    steps = [f"s{i}" for i in range(n)]
    order = draw(st.permutations(steps))
    edges = []
    for i, step in enumerate(order):
        for dep in draw(st.sets(st.sampled_from(order[:i]), max_size=3)) if i else ():
            edges.append(Edge(step, dep, draw(st.sampled_from(graph.POLICIES))))
    return steps, edges


@given(dags())
def test_a_dag_validates_and_orders_every_dep_first(dag: tuple[list[str], list[Edge]]) -> None:
    steps, edges = dag
    graph.validate(steps, edges)
    order = graph.topo_order(steps, edges)
    assert sorted(order) == sorted(steps)
    pos = {s: i for i, s in enumerate(order)}
    assert all(pos[e.dep] < pos[e.step] for e in edges)
    assert graph.find_cycle(steps, edges) == []


@given(dags(), st.data())
def test_closing_a_path_makes_a_cycle_that_is_named(
    dag: tuple[list[str], list[Edge]], data: st.DataObject
) -> None:
    steps, edges = dag
    if not edges:
        return
    edge = data.draw(st.sampled_from(edges))
    looped = [*edges, Edge(edge.dep, edge.step)]
    cycle = graph.find_cycle(steps, looped)
    assert cycle[0] == cycle[-1] and len(cycle) >= 3
    with pytest.raises(InvalidInput, match="dependency cycle"):
        graph.validate(steps, looped, workflow="wf")


def test_validation_errors_name_the_step() -> None:
    with pytest.raises(InvalidInput, match="at least one step"):
        graph.validate([], [])
    with pytest.raises(InvalidInput, match="duplicate step name 'a'"):
        graph.validate(["a", "a"], [])
    with pytest.raises(InvalidInput, match="step 'b' depends on unknown step 'x'"):
        graph.validate(["a", "b"], [Edge("b", "x")])
    with pytest.raises(InvalidInput, match="step 'a' depends on itself"):
        graph.validate(["a"], [Edge("a", "a")])
    with pytest.raises(InvalidInput, match=r"a -> b -> a|b -> a -> b"):
        graph.validate(["a", "b"], [Edge("a", "b"), Edge("b", "a")])


STATES = ["available", "scheduled", "executing", "retryable", "completed", "discarded", "cancelled"]


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=3),
        st.tuples(st.sampled_from(STATES), st.sampled_from(graph.POLICIES)),
        min_size=1,
        max_size=5,
    )
)
def test_decision_and_blocker_agree(deps: dict[str, tuple[str, graph.Policy]]) -> None:
    decision = graph.decide(deps)
    code = graph.blocker("suspended", deps)
    cascade_failed = any(s in graph.FAILED_STATES and p == "cascade" for s, p in deps.values())
    all_done = all(s in graph.TERMINAL_STATES for s, _ in deps.values())
    if cascade_failed:
        assert decision == "cancel" and code == graph.CANCELLED_BY_DEPENDENCY
    elif all_done:
        assert decision == "promote" and code == graph.READY_TO_PROMOTE
    else:
        assert decision == "wait"
        if any(s == "retryable" for s, _ in deps.values()):
            assert code == graph.WAITING_ON_RETRYABLE_DEPENDENCY
        else:
            assert code == graph.WAITING_ON_DEPENDENCIES


def test_blocker_of_a_cascade_cancelled_step() -> None:
    tail = "cancelled_by_dependency: fetch"
    assert graph.blocker("cancelled", {}, errors_tail=tail) == graph.CANCELLED_BY_DEPENDENCY
    assert graph.blocker("cancelled", {}, errors_tail="operator") is None
    assert graph.blocker("completed", {}) is None


def test_a_run_if_step_is_skipped_unless_a_dep_was_discarded() -> None:
    done = {"a": ("completed", "continue"), "b": ("cancelled", "continue")}
    assert graph.decide(done, graph.ANY_DISCARDED) == "skip"
    assert graph.decide(done) == "promote"
    failed = {"a": ("completed", "continue"), "b": ("discarded", "continue")}
    assert graph.decide(failed, graph.ANY_DISCARDED) == "promote"
    assert graph.decide({"a": ("executing", "continue")}, graph.ANY_DISCARDED) == "wait"
