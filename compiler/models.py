"""What the YAML says: the workflow file and `flowplan.yaml`, as frozen pydantic models.

These models check keys and types and parse the small value languages (durations, times,
zones...). They do not apply defaults from other places nor look at other files: that is
`validate.py` (cross-checks) and `resolve.py` (defaults, plans).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    WithJsonSchema,
)

from flowplan.compiler import values

# Each value type says in JSON Schema what the YAML may contain (before parsing), so that
# editors accept `30s` for a duration. Only draft-07 constructs: yaml-language-server.
_TIME = {"type": "string", "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9]$"}
_DURATION = {"anyOf": [{"type": "number", "minimum": 0},
                       {"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d))+$"}],
             "description": "seconds, or a string such as 30s, 10m, 1h30m"}
_NAME = {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9_-]{0,99}$"}

Name = Annotated[str, BeforeValidator(values.name), WithJsonSchema(_NAME)]
ParamName = Annotated[str, BeforeValidator(values.param_name)]
EnvName = Annotated[str, BeforeValidator(values.env_name), WithJsonSchema(
    {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"})]
Text = Annotated[str, BeforeValidator(values.text),
                 WithJsonSchema({"type": ["string", "integer"]})]
SparkConfValue = Annotated[str, BeforeValidator(values.spark_conf_value),
                           WithJsonSchema({"type": ["string", "integer"]})]
Duration = Annotated[float, BeforeValidator(values.duration), WithJsonSchema(_DURATION)]
Timeout = Annotated[float | None, BeforeValidator(values.timeout), WithJsonSchema(
    {"anyOf": [_DURATION, {"type": "null"}, {"const": "none"}],
     "description": "a duration, or none for no limit"})]
TimeOfDay = Annotated[str, BeforeValidator(values.time_of_day), WithJsonSchema(_TIME)]
Window = Annotated[list[TimeOfDay], BeforeValidator(values.window_shape),
                  AfterValidator(values.window_order), WithJsonSchema(
    {"type": "array", "items": _TIME, "minItems": 2, "maxItems": 2})]
Param = Annotated[JsonValue, BeforeValidator(values.finite)]
Every = Annotated[str, BeforeValidator(values.every), WithJsonSchema(
    {"type": "string", "pattern": r"^(day|[1-9][0-9]*[hm])$"})]
TimeZone = Annotated[str, BeforeValidator(values.timezone), WithJsonSchema(
    {"type": "string", "description": "IANA time zone name, e.g. Europe/Amsterdam"})]
StartTime = Annotated[str, BeforeValidator(values.start_time), WithJsonSchema(
    {"type": "string", "description": "ISO 8601 date-time; without offset: schedule zone"})]
Cron = Annotated[str, BeforeValidator(values.cron), WithJsonSchema(
    {"type": "string", "description": "five-field cron expression or @daily/@hourly/..."})]
Email = Annotated[str, BeforeValidator(values.email), WithJsonSchema(
    {"type": "string", "format": "email"})]
Retries = Annotated[int, Field(ge=0, le=100)]
Backoff = Annotated[float, Field(ge=1.0, le=10.0)]

Trigger = Literal["all_succeeded", "any_succeeded", "all_done", "any_failed", "all_failed"]
NodeType = Literal["shell", "python", "sql"]
NotifyStatus = Literal["running", "retrying", "succeeded", "failed"]
Catchup = Literal["none", "latest", "all"]
Executor = Literal["local", "spark"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class FailureNotifySpec(_Spec):
    """`on_failure`: who hears of a failed run."""

    email: list[Email] = Field(min_length=1)


class NotifySpec(_Spec):
    """A node's `notify` subscription."""

    email: list[Email] = Field(min_length=1)
    on: list[NotifyStatus] = Field(default_factory=lambda: list[NotifyStatus](["failed"]),
                                   min_length=1)


class ScheduleSpec(_Spec):
    """`schedule`: `every: day` + `at`, `every: Nh|Nm` (+ `window`), or `cron`."""

    every: Every | None = None
    at: TimeOfDay | None = None
    window: Window | None = None
    cron: Cron | None = None
    timezone: TimeZone | None = None
    start: StartTime | None = None
    enabled: bool = True
    catchup: Catchup = "latest"


class NodeSpec(_Spec):
    """One entry of `nodes`."""

    name: Name | None = None
    description: str = ""
    source: str | None = None
    command: str | None = None
    type: NodeType | None = None
    args: list[Text] = Field(default_factory=list)
    env: dict[EnvName, Text] = Field(default_factory=dict,
                                     json_schema_extra={"additionalProperties": False})
    upstream: list[str] = Field(default_factory=list)
    trigger: Trigger = "all_succeeded"
    retries: Retries | None = None
    retry_delay: Duration | None = None
    retry_backoff: Backoff | None = None
    timeout: Timeout = None
    queue: str | None = None
    tags: dict[str, Text] = Field(default_factory=dict)
    notify: NotifySpec | None = None


class WorkflowHeaderSpec(_Spec):
    """A workflow file, with its nodes left unchecked (each is checked on its own)."""

    name: Name | None = None
    description: str = ""
    queue: str | None = None
    retries: Retries | None = None
    retry_delay: Duration | None = None
    retry_backoff: Backoff | None = None
    timeout: Timeout = None
    tags: dict[str, Text] = Field(default_factory=dict)
    on_failure: FailureNotifySpec | None = None
    max_active_runs: Annotated[int, Field(ge=1, le=1000)] = 1
    params: dict[ParamName, Param] = Field(default_factory=dict)
    schedule: ScheduleSpec | None = None
    nodes: list[Any] = Field(min_length=1)


class WorkflowSpec(WorkflowHeaderSpec):
    """A workflow file whose every node passed `NodeSpec`."""

    nodes: list[NodeSpec] = Field(min_length=1)


class QueueSpec(_Spec):
    """A resource queue of `flowplan.yaml`."""

    executor: Executor = "local"
    concurrency: Annotated[int, Field(ge=1, le=10_000)] | None = None
    master: str | None = None
    conf: dict[str, SparkConfValue] = Field(default_factory=dict)
    python: str | None = None


class DefaultsSpec(_Spec):
    """`defaults` of `flowplan.yaml`: what a workflow gets when it says nothing."""

    timezone: TimeZone = "UTC"
    queue: str = "default"
    retries: Retries = 0
    retry_delay: Duration = 30.0
    retry_backoff: Backoff = 1.0
    timeout: Timeout = None


def _default_queues() -> dict[str, QueueSpec]:
    return {"default": QueueSpec()}


class SettingsSpec(_Spec):
    """`flowplan.yaml`. Without the file: one local queue `default`, CPU-count wide."""

    defaults: DefaultsSpec = Field(default_factory=DefaultsSpec)
    queues: dict[Annotated[str, BeforeValidator(values.name)], QueueSpec] = Field(
        default_factory=_default_queues
    )
