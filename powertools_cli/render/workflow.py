"""Terminal rendering of ``powertools workflow …``: a table of workflows, a DAG as a tree."""

from __future__ import annotations

from rich.console import Console
from rich.tree import Tree

from powertools_cli.render.ansi import key_values, renders, status_style, table
from powertools_core.workflows.results import (
    StepView,
    WorkflowActionResult,
    WorkflowListResult,
    WorkflowShowResult,
)
from powertools_core.workflows.signals import SignalResult


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {state}" for state, n in counts.items()) or "-"


@renders(WorkflowListResult)
def _list(result: WorkflowListResult, console: Console) -> None:
    if not result.workflows:
        console.print("no workflows", markup=False)
        return
    rows = [(str(w.id), w.name, w.state, str(w.steps), _counts(w.counts)) for w in result.workflows]
    table(console, ["id", "name", "state", "steps", "by job state"], rows)


def _label(step: StepView) -> str:
    parts = [f"{step.name}  {step.state}", f"attempt {step.attempt}/{step.max_attempts}"]
    if step.duration_s is not None:
        parts.append(f"{step.duration_s:.2f}s")
    if step.blocker:
        parts.append(step.blocker)
    if step.added_by:
        parts.append(f"added by {step.added_by}")
    if step.durable_step:
        parts.append(f"at {step.durable_step}")
    if step.awaiting and step.blocker in ("waiting_on_signal", "expired_wait"):
        wait = f"awaits {', '.join(step.awaiting)}"
        if step.wait_until is not None:
            wait += f" until {step.wait_until.strftime('%Y-%m-%dT%H:%M:%SZ')}"
        parts.append(wait)
    return "  ".join(parts)


@renders(WorkflowShowResult)
def _show(result: WorkflowShowResult, console: Console) -> None:
    w = result.workflow
    key_values(
        console,
        [("workflow", f"{w.id} {w.name}"), ("state", w.state), ("steps", _counts(w.counts))],
    )
    by_name = {s.name: s for s in result.steps}
    children: dict[str, list[str]] = {s.name: [] for s in result.steps}
    for edge in result.edges:
        children[edge.dep].append(edge.step)
    for s in result.steps:
        # A step added at run time with no deps of its own hangs under the step that added it.
        if not s.deps and s.added_by in children:
            children[s.added_by].append(s.name)
    tree = Tree(f"workflow {w.id}", guide_style="dim")
    drawn: set[str] = set()

    def add(node: Tree, name: str) -> None:
        step = by_name[name]
        label = _label(step)
        style = status_style(step.state)
        if name in drawn:
            node.add(f"{name}  (see above)", style="dim")
            return
        drawn.add(name)
        branch = node.add(label, style=style)
        for child in children[name]:
            add(branch, child)

    for step in result.steps:
        if not step.deps and step.added_by not in by_name:
            add(tree, step.name)
    console.print(tree)


@renders(WorkflowActionResult)
def _action(result: WorkflowActionResult, console: Console) -> None:
    verb = result.command.split()[-1]
    if not result.changed and not result.signalled:
        console.print(f"workflow {result.workflow_id}: nothing to {verb}", markup=False)
        return
    rows = [(name, state) for name, state in sorted(result.changed.items())]
    if rows:
        table(console, ["step", "now"], rows, title=f"workflow {result.workflow_id}: {verb}")
    if result.signalled:
        ids = ", ".join(str(i) for i in result.signalled)
        console.print(f"told executing job(s) to stop: {ids}", markup=False)


@renders(SignalResult)
def _signal(result: SignalResult, console: Console) -> None:
    job = f"{result.job_id}" + (f" ({result.correlation_key})" if result.correlation_key else "")
    awaiting = ", ".join(result.awaiting) or "-"
    if result.dry_run:
        verdict = (
            "duplicate: would do nothing"
            if result.duplicate
            else ("would wake the job" if result.woke else "would be kept until a step awaits it")
        )
    elif result.duplicate:
        verdict = f"duplicate: signal {result.signal_id} was already sent; nothing changed"
    elif result.woke:
        verdict = f"signal {result.signal_id} delivered; the job is runnable again"
    else:
        verdict = f"signal {result.signal_id} kept until a step awaits {result.name!r}"
    key_values(
        console,
        [
            ("job", job),
            ("state", result.job_state),
            ("awaiting", awaiting),
            ("signal", result.name),
            ("result", verdict),
        ],
    )
