"""Whether the daemon traces, and the ids of a run's trace (docs/operations.md#traces).

This module imports nothing of OpenTelemetry: without the `otel` extra, or with tracing off,
the daemon never imports it and the engine does no tracing work. The spans themselves are
built by daemon/server/otel.py, imported only when tracing is on.

A run's ids are derived from its run id, not drawn at random: the trace id from the run id,
the run span's id from the run id, each attempt span's id from (run id, node, attempt). So the
attempt's `TRACEPARENT` is known before its process starts (no span needs to exist yet), and a
run that outlives a daemon restart keeps its one trace: the spans are built when their run or
attempt ends, by whichever daemon sees the end, with the same ids.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from collections.abc import Mapping

log = logging.getLogger("flowplan.daemon")

ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
NO_SDK = ("%s is set but the OpenTelemetry SDK is not installed: no traces; install it with"
          " pip install 'flowplan[otel]'")


def wanted(environ: Mapping[str, str]) -> str | None:
    """The variable that asks for traces, or None: OTEL_TRACES_EXPORTER other than `none`,
    or else an OTLP endpoint; OTEL_SDK_DISABLED=true turns tracing off whatever else says."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporters = environ.get("OTEL_TRACES_EXPORTER")
    if exporters is not None:
        names = {name.strip().lower() for name in exporters.split(",")} - {""}
        return "OTEL_TRACES_EXPORTER" if names - {"none"} else None
    return next((name for name in ENDPOINTS if environ.get(name, "").strip()), None)


def enabled(environ: Mapping[str, str]) -> bool:
    """True when traces are asked for and the SDK is installed (said in a log line when it is
    not). Looks for the SDK only when asked: tracing off imports nothing."""
    variable = wanted(environ)
    if variable is None:
        return False
    try:
        found = importlib.util.find_spec("opentelemetry.sdk.trace") is not None
    except (ImportError, ValueError):  # a parent package missing or blocked
        found = False
    if not found:
        log.warning(NO_SDK, variable)
    return found


def _id(bits: int, *parts: str) -> int:
    digest = hashlib.sha256("\0".join(("flowplan", *parts)).encode()).digest()
    return int.from_bytes(digest[:bits // 8], "big") or 1  # an all-zero id is invalid


def trace_id(run_id: str) -> int:
    """The run's 128-bit trace id."""
    return _id(128, "trace", run_id)


def run_span_id(run_id: str) -> int:
    """The 64-bit id of the run's span, the parent of its attempts' spans."""
    return _id(64, "run", run_id)


def attempt_span_id(run_id: str, node: str, attempt: int) -> int:
    """The 64-bit id of one attempt's span."""
    return _id(64, "attempt", run_id, node, str(attempt))


def traceparent(run_id: str, node: str, attempt: int) -> str:
    """The attempt's W3C trace context (`TRACEPARENT` of its process): version 00, the run's
    trace, the attempt's span, sampled."""
    return f"00-{trace_id(run_id):032x}-{attempt_span_id(run_id, node, attempt):016x}-01"
