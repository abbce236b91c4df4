"""A plan's DAG as picture source: Mermaid (renders on GitHub) or Graphviz dot."""

from __future__ import annotations

from flowplan.compiler.plan import WorkflowPlan


def mermaid(plan: WorkflowPlan) -> str:
    ids = {node.name: f"n{i}" for i, node in enumerate(plan.nodes)}
    lines = ["flowchart LR"]
    for node in plan.nodes:
        label = f"{node.name}<br/><small>{node.type} · {node.queue}</small>"
        lines.append(f'  {ids[node.name]}["{label}"]')
    for upstream, downstream in plan.edges():
        trigger = plan.node(downstream).trigger
        arrow = "-->" if trigger == "all_succeeded" else f"-- {trigger} -->"
        lines.append(f"  {ids[upstream]} {arrow} {ids[downstream]}")
    return "\n".join(lines) + "\n"


def dot(plan: WorkflowPlan) -> str:
    def quote(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [f"digraph {quote(plan.name)} {{", "  rankdir=LR;", "  node [shape=box];"]
    for node in plan.nodes:
        label = quote(f"{node.name}\n{node.type} · {node.queue}").replace("\n", "\\n")
        lines.append(f"  {quote(node.name)} [label={label}];")
    for upstream, downstream in plan.edges():
        trigger = plan.node(downstream).trigger
        extra = "" if trigger == "all_succeeded" else f" [label={quote(trigger)}]"
        lines.append(f"  {quote(upstream)} -> {quote(downstream)}{extra};")
    lines.append("}")
    return "\n".join(lines) + "\n"
