"""When a node may start: its `trigger` over its upstreams' states (AWS Glue's conditional
triggers). Pure functions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum

from flowplan.daemon.domain import NodeStatus


class Readiness(Enum):
    WAIT = "wait"  # some upstream has not finished and the answer may still change
    READY = "ready"
    SKIP = "skip"  # the trigger can no longer hold


def readiness(trigger: str, upstream: Sequence[NodeStatus]) -> Readiness:
    """Decide from the upstream states. A node without upstreams is ready."""
    if not upstream:
        return Readiness.READY
    done = [s for s in upstream if s.finished]
    succeeded = sum(s is NodeStatus.SUCCEEDED for s in done)
    # a cancelled or skipped upstream counts as "did not succeed", not as "failed"
    failed = sum(s is NodeStatus.FAILED for s in done)
    pending = len(upstream) - len(done)
    if trigger == "all_succeeded":
        if succeeded == len(upstream):
            return Readiness.READY
        return Readiness.SKIP if len(done) > succeeded else Readiness.WAIT
    if trigger == "any_succeeded":
        if succeeded:
            return Readiness.READY
        return Readiness.SKIP if pending == 0 else Readiness.WAIT
    if trigger == "all_done":
        return Readiness.READY if pending == 0 else Readiness.WAIT
    if trigger == "any_failed":
        if failed:
            return Readiness.READY
        return Readiness.SKIP if pending == 0 else Readiness.WAIT
    if trigger == "all_failed":
        if failed == len(upstream):
            return Readiness.READY
        return Readiness.SKIP if len(done) > failed else Readiness.WAIT
    raise ValueError(f"unknown trigger {trigger!r}")


NAMED_UPSTREAMS = 5  # a skip reason names at most this many upstreams


def skip_reason(trigger: str, upstream: Mapping[str, NodeStatus]) -> str:
    """Why a node whose trigger can no longer hold is skipped, naming the upstreams that
    decided it: `trigger all_succeeded: upstream transform FAILED`."""
    def named(statuses: Sequence[tuple[str, NodeStatus]]) -> str:
        words = [f"{name} {status.value}" for name, status in statuses[:NAMED_UPSTREAMS]]
        if len(statuses) > NAMED_UPSTREAMS:
            words.append(f"{len(statuses) - NAMED_UPSTREAMS} more")
        return ("upstream " if len(statuses) == 1 else "upstreams ") + ", ".join(words)

    done = [(name, s) for name, s in upstream.items() if s.finished]
    if trigger == "any_failed":
        return f"trigger {trigger}: no upstream failed"
    # all_failed: the upstreams that did not fail; all_ and any_succeeded: that did not succeed
    wanted = NodeStatus.FAILED if trigger == "all_failed" else NodeStatus.SUCCEEDED
    return f"trigger {trigger}: {named([(n, s) for n, s in done if s is not wanted])}"
