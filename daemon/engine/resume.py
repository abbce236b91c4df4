"""Resume (AWS Glue's ResumeWorkflowRun), as a pure function from a finished run to the plan
of the new run: which nodes run again, which are copied, which are listed as starting."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from flowplan.compiler.plan import WorkflowPlan
from flowplan.daemon.domain import Run
from flowplan.daemon.engine.triggers import Readiness, readiness, skip_reason


class ResumeError(ValueError):
    """A resume request that cannot be honoured. `field` names the request field at fault;
    `precondition` is true when the request is well-formed but the run's state forbids it."""

    def __init__(self, message: str, *, field: str, precondition: bool = False) -> None:
        super().__init__(message)
        self.field = field
        self.precondition = precondition


@dataclass(frozen=True, slots=True)
class ResumePlan:
    rerun: tuple[str, ...]  # selected nodes and everything downstream, in graph order
    starting: tuple[str, ...]  # selected nodes not downstream of another selected node


def plan_resume(run: Run, graph: WorkflowPlan, selected: Sequence[str],
                rerun_plan: WorkflowPlan, rerun_version: int) -> ResumePlan:
    """Check a resume request against the finished `run` and compute the new run's shape.

    `graph` is the original run's graph; `rerun_plan` the version re-run nodes will use.
    """
    if not run.status.finished:
        raise ResumeError(f"run {run.run_id} is {run.status.value}; only a finished run can be"
                          " resumed", field="run_id", precondition=True)
    if not selected:
        raise ResumeError("name at least one node to resume from", field="node_names")
    names = [n.name for n in graph.nodes]
    for index, name in enumerate(selected):
        if name not in names:
            raise ResumeError(f"node '{name}' is not a node of run {run.run_id}",
                              field=f"node_names[{index}]")
        if not run.node(name).attempts:
            raise ResumeError(f"node '{name}' was never attempted in run {run.run_id}"
                              f" ({run.node(name).status.value}); resume from a node that ran",
                              field=f"node_names[{index}]", precondition=True)
    downstream: dict[str, list[str]] = {name: [] for name in names}
    for upstream, node in graph.edges():
        downstream[upstream].append(node)
    below = _descendants(selected, downstream)
    rerun = tuple(n for n in names if n in below or n in selected)
    starting = tuple(n for n in names if n in selected and n not in below)
    available = {n.name for n in rerun_plan.nodes}
    for name in rerun:
        if name not in available:
            raise ResumeError(f"node '{name}' must run again but plan version {rerun_version}"
                              f" of {run.workflow} has no such node", field="plan_version",
                              precondition=True)
    # a starting node's upstreams are all copied, so its trigger is decided now: one that
    # cannot hold would be skipped at once, not started as the answer says
    above: dict[str, list[str]] = {name: [] for name in names}
    for upstream, node in graph.edges():
        above[node].append(upstream)
    for name in starting:
        trigger = rerun_plan.node(name).trigger
        copied = {u: run.node(u).status for u in above[name]}
        if readiness(trigger, list(copied.values())) is not Readiness.READY:
            index = list(selected).index(name)
            raise ResumeError(
                f"node '{name}' would be skipped, not started: {skip_reason(trigger, copied)}"
                " in the copied upstreams; resume from those upstreams too",
                field=f"node_names[{index}]", precondition=True)
    return ResumePlan(rerun=rerun, starting=starting)


def _descendants(roots: Sequence[str], downstream: dict[str, list[str]]) -> set[str]:
    """Nodes strictly below any of `roots`."""
    seen: set[str] = set()
    stack = [child for root in roots for child in downstream[root]]
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(downstream[node])
    return seen
