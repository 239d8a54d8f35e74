"""Inserting DAGs and promoting dependents against a real database."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

from powertools_core import Batch
from powertools_core.config import Settings
from powertools_core.errors import InvalidInput
from powertools_core.workflows import Workflow, promote, reconcile, record_result, result
from tests.workflows.app_wf import Step


def states(conn: psycopg.Connection[Any], schema: str, wf: Any) -> dict[str, str]:
    rows = conn.execute(
        f'SELECT id, state::text FROM "{schema}".oban_jobs WHERE id = ANY(%s)',
        [list(wf.job_ids.values())],
    ).fetchall()
    by_id = dict(rows)
    return {name: by_id[job_id] for name, job_id in wf.job_ids.items()}


def finish(
    conn: psycopg.Connection[Any], schema: str, wf: Any, step: str, state: str = "completed"
) -> None:
    """What an ack does: the job ends (the promotion is called separately)."""
    conn.execute(
        f'UPDATE "{schema}".oban_jobs SET state = %s::"{schema}".oban_job_state, '
        "completed_at = CASE WHEN %s = 'completed' THEN now() END WHERE id = %s",
        [state, state, wf.job_ids[step]],
    )


def diamond(**add_kwargs: Any) -> Workflow:
    wf = Workflow("diamond")
    wf.add("a", Step.new({}))
    wf.add("b", Step.new({}), deps=["a"])
    wf.add("c", Step.new({}), deps=["a"])
    wf.add("d", Step.new({}), deps=["b", "c"], **add_kwargs)
    return wf


def test_insert_writes_one_workflow_its_steps_edges_and_jobs(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    wf = diamond().insert(conn=conn, prefix=s)
    assert states(conn, s, wf) == {
        "a": "available",
        "b": "suspended",
        "c": "suspended",
        "d": "suspended",
    }
    metas = dict(
        conn.execute(
            f'SELECT id, meta FROM "{s}".oban_jobs WHERE id = ANY(%s)', [list(wf.job_ids.values())]
        ).fetchall()
    )
    assert metas[wf.job_ids["d"]] == {"workflow_id": wf.id, "workflow_step": "d"}
    edges = conn.execute(
        f'SELECT step, dep, on_failure FROM "{s}".powertools_workflow_edges '
        "WHERE workflow_id = %s ORDER BY step, dep",
        [wf.id],
    ).fetchall()
    assert edges == [
        ("b", "a", "cascade"),
        ("c", "a", "cascade"),
        ("d", "b", "cascade"),
        ("d", "c", "cascade"),
    ]


def test_insert_is_atomic_with_the_callers_transaction(
    installed: Settings, database_url: str, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    with psycopg.connect(database_url) as tx:
        diamond().insert(conn=tx, prefix=s)
        tx.rollback()
    assert conn.execute(f'SELECT count(*) FROM "{s}".oban_jobs').fetchone() == (0,)
    assert conn.execute(f'SELECT count(*) FROM "{s}".powertools_workflows').fetchone() == (0,)


def test_invalid_workflows_are_refused_before_anything_is_written(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    with pytest.raises(InvalidInput, match="at least one step"):
        Workflow("empty").insert(conn=conn, prefix=s)
    with pytest.raises(InvalidInput, match="duplicate step name 'a'"):
        Workflow("dup").add("a", Step.new({})).add("a", Step.new({}))
    unknown = Workflow("unknown").add("a", Step.new({}), deps=["ghost"])
    with pytest.raises(InvalidInput, match="step 'a' depends on unknown step 'ghost'"):
        unknown.insert(conn=conn, prefix=s)
    cyclic = Workflow("cycle").add("a", Step.new({}), deps=["b"]).add("b", Step.new({}), deps="a")
    with pytest.raises(InvalidInput, match="dependency cycle"):
        cyclic.insert(conn=conn, prefix=s)
    with pytest.raises(InvalidInput, match="unknown failure policy"):
        Workflow("p").add("a", Step.new({}), deps=["x"], on_failure="ignore")
    with pytest.raises(InvalidInput, match="unique jobs cannot be workflow steps"):
        Workflow("u").add("a", Step.new({}, unique=True))
    assert conn.execute(f'SELECT count(*) FROM "{s}".oban_jobs').fetchone() == (0,)


def test_diamond_promotes_in_dependency_order(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    wf = diamond().insert(conn=conn, prefix=s)
    finish(conn, s, wf, "a")
    assert promote(conn, s, [wf.job_ids["a"]]) == 2
    assert states(conn, s, wf) == {
        "a": "completed",
        "b": "available",
        "c": "available",
        "d": "suspended",
    }
    finish(conn, s, wf, "b")
    assert promote(conn, s, [wf.job_ids["b"]]) == 0
    assert states(conn, s, wf)["d"] == "suspended"
    finish(conn, s, wf, "c")
    assert promote(conn, s, [wf.job_ids["c"]]) == 1
    assert states(conn, s, wf)["d"] == "available"
    # Idempotent: the same pass again changes nothing.
    assert promote(conn, s, [wf.job_ids["b"], wf.job_ids["c"]]) == 0


def test_retryable_dependency_keeps_dependents_waiting(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    wf = diamond().insert(conn=conn, prefix=s)
    finish(conn, s, wf, "a", "retryable")
    assert promote(conn, s, [wf.job_ids["a"]]) == 0
    assert reconcile(conn, s) == 0
    assert set(states(conn, s, wf).values()) == {"retryable", "suspended"}


def test_cascade_cancels_transitively_and_continue_edges_run(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    wf = (
        Workflow("policies")
        .add("a", Step.new({}))
        .add("b", Step.new({}), deps=["a"])
        .add("c", Step.new({}), deps=["b"])
        .add("cleanup", Step.new({}), deps=["a"], on_failure="continue")
        .insert(conn=conn, prefix=s)
    )
    finish(conn, s, wf, "a", "discarded")
    assert promote(conn, s, [wf.job_ids["a"]]) == 3
    assert states(conn, s, wf) == {
        "a": "discarded",
        "b": "cancelled",
        "c": "cancelled",
        "cleanup": "available",
    }
    (errors,) = conn.execute(
        f'SELECT errors FROM "{s}".oban_jobs WHERE id = %s', [wf.job_ids["c"]]
    ).fetchone()
    assert errors[-1]["error"] == "cancelled_by_dependency: b"


def test_the_reconciler_finishes_a_promotion_lost_after_the_ack(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    wf = diamond().insert(conn=conn, prefix=s)
    finish(conn, s, wf, "a")  # acked, promotion never ran
    assert reconcile(conn, s) == 2
    assert states(conn, s, wf)["d"] == "suspended"
    for step in ("b", "c"):
        finish(conn, s, wf, step)
    assert reconcile(conn, s) == 1
    assert states(conn, s, wf) == {
        "a": "completed",
        "b": "completed",
        "c": "completed",
        "d": "available",
    }
    assert reconcile(conn, s) == 0


@pytest.mark.parametrize("round_", range(5))
def test_two_deps_finishing_concurrently_promote_the_fan_in_exactly_once(
    installed: Settings, database_url: str, conn: psycopg.Connection, round_: int
) -> None:
    s = installed.prefix
    wf = diamond().insert(conn=conn, prefix=s)
    finish(conn, s, wf, "a")
    promote(conn, s, [wf.job_ids["a"]])
    barrier = threading.Barrier(2)
    changed: dict[str, int] = {}

    def ack(step: str) -> None:
        with psycopg.connect(database_url) as tx:
            finish(tx, s, wf, step)
            barrier.wait()  # both acks written, neither committed
            changed[step] = promote(tx, s, [wf.job_ids[step]])
            tx.commit()

    threads = [threading.Thread(target=ack, args=(step,)) for step in ("b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(changed.values()) == [0, 1]
    assert states(conn, s, wf)["d"] == "available"


def test_a_sole_dependent_cancelled_while_its_dep_finishes_stays_cancelled(
    installed: Settings, database_url: str, conn: psycopg.Connection
) -> None:
    # A step whose only dep just finished is promoted without first being locked. A workflow
    # cancel that has already written the step (not yet committed) must still win: the
    # promotion waits for it and then leaves the cancelled step alone.
    s = installed.prefix
    wf = (
        Workflow("race")
        .add("a", Step.new({}))
        .add("b", Step.new({}), deps=["a"])
        .insert(conn=conn, prefix=s)
    )
    with psycopg.connect(database_url) as canceller:
        canceller.execute(
            f"UPDATE \"{s}\".oban_jobs SET state = 'cancelled', cancelled_at = now() WHERE id = %s",
            [wf.job_ids["b"]],
        )
        promoted: dict[str, int] = {}
        pid: list[int] = []
        connected = threading.Event()

        def ack() -> None:
            with psycopg.connect(database_url) as tx:
                pid.append(tx.info.backend_pid)
                connected.set()
                finish(tx, s, wf, "a")
                promoted["b"] = promote(tx, s, [wf.job_ids["a"]])
                tx.commit()

        acker = threading.Thread(target=ack)
        acker.start()
        assert connected.wait(30)
        deadline = time.monotonic() + 30
        while True:  # until the promotion waits on the canceller's row lock (a condition)
            row = conn.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", pid
            ).fetchone()
            if row is not None and row[0] == "Lock":
                break
            assert acker.is_alive(), "the promotion never waited for the cancel"
            assert time.monotonic() < deadline, "the promotion never blocked"
            time.sleep(0.01)
        canceller.commit()
    acker.join(timeout=30)
    assert promoted == {"b": 0}
    assert states(conn, s, wf) == {"a": "completed", "b": "cancelled"}


def test_a_sole_dependent_of_a_completed_dep_keeps_its_schedule_and_its_condition(
    installed: Settings, conn: psycopg.Connection
) -> None:
    # The cheap path for "only dep completed" must still honour what SETTLE decides: a step
    # scheduled in the future waits as `scheduled`, and a conditional step (a one-job batch's
    # on_discard) is cancelled as not needed rather than run.
    s = installed.prefix
    batch = Batch("one", on_success=Step.new({}), on_discard=Step.new({}))
    batch.add(Step.new({}))
    ins = batch.insert(conn=conn, prefix=s)
    later = (
        Workflow("later")
        .add("a", Step.new({}))
        .add("b", Step.new({}), deps=["a"])
        .insert(conn=conn, prefix=s)
    )
    conn.execute(
        f"UPDATE \"{s}\".oban_jobs SET scheduled_at = timezone('UTC', now()) + interval '1 hour' "
        "WHERE id = %s",
        [later.job_ids["b"]],
    )
    (member,) = ins.job_ids
    for job_id in (member, later.job_ids["a"]):
        conn.execute(
            f"UPDATE \"{s}\".oban_jobs SET state = 'completed', completed_at = now() WHERE id = %s",
            [job_id],
        )
    assert promote(conn, s, [member, later.job_ids["a"]]) == 3
    assert states(conn, s, later)["b"] == "scheduled"
    rows = dict(
        conn.execute(
            f'SELECT id, state::text FROM "{s}".oban_jobs WHERE id = ANY(%s)',
            [list(ins.callbacks.values())],
        ).fetchall()
    )
    assert {name: rows[i] for name, i in ins.callbacks.items()} == {
        "on_success": "available",
        "on_discard": "cancelled",
    }


def test_results_are_recorded_and_read_by_dependents(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    wf = diamond().insert(conn=conn, prefix=s)
    record_result(conn, s, wf.job_ids["a"], {"rows": 42})
    assert result(conn, s, wf.job_ids["d"], "a") == {"rows": 42}
    with pytest.raises(InvalidInput, match="no recorded result"):
        result(conn, s, wf.job_ids["d"], "b")


def test_a_thousand_child_fan_out_with_a_fan_in(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    wf = Workflow("fan").add("root", Step.new({}))
    children = [f"child-{i}" for i in range(1000)]
    for name in children:
        wf.add(name, Step.new({}), deps=["root"])
    wf.add("join", Step.new({}), deps=children)
    ins = wf.insert(conn=conn, prefix=s)
    finish(conn, s, ins, "root")
    assert promote(conn, s, [ins.job_ids["root"]]) == 1000
    conn.execute(
        f"UPDATE \"{s}\".oban_jobs SET state = 'completed' WHERE id = ANY(%s)",
        [[ins.job_ids[c] for c in children]],
    )
    assert promote(conn, s, [ins.job_ids[c] for c in children]) == 1
    assert states(conn, s, ins)["join"] == "available"


def test_the_reconciler_cascades_a_failed_dep_while_another_still_runs(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    wf = diamond().insert(conn=conn, prefix=s)
    finish(conn, s, wf, "a")
    promote(conn, s, [wf.job_ids["a"]])
    finish(conn, s, wf, "b", "discarded")  # acked, promotion lost; c is still available
    assert reconcile(conn, s) == 1
    assert states(conn, s, wf) == {
        "a": "completed",
        "b": "discarded",
        "c": "available",
        "d": "cancelled",
    }


def test_workflow_is_exported_from_the_facade() -> None:
    import powertools_core

    assert powertools_core.Workflow is Workflow


@pytest.mark.parametrize("live", ["a", "c", "e"])
def test_a_fan_in_waits_for_its_one_live_dep_wherever_it_sits_in_name_order(
    installed: Settings, conn: psycopg.Connection, live: str
) -> None:
    # The live check walks the deps backwards by name and stops at the first live one: the
    # last live dep may be first, in the middle or last in that walk.
    s = installed.prefix
    deps = ["a", "b", "c", "d", "e"]
    wf = Workflow("walk")
    for name in deps:
        wf.add(name, Step.new({}))
    ins = wf.add("join", Step.new({}), deps=deps).insert(conn=conn, prefix=s)
    ended = [d for d in deps if d != live]
    for name in ended:
        finish(conn, s, ins, name)
    assert promote(conn, s, [ins.job_ids[d] for d in ended]) == 0
    assert states(conn, s, ins)["join"] == "suspended"
    finish(conn, s, ins, live)
    assert promote(conn, s, [ins.job_ids[live]]) == 1
    assert states(conn, s, ins)["join"] == "available"


def test_a_failed_dep_among_many_finished_cancels_a_wide_fan_in_at_once(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    children = [f"c{i}" for i in range(50)]
    wf = Workflow("wide")
    for name in children:
        wf.add(name, Step.new({}))
    wf.add("join", Step.new({}), deps=children)
    wf.add("tidy", Step.new({}), deps=children, on_failure="continue")
    ins = wf.insert(conn=conn, prefix=s)
    batch = children[10:20]
    for name in batch:
        finish(conn, s, ins, name, "discarded" if name == "c15" else "completed")
    # c0..c9 and c20.. are still live: "join" cascades now, "tidy" keeps waiting.
    assert promote(conn, s, [ins.job_ids[c] for c in batch]) == 1
    got = states(conn, s, ins)
    assert (got["join"], got["tidy"]) == ("cancelled", "suspended")


def test_promotion_under_generic_plans_locks_and_promotes_the_same_steps(
    installed: Settings, conn: psycopg.Connection
) -> None:
    # The runtime prepares the promotion statements; after a few executions PostgreSQL may
    # switch to a generic plan. Force it and promote a diamond many times over.
    s = installed.prefix
    conn.execute("SET plan_cache_mode = force_generic_plan")
    for _ in range(8):
        wf = diamond().insert(conn=conn, prefix=s)
        finish(conn, s, wf, "a")
        assert promote(conn, s, [wf.job_ids["a"]]) == 2
        finish(conn, s, wf, "b")
        assert promote(conn, s, [wf.job_ids["b"]]) == 0
        finish(conn, s, wf, "c")
        assert promote(conn, s, [wf.job_ids["c"]]) == 1
        assert states(conn, s, wf)["d"] == "available"


def _work(plan: Any) -> int:
    """Rows produced by every node of an EXPLAIN (ANALYZE, FORMAT JSON) plan, times its loops."""
    total = 0
    stack = [plan[0]["Plan"]]
    while stack:
        node = stack.pop()
        total += int(node["Actual Rows"] * node["Actual Loops"])
        stack.extend(node.get("Plans", []))
    return total


@pytest.mark.parametrize("mode", ["force_custom_plan", "force_generic_plan"])
def test_promoting_a_wide_fan_out_is_linear_even_with_stale_statistics(
    installed: Settings, conn: psycopg.Connection, mode: str
) -> None:
    # Statistics taken while no job was suspended made the planner drive SETTLE from the state
    # index (estimated 1 row) and rescan the verdict once per suspended job: promoting a
    # 10,000-child fan-out took ~45 s instead of ~0.1 s. Each promotion statement must do work
    # linear in the steps it decides, whatever the statistics say.
    from powertools_core.db.identifiers import qualify
    from powertools_core.workflows.context import LOAD_DEPS
    from powertools_core.workflows.store import DUE, LOCK_DEPENDENTS, PROMOTE_CLEAR, SETTLE

    s = installed.prefix
    Workflow("before").add("a", Step.new({})).insert(conn=conn, prefix=s)
    conn.execute(f'ANALYZE "{s}".oban_jobs')  # one available job, nothing suspended
    wf = Workflow("wide").add("root", Step.new({}))
    children = [f"c{i}" for i in range(2000)]
    for name in children:
        wf.add(name, Step.new({}), deps=["root"])
    ins = wf.add("join", Step.new({}), deps=children).insert(conn=conn, prefix=s)
    finish(conn, s, ins, "root")
    child_ids = [ins.job_ids[c] for c in children]
    conn.execute(f"SET plan_cache_mode = {mode}")
    for template, params in [
        (LOCK_DEPENDENTS, {"ids": [ins.job_ids["root"]], "failed": [ins.job_ids["root"]]}),
        (DUE, {"ids": child_ids, "failed": [ins.job_ids["root"]]}),
        (SETTLE, {"ids": child_ids}),
        (PROMOTE_CLEAR, {"ids": child_ids}),
    ]:
        with conn.transaction(force_rollback=True):
            cur = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + qualify(template, s), params)
            ((plan,),) = cur.fetchall()
        # the old SETTLE plan: 2,000 rows x 2,001 loops for the verdict alone
        assert _work(plan) < 20 * len(children), template[:60]
    assert promote(conn, s, [ins.job_ids["root"]]) == 2000
    # A fetched batch of 100 children loads its context by probes, not by scanning every edge
    # and step of the workflow (the plan young statistics gave: 4,000 edges read per batch).
    batch = child_ids[:100]
    cur = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + qualify(LOAD_DEPS, s), {"ids": batch})
    ((plan,),) = cur.fetchall()
    assert _work(plan) < 20 * len(batch)
