"""Trigger rules over upstream states (AWS Glue's ALL/ANY conditional triggers)."""

from __future__ import annotations

import pytest

from flowplan.daemon.domain import NodeStatus as S
from flowplan.daemon.engine.triggers import Readiness as R
from flowplan.daemon.engine.triggers import readiness, skip_reason


@pytest.mark.parametrize(("trigger", "upstream", "expected"), [
    ("all_succeeded", [], R.READY),
    ("all_succeeded", [S.SUCCEEDED, S.SUCCEEDED], R.READY),
    ("all_succeeded", [S.SUCCEEDED, S.RUNNING], R.WAIT),
    ("all_succeeded", [S.FAILED, S.RUNNING], R.SKIP),  # decided before the rest finish
    ("all_succeeded", [S.SKIPPED, S.SUCCEEDED], R.SKIP),
    ("all_succeeded", [S.CANCELLED], R.SKIP),
    ("any_succeeded", [S.FAILED, S.RUNNING], R.WAIT),
    ("any_succeeded", [S.FAILED, S.SUCCEEDED], R.READY),
    ("any_succeeded", [S.FAILED, S.SKIPPED], R.SKIP),
    ("all_done", [S.FAILED, S.RETRYING], R.WAIT),
    ("all_done", [S.FAILED, S.SKIPPED, S.CANCELLED], R.READY),
    ("any_failed", [S.SUCCEEDED, S.PENDING], R.WAIT),
    ("any_failed", [S.FAILED, S.PENDING], R.READY),
    ("any_failed", [S.SUCCEEDED, S.SKIPPED], R.SKIP),
    ("any_failed", [S.CANCELLED], R.SKIP),  # cancelled is not failed
    ("all_failed", [S.FAILED, S.FAILED], R.READY),
    ("all_failed", [S.FAILED, S.RUNNING], R.WAIT),
    ("all_failed", [S.FAILED, S.SUCCEEDED], R.SKIP),
])
def test_readiness(trigger, upstream, expected):
    assert readiness(trigger, upstream) is expected


def test_unknown_trigger_is_an_error():
    with pytest.raises(ValueError, match="unknown trigger"):
        readiness("sometimes", [S.SUCCEEDED])


@pytest.mark.parametrize(("trigger", "upstream", "expected"), [
    ("all_succeeded", {"extract": S.SUCCEEDED, "transform": S.FAILED, "load": S.RUNNING},
     "trigger all_succeeded: upstream transform FAILED"),
    ("all_succeeded", {"a": S.SKIPPED, "b": S.CANCELLED},
     "trigger all_succeeded: upstreams a SKIPPED, b CANCELLED"),
    ("any_succeeded", {"a": S.FAILED, "b": S.SKIPPED},
     "trigger any_succeeded: upstreams a FAILED, b SKIPPED"),
    ("any_failed", {"a": S.SUCCEEDED, "b": S.CANCELLED}, "trigger any_failed: no upstream failed"),
    ("all_failed", {"a": S.FAILED, "b": S.SUCCEEDED, "c": S.PENDING},
     "trigger all_failed: upstream b SUCCEEDED"),
    ("all_succeeded", {f"p{i}": S.FAILED for i in range(8)},
     "trigger all_succeeded: upstreams p0 FAILED, p1 FAILED, p2 FAILED, p3 FAILED, p4 FAILED,"
     " 3 more"),
])
def test_a_skip_names_the_upstreams_that_decided_it(trigger, upstream, expected):
    assert readiness(trigger, list(upstream.values())) is R.SKIP
    assert skip_reason(trigger, upstream) == expected
