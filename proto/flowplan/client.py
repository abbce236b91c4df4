"""The Python client of a flowplan daemon: `Client` (blocking) and `AsyncClient` (asyncio).

    from flowplan.client import Client
    Client("127.0.0.1:50051").start_run("daily_sales")

See docs/client.md; the code is `flowplan.daemon.client.api`.
"""

from flowplan.daemon.client.api import (
    FINISHED_RUN_STATUSES,
    NO_RETRY,
    AsyncClient,
    Client,
    ClientError,
    FieldViolation,
    ParamValue,
    Retry,
    Target,
    UsageError,
)

__all__ = ["FINISHED_RUN_STATUSES", "NO_RETRY", "AsyncClient", "Client", "ClientError",
           "FieldViolation", "ParamValue", "Retry", "Target", "UsageError"]
