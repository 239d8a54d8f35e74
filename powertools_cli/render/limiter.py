"""Terminal rendering of ``powertools limiter …``."""

from __future__ import annotations

from datetime import datetime

from rich.console import Console

from powertools_cli.render.ansi import key_values, renders, table
from powertools_core.limits.results import (
    CooldownResult,
    ExplainResult,
    GateView,
    ListResult,
    SimulateResult,
)


def _ts(moment: datetime | str | None) -> str:
    if moment is None:
        return "-"
    if isinstance(moment, str):
        return moment
    return moment.isoformat().replace("+00:00", "Z")


def _part(partition: str | None) -> str:
    return partition if partition else "(global)"


def _where(name: str, partition: str | None) -> str:
    return name if not partition else f"{name} [{partition}]"


@renders(SimulateResult)
def _simulate(result: SimulateResult, console: Console) -> None:
    for lim in result.limits:
        console.print(
            f"{_where(lim.name, lim.partition)}: capacity {lim.bucket_capacity} per "
            f"{lim.bucket_span}, weight {lim.weight} [{lim.source}]",
            markup=False,
        )
    console.print(
        f"{result.count} request(s) every {result.every} from {_ts(result.start)}", markup=False
    )
    rows = []
    for v in result.verdicts:
        if v["result"] == "reserved":
            rows.append((v["request"], v["at"], "reserved", f"{v['tokens_left']:g} tokens left"))
        else:
            rows.append(
                (v["request"], v["at"], f"blocked: {v['code']}", f"retry at {v['retry_at']}")
            )
    table(console, ["#", "at", "verdict", "detail"], rows)
    console.print(f"{result.reserved} reserved, {result.blocked} blocked", markup=False)
    for note in result.ignored:
        console.print(f"not simulated: {note}", style="dim", markup=False)


def _gate_rows(gates: list[GateView]) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for g in gates:
        if g.kind == "rate":
            level = f"{g.tokens:g}/{g.capacity} tokens" if g.tokens is not None else "-"
        else:
            level = f"{g.executing}/{g.capacity} executing"
        cool = _ts(g.cooldown_until) if g.cooldown_until else "-"
        rows.append((g.limit, _part(g.partition), g.kind, level, cool))
    return rows


@renders(ExplainResult)
def _explain(result: ExplainResult, console: Console) -> None:
    style = "green" if result.status in ("runnable", "running") else "red"
    console.print(f"{result.subject}: {result.target}", markup=False)
    console.print(f"status: {result.status}", style=style, markup=False)
    if result.message:
        console.print(result.message, markup=False)
    if result.job:
        key_values(console, [(k, v) for k, v in result.job.items()])
    if result.blockers:
        console.print("blockers:", markup=False)
        for b in result.blockers:
            when = f" (retry at {_ts(b.retry_at)})" if b.retry_at else ""
            console.print(f"  [{b.code}] {b.summary}{when}", markup=False)
    if result.gates:
        table(
            console,
            ["limit", "partition", "kind", "now", "cooldown until"],
            _gate_rows(result.gates),
        )


@renders(ListResult)
def _list(result: ListResult, console: Console) -> None:
    if not result.limits:
        console.print("no limits are declared or recorded", style="dim")
        return
    rows = []
    for lim in result.limits:
        cool = f"cooldown until {_ts(lim.cooldown_until)}" if lim.cooldown_until else ""
        rows.append(
            (lim.name, lim.kind, lim.describe, lim.partitions, lim.available_jobs, cool or "-")
        )
    table(console, ["limit", "kind", "config", "partitions", "waiting jobs", "hold"], rows)
    busy = [g for lim in result.limits for g in lim.gates]
    if busy:
        table(
            console,
            ["limit", "partition", "kind", "now", "cooldown until"],
            _gate_rows(busy),
            title="busiest partitions",
        )


@renders(CooldownResult)
def _cooldown(result: CooldownResult, console: Console) -> None:
    target = _where(result.limit, result.partition)
    if result.action == "cooldown":
        console.print(f"{target}: cooling down until {_ts(result.cooldown_until)}", markup=False)
    else:
        extra = (
            f" ({result.cleared_partitions} partition hold(s) lifted)"
            if result.cleared_partitions
            else ""
        )
        console.print(f"{target}: resumed{extra}", markup=False)
    console.print(
        f"recorded in the audit trail as {result.actor}: {result.reason}", style="dim", markup=False
    )
