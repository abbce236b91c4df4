import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATUS_UNSPECIFIED: _ClassVar[RunStatus]
    RUN_STATUS_PENDING: _ClassVar[RunStatus]
    RUN_STATUS_RUNNING: _ClassVar[RunStatus]
    RUN_STATUS_SUCCEEDED: _ClassVar[RunStatus]
    RUN_STATUS_FAILED: _ClassVar[RunStatus]
    RUN_STATUS_CANCELLED: _ClassVar[RunStatus]

class NodeStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_STATUS_UNSPECIFIED: _ClassVar[NodeStatus]
    NODE_STATUS_PENDING: _ClassVar[NodeStatus]
    NODE_STATUS_RUNNING: _ClassVar[NodeStatus]
    NODE_STATUS_RETRYING: _ClassVar[NodeStatus]
    NODE_STATUS_SUCCEEDED: _ClassVar[NodeStatus]
    NODE_STATUS_FAILED: _ClassVar[NodeStatus]
    NODE_STATUS_SKIPPED: _ClassVar[NodeStatus]
    NODE_STATUS_CANCELLED: _ClassVar[NodeStatus]

class RunTrigger(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_TRIGGER_UNSPECIFIED: _ClassVar[RunTrigger]
    RUN_TRIGGER_MANUAL: _ClassVar[RunTrigger]
    RUN_TRIGGER_SCHEDULE: _ClassVar[RunTrigger]
    RUN_TRIGGER_BACKFILL: _ClassVar[RunTrigger]
    RUN_TRIGGER_DEBUG: _ClassVar[RunTrigger]
    RUN_TRIGGER_RESUME: _ClassVar[RunTrigger]

class AttemptStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ATTEMPT_STATUS_UNSPECIFIED: _ClassVar[AttemptStatus]
    ATTEMPT_STATUS_RUNNING: _ClassVar[AttemptStatus]
    ATTEMPT_STATUS_SUCCEEDED: _ClassVar[AttemptStatus]
    ATTEMPT_STATUS_FAILED: _ClassVar[AttemptStatus]
    ATTEMPT_STATUS_CANCELLED: _ClassVar[AttemptStatus]

class BackfillStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BACKFILL_STATUS_UNSPECIFIED: _ClassVar[BackfillStatus]
    BACKFILL_STATUS_RUNNING: _ClassVar[BackfillStatus]
    BACKFILL_STATUS_SUCCEEDED: _ClassVar[BackfillStatus]
    BACKFILL_STATUS_FAILED: _ClassVar[BackfillStatus]
    BACKFILL_STATUS_CANCELLED: _ClassVar[BackfillStatus]

class NotificationStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NOTIFICATION_STATUS_UNSPECIFIED: _ClassVar[NotificationStatus]
    NOTIFICATION_STATUS_PENDING: _ClassVar[NotificationStatus]
    NOTIFICATION_STATUS_SENT: _ClassVar[NotificationStatus]
    NOTIFICATION_STATUS_FAILED: _ClassVar[NotificationStatus]
    NOTIFICATION_STATUS_NOT_SENT: _ClassVar[NotificationStatus]

class Reprocess(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REPROCESS_UNSPECIFIED: _ClassVar[Reprocess]
    REPROCESS_MISSING: _ClassVar[Reprocess]
    REPROCESS_FAILED: _ClassVar[Reprocess]
    REPROCESS_ALL: _ClassVar[Reprocess]

class ScheduleKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCHEDULE_KIND_UNSPECIFIED: _ClassVar[ScheduleKind]
    SCHEDULE_KIND_DAILY: _ClassVar[ScheduleKind]
    SCHEDULE_KIND_INTERVAL: _ClassVar[ScheduleKind]
    SCHEDULE_KIND_CRON: _ClassVar[ScheduleKind]

class Catchup(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CATCHUP_UNSPECIFIED: _ClassVar[Catchup]
    CATCHUP_NONE: _ClassVar[Catchup]
    CATCHUP_LATEST: _ClassVar[Catchup]
    CATCHUP_ALL: _ClassVar[Catchup]

class NodeType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_TYPE_UNSPECIFIED: _ClassVar[NodeType]
    NODE_TYPE_SHELL: _ClassVar[NodeType]
    NODE_TYPE_PYTHON: _ClassVar[NodeType]
    NODE_TYPE_SQL: _ClassVar[NodeType]

class TriggerRule(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRIGGER_RULE_UNSPECIFIED: _ClassVar[TriggerRule]
    TRIGGER_RULE_ALL_SUCCEEDED: _ClassVar[TriggerRule]
    TRIGGER_RULE_ANY_SUCCEEDED: _ClassVar[TriggerRule]
    TRIGGER_RULE_ALL_DONE: _ClassVar[TriggerRule]
    TRIGGER_RULE_ANY_FAILED: _ClassVar[TriggerRule]
    TRIGGER_RULE_ALL_FAILED: _ClassVar[TriggerRule]
RUN_STATUS_UNSPECIFIED: RunStatus
RUN_STATUS_PENDING: RunStatus
RUN_STATUS_RUNNING: RunStatus
RUN_STATUS_SUCCEEDED: RunStatus
RUN_STATUS_FAILED: RunStatus
RUN_STATUS_CANCELLED: RunStatus
NODE_STATUS_UNSPECIFIED: NodeStatus
NODE_STATUS_PENDING: NodeStatus
NODE_STATUS_RUNNING: NodeStatus
NODE_STATUS_RETRYING: NodeStatus
NODE_STATUS_SUCCEEDED: NodeStatus
NODE_STATUS_FAILED: NodeStatus
NODE_STATUS_SKIPPED: NodeStatus
NODE_STATUS_CANCELLED: NodeStatus
RUN_TRIGGER_UNSPECIFIED: RunTrigger
RUN_TRIGGER_MANUAL: RunTrigger
RUN_TRIGGER_SCHEDULE: RunTrigger
RUN_TRIGGER_BACKFILL: RunTrigger
RUN_TRIGGER_DEBUG: RunTrigger
RUN_TRIGGER_RESUME: RunTrigger
ATTEMPT_STATUS_UNSPECIFIED: AttemptStatus
ATTEMPT_STATUS_RUNNING: AttemptStatus
ATTEMPT_STATUS_SUCCEEDED: AttemptStatus
ATTEMPT_STATUS_FAILED: AttemptStatus
ATTEMPT_STATUS_CANCELLED: AttemptStatus
BACKFILL_STATUS_UNSPECIFIED: BackfillStatus
BACKFILL_STATUS_RUNNING: BackfillStatus
BACKFILL_STATUS_SUCCEEDED: BackfillStatus
BACKFILL_STATUS_FAILED: BackfillStatus
BACKFILL_STATUS_CANCELLED: BackfillStatus
NOTIFICATION_STATUS_UNSPECIFIED: NotificationStatus
NOTIFICATION_STATUS_PENDING: NotificationStatus
NOTIFICATION_STATUS_SENT: NotificationStatus
NOTIFICATION_STATUS_FAILED: NotificationStatus
NOTIFICATION_STATUS_NOT_SENT: NotificationStatus
REPROCESS_UNSPECIFIED: Reprocess
REPROCESS_MISSING: Reprocess
REPROCESS_FAILED: Reprocess
REPROCESS_ALL: Reprocess
SCHEDULE_KIND_UNSPECIFIED: ScheduleKind
SCHEDULE_KIND_DAILY: ScheduleKind
SCHEDULE_KIND_INTERVAL: ScheduleKind
SCHEDULE_KIND_CRON: ScheduleKind
CATCHUP_UNSPECIFIED: Catchup
CATCHUP_NONE: Catchup
CATCHUP_LATEST: Catchup
CATCHUP_ALL: Catchup
NODE_TYPE_UNSPECIFIED: NodeType
NODE_TYPE_SHELL: NodeType
NODE_TYPE_PYTHON: NodeType
NODE_TYPE_SQL: NodeType
TRIGGER_RULE_UNSPECIFIED: TriggerRule
TRIGGER_RULE_ALL_SUCCEEDED: TriggerRule
TRIGGER_RULE_ANY_SUCCEEDED: TriggerRule
TRIGGER_RULE_ALL_DONE: TriggerRule
TRIGGER_RULE_ANY_FAILED: TriggerRule
TRIGGER_RULE_ALL_FAILED: TriggerRule

class Edge(_message.Message):
    __slots__ = ("upstream", "downstream")
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    DOWNSTREAM_FIELD_NUMBER: _ClassVar[int]
    upstream: str
    downstream: str
    def __init__(self, upstream: _Optional[str] = ..., downstream: _Optional[str] = ...) -> None: ...

class Schedule(_message.Message):
    __slots__ = ("kind", "at", "every_seconds", "window_start", "window_end", "cron", "timezone", "start", "enabled_in_git", "catchup")
    KIND_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    EVERY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    ENABLED_IN_GIT_FIELD_NUMBER: _ClassVar[int]
    CATCHUP_FIELD_NUMBER: _ClassVar[int]
    kind: ScheduleKind
    at: str
    every_seconds: int
    window_start: str
    window_end: str
    cron: str
    timezone: str
    start: _timestamp_pb2.Timestamp
    enabled_in_git: bool
    catchup: Catchup
    def __init__(self, kind: _Optional[_Union[ScheduleKind, str]] = ..., at: _Optional[str] = ..., every_seconds: _Optional[int] = ..., window_start: _Optional[str] = ..., window_end: _Optional[str] = ..., cron: _Optional[str] = ..., timezone: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., enabled_in_git: _Optional[bool] = ..., catchup: _Optional[_Union[Catchup, str]] = ...) -> None: ...

class NodeDefinition(_message.Message):
    __slots__ = ("name", "type", "queue", "retries", "timeout_seconds", "trigger", "upstream", "tags", "description", "source_path", "source_sha256", "command", "retry_delay_seconds", "retry_backoff", "queue_pinned")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_PATH_FIELD_NUMBER: _ClassVar[int]
    SOURCE_SHA256_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    RETRY_DELAY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RETRY_BACKOFF_FIELD_NUMBER: _ClassVar[int]
    QUEUE_PINNED_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: NodeType
    queue: str
    retries: int
    timeout_seconds: float
    trigger: TriggerRule
    upstream: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.ScalarMap[str, str]
    description: str
    source_path: str
    source_sha256: str
    command: str
    retry_delay_seconds: float
    retry_backoff: float
    queue_pinned: bool
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[NodeType, str]] = ..., queue: _Optional[str] = ..., retries: _Optional[int] = ..., timeout_seconds: _Optional[float] = ..., trigger: _Optional[_Union[TriggerRule, str]] = ..., upstream: _Optional[_Iterable[str]] = ..., tags: _Optional[_Mapping[str, str]] = ..., description: _Optional[str] = ..., source_path: _Optional[str] = ..., source_sha256: _Optional[str] = ..., command: _Optional[str] = ..., retry_delay_seconds: _Optional[float] = ..., retry_backoff: _Optional[float] = ..., queue_pinned: _Optional[bool] = ...) -> None: ...

class Workflow(_message.Message):
    __slots__ = ("name", "description", "latest_version", "tombstone", "timezone", "queue", "max_active_runs", "tags", "schedule", "scheduling_enabled", "next_tick", "nodes", "edges", "plan_version", "plan_digest", "file", "params", "failure_emails")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LATEST_VERSION_FIELD_NUMBER: _ClassVar[int]
    TOMBSTONE_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    MAX_ACTIVE_RUNS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    SCHEDULING_ENABLED_FIELD_NUMBER: _ClassVar[int]
    NEXT_TICK_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    PLAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    PLAN_DIGEST_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_EMAILS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    latest_version: int
    tombstone: bool
    timezone: str
    queue: str
    max_active_runs: int
    tags: _containers.ScalarMap[str, str]
    schedule: Schedule
    scheduling_enabled: bool
    next_tick: _timestamp_pb2.Timestamp
    nodes: _containers.RepeatedCompositeFieldContainer[NodeDefinition]
    edges: _containers.RepeatedCompositeFieldContainer[Edge]
    plan_version: int
    plan_digest: str
    file: str
    params: _struct_pb2.Struct
    failure_emails: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., latest_version: _Optional[int] = ..., tombstone: _Optional[bool] = ..., timezone: _Optional[str] = ..., queue: _Optional[str] = ..., max_active_runs: _Optional[int] = ..., tags: _Optional[_Mapping[str, str]] = ..., schedule: _Optional[_Union[Schedule, _Mapping]] = ..., scheduling_enabled: _Optional[bool] = ..., next_tick: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., nodes: _Optional[_Iterable[_Union[NodeDefinition, _Mapping]]] = ..., edges: _Optional[_Iterable[_Union[Edge, _Mapping]]] = ..., plan_version: _Optional[int] = ..., plan_digest: _Optional[str] = ..., file: _Optional[str] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., failure_emails: _Optional[_Iterable[str]] = ...) -> None: ...

class PlanVersion(_message.Message):
    __slots__ = ("workflow", "version", "digest", "published_at", "remarks", "commit", "compiler_version", "tombstone")
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_AT_FIELD_NUMBER: _ClassVar[int]
    REMARKS_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    COMPILER_VERSION_FIELD_NUMBER: _ClassVar[int]
    TOMBSTONE_FIELD_NUMBER: _ClassVar[int]
    workflow: str
    version: int
    digest: str
    published_at: _timestamp_pb2.Timestamp
    remarks: str
    commit: str
    compiler_version: str
    tombstone: bool
    def __init__(self, workflow: _Optional[str] = ..., version: _Optional[int] = ..., digest: _Optional[str] = ..., published_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., remarks: _Optional[str] = ..., commit: _Optional[str] = ..., compiler_version: _Optional[str] = ..., tombstone: _Optional[bool] = ...) -> None: ...

class Run(_message.Message):
    __slots__ = ("run_id", "workflow", "plan_version", "status", "trigger", "logical_time", "params", "remarks", "previous_run_id", "backfill_id", "created_at", "started_at", "finished_at", "nodes", "edges", "plan_digest", "data_interval_start", "data_interval_end", "queue", "tags", "cancel_requested_at", "last_sequence", "node_counts")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    PLAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    LOGICAL_TIME_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    REMARKS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    BACKFILL_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    PLAN_DIGEST_FIELD_NUMBER: _ClassVar[int]
    DATA_INTERVAL_START_FIELD_NUMBER: _ClassVar[int]
    DATA_INTERVAL_END_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REQUESTED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    NODE_COUNTS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    workflow: str
    plan_version: int
    status: RunStatus
    trigger: RunTrigger
    logical_time: _timestamp_pb2.Timestamp
    params: _struct_pb2.Struct
    remarks: str
    previous_run_id: str
    backfill_id: str
    created_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    nodes: _containers.RepeatedCompositeFieldContainer[NodeRun]
    edges: _containers.RepeatedCompositeFieldContainer[Edge]
    plan_digest: str
    data_interval_start: _timestamp_pb2.Timestamp
    data_interval_end: _timestamp_pb2.Timestamp
    queue: str
    tags: _containers.ScalarMap[str, str]
    cancel_requested_at: _timestamp_pb2.Timestamp
    last_sequence: int
    node_counts: NodeCounts
    def __init__(self, run_id: _Optional[str] = ..., workflow: _Optional[str] = ..., plan_version: _Optional[int] = ..., status: _Optional[_Union[RunStatus, str]] = ..., trigger: _Optional[_Union[RunTrigger, str]] = ..., logical_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., remarks: _Optional[str] = ..., previous_run_id: _Optional[str] = ..., backfill_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., nodes: _Optional[_Iterable[_Union[NodeRun, _Mapping]]] = ..., edges: _Optional[_Iterable[_Union[Edge, _Mapping]]] = ..., plan_digest: _Optional[str] = ..., data_interval_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., data_interval_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., queue: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., cancel_requested_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_sequence: _Optional[int] = ..., node_counts: _Optional[_Union[NodeCounts, _Mapping]] = ...) -> None: ...

class NodeCounts(_message.Message):
    __slots__ = ("total", "succeeded", "failed", "skipped", "cancelled", "running", "pending")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    total: int
    succeeded: int
    failed: int
    skipped: int
    cancelled: int
    running: int
    pending: int
    def __init__(self, total: _Optional[int] = ..., succeeded: _Optional[int] = ..., failed: _Optional[int] = ..., skipped: _Optional[int] = ..., cancelled: _Optional[int] = ..., running: _Optional[int] = ..., pending: _Optional[int] = ...) -> None: ...

class NodeRun(_message.Message):
    __slots__ = ("name", "status", "queue", "attempts", "copied_from_run_id", "plan_version", "skip_reason", "next_attempt_at", "tags")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    COPIED_FROM_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    SKIP_REASON_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_AT_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: NodeStatus
    queue: str
    attempts: _containers.RepeatedCompositeFieldContainer[Attempt]
    copied_from_run_id: str
    plan_version: int
    skip_reason: str
    next_attempt_at: _timestamp_pb2.Timestamp
    tags: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., status: _Optional[_Union[NodeStatus, str]] = ..., queue: _Optional[str] = ..., attempts: _Optional[_Iterable[_Union[Attempt, _Mapping]]] = ..., copied_from_run_id: _Optional[str] = ..., plan_version: _Optional[int] = ..., skip_reason: _Optional[str] = ..., next_attempt_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tags: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Attempt(_message.Message):
    __slots__ = ("number", "status", "plan_version", "started_at", "finished_at", "exit_code", "error", "log_path", "copied_from_run_id", "spark_application_id")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PLAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LOG_PATH_FIELD_NUMBER: _ClassVar[int]
    COPIED_FROM_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SPARK_APPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    number: int
    status: AttemptStatus
    plan_version: int
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    exit_code: int
    error: str
    log_path: str
    copied_from_run_id: str
    spark_application_id: str
    def __init__(self, number: _Optional[int] = ..., status: _Optional[_Union[AttemptStatus, str]] = ..., plan_version: _Optional[int] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., exit_code: _Optional[int] = ..., error: _Optional[str] = ..., log_path: _Optional[str] = ..., copied_from_run_id: _Optional[str] = ..., spark_application_id: _Optional[str] = ...) -> None: ...

class BackfillProgress(_message.Message):
    __slots__ = ("total", "succeeded", "failed", "running", "pending", "cancelled")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    total: int
    succeeded: int
    failed: int
    running: int
    pending: int
    cancelled: int
    def __init__(self, total: _Optional[int] = ..., succeeded: _Optional[int] = ..., failed: _Optional[int] = ..., running: _Optional[int] = ..., pending: _Optional[int] = ..., cancelled: _Optional[int] = ...) -> None: ...

class Backfill(_message.Message):
    __slots__ = ("backfill_id", "workflow", "status", "start_time", "end_time", "max_parallel_runs", "queue", "remarks", "failure_emails", "reprocess", "created_at", "finished_at", "progress")
    BACKFILL_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    MAX_PARALLEL_RUNS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    REMARKS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_EMAILS_FIELD_NUMBER: _ClassVar[int]
    REPROCESS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    backfill_id: str
    workflow: str
    status: BackfillStatus
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    max_parallel_runs: int
    queue: str
    remarks: str
    failure_emails: _containers.RepeatedScalarFieldContainer[str]
    reprocess: Reprocess
    created_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    progress: BackfillProgress
    def __init__(self, backfill_id: _Optional[str] = ..., workflow: _Optional[str] = ..., status: _Optional[_Union[BackfillStatus, str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., max_parallel_runs: _Optional[int] = ..., queue: _Optional[str] = ..., remarks: _Optional[str] = ..., failure_emails: _Optional[_Iterable[str]] = ..., reprocess: _Optional[_Union[Reprocess, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., progress: _Optional[_Union[BackfillProgress, _Mapping]] = ...) -> None: ...

class ListWorkflowsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "include_tombstones")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_TOMBSTONES_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    include_tombstones: bool
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., include_tombstones: _Optional[bool] = ...) -> None: ...

class ListWorkflowsResponse(_message.Message):
    __slots__ = ("workflows", "next_page_token")
    WORKFLOWS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    workflows: _containers.RepeatedCompositeFieldContainer[Workflow]
    next_page_token: str
    def __init__(self, workflows: _Optional[_Iterable[_Union[Workflow, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetWorkflowRequest(_message.Message):
    __slots__ = ("workflow", "plan_version")
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    PLAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    workflow: str
    plan_version: int
    def __init__(self, workflow: _Optional[str] = ..., plan_version: _Optional[int] = ...) -> None: ...

class GetWorkflowResponse(_message.Message):
    __slots__ = ("workflow",)
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    workflow: Workflow
    def __init__(self, workflow: _Optional[_Union[Workflow, _Mapping]] = ...) -> None: ...

class ListPlanVersionsRequest(_message.Message):
    __slots__ = ("workflow", "page_size", "page_token")
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    workflow: str
    page_size: int
    page_token: str
    def __init__(self, workflow: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListPlanVersionsResponse(_message.Message):
    __slots__ = ("plan_versions", "next_page_token")
    PLAN_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    plan_versions: _containers.RepeatedCompositeFieldContainer[PlanVersion]
    next_page_token: str
    def __init__(self, plan_versions: _Optional[_Iterable[_Union[PlanVersion, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SetSchedulingStatusRequest(_message.Message):
    __slots__ = ("workflow", "enabled")
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    workflow: str
    enabled: bool
    def __init__(self, workflow: _Optional[str] = ..., enabled: _Optional[bool] = ...) -> None: ...

class SetSchedulingStatusResponse(_message.Message):
    __slots__ = ("workflow",)
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    workflow: Workflow
    def __init__(self, workflow: _Optional[_Union[Workflow, _Mapping]] = ...) -> None: ...

class StartRunRequest(_message.Message):
    __slots__ = ("workflow", "params", "queue", "remarks", "logical_time")
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    REMARKS_FIELD_NUMBER: _ClassVar[int]
    LOGICAL_TIME_FIELD_NUMBER: _ClassVar[int]
    workflow: str
    params: _struct_pb2.Struct
    queue: str
    remarks: str
    logical_time: _timestamp_pb2.Timestamp
    def __init__(self, workflow: _Optional[str] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., queue: _Optional[str] = ..., remarks: _Optional[str] = ..., logical_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StartRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: Run
    def __init__(self, run: _Optional[_Union[Run, _Mapping]] = ...) -> None: ...

class StartBackfillRequest(_message.Message):
    __slots__ = ("workflow", "start_time", "end_time", "queue", "remarks", "failure_emails", "max_parallel_runs", "dry_run", "reprocess")
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    REMARKS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_EMAILS_FIELD_NUMBER: _ClassVar[int]
    MAX_PARALLEL_RUNS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    REPROCESS_FIELD_NUMBER: _ClassVar[int]
    workflow: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    queue: str
    remarks: str
    failure_emails: _containers.RepeatedScalarFieldContainer[str]
    max_parallel_runs: int
    dry_run: bool
    reprocess: Reprocess
    def __init__(self, workflow: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., queue: _Optional[str] = ..., remarks: _Optional[str] = ..., failure_emails: _Optional[_Iterable[str]] = ..., max_parallel_runs: _Optional[int] = ..., dry_run: _Optional[bool] = ..., reprocess: _Optional[_Union[Reprocess, str]] = ...) -> None: ...

class StartBackfillResponse(_message.Message):
    __slots__ = ("backfill_id", "logical_times", "run_ids")
    BACKFILL_ID_FIELD_NUMBER: _ClassVar[int]
    LOGICAL_TIMES_FIELD_NUMBER: _ClassVar[int]
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    backfill_id: str
    logical_times: _containers.RepeatedCompositeFieldContainer[_timestamp_pb2.Timestamp]
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, backfill_id: _Optional[str] = ..., logical_times: _Optional[_Iterable[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]]] = ..., run_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetBackfillRequest(_message.Message):
    __slots__ = ("backfill_id",)
    BACKFILL_ID_FIELD_NUMBER: _ClassVar[int]
    backfill_id: str
    def __init__(self, backfill_id: _Optional[str] = ...) -> None: ...

class GetBackfillResponse(_message.Message):
    __slots__ = ("backfill",)
    BACKFILL_FIELD_NUMBER: _ClassVar[int]
    backfill: Backfill
    def __init__(self, backfill: _Optional[_Union[Backfill, _Mapping]] = ...) -> None: ...

class ListBackfillsRequest(_message.Message):
    __slots__ = ("workflow", "status", "page_size", "page_token")
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    workflow: str
    status: BackfillStatus
    page_size: int
    page_token: str
    def __init__(self, workflow: _Optional[str] = ..., status: _Optional[_Union[BackfillStatus, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListBackfillsResponse(_message.Message):
    __slots__ = ("backfills", "next_page_token")
    BACKFILLS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    backfills: _containers.RepeatedCompositeFieldContainer[Backfill]
    next_page_token: str
    def __init__(self, backfills: _Optional[_Iterable[_Union[Backfill, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetRunRequest(_message.Message):
    __slots__ = ("run_id", "include_graph")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_GRAPH_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    include_graph: bool
    def __init__(self, run_id: _Optional[str] = ..., include_graph: _Optional[bool] = ...) -> None: ...

class GetRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: Run
    def __init__(self, run: _Optional[_Union[Run, _Mapping]] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ("workflow", "status", "trigger", "tag", "backfill_id", "page_size", "page_token")
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    BACKFILL_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    workflow: str
    status: RunStatus
    trigger: RunTrigger
    tag: str
    backfill_id: str
    page_size: int
    page_token: str
    def __init__(self, workflow: _Optional[str] = ..., status: _Optional[_Union[RunStatus, str]] = ..., trigger: _Optional[_Union[RunTrigger, str]] = ..., tag: _Optional[str] = ..., backfill_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs", "next_page_token")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[Run]
    next_page_token: str
    def __init__(self, runs: _Optional[_Iterable[_Union[Run, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class CancelRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: Run
    def __init__(self, run: _Optional[_Union[Run, _Mapping]] = ...) -> None: ...

class CancelBackfillRequest(_message.Message):
    __slots__ = ("backfill_id",)
    BACKFILL_ID_FIELD_NUMBER: _ClassVar[int]
    backfill_id: str
    def __init__(self, backfill_id: _Optional[str] = ...) -> None: ...

class CancelBackfillResponse(_message.Message):
    __slots__ = ("backfill", "cancelled_run_ids")
    BACKFILL_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    backfill: Backfill
    cancelled_run_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, backfill: _Optional[_Union[Backfill, _Mapping]] = ..., cancelled_run_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ResumeRunRequest(_message.Message):
    __slots__ = ("run_id", "node_names", "plan_version", "dry_run", "remarks")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_NAMES_FIELD_NUMBER: _ClassVar[int]
    PLAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    REMARKS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    node_names: _containers.RepeatedScalarFieldContainer[str]
    plan_version: int
    dry_run: bool
    remarks: str
    def __init__(self, run_id: _Optional[str] = ..., node_names: _Optional[_Iterable[str]] = ..., plan_version: _Optional[int] = ..., dry_run: _Optional[bool] = ..., remarks: _Optional[str] = ...) -> None: ...

class ResumeRunResponse(_message.Message):
    __slots__ = ("run_id", "node_names", "plan_version")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_NAMES_FIELD_NUMBER: _ClassVar[int]
    PLAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    node_names: _containers.RepeatedScalarFieldContainer[str]
    plan_version: int
    def __init__(self, run_id: _Optional[str] = ..., node_names: _Optional[_Iterable[str]] = ..., plan_version: _Optional[int] = ...) -> None: ...

class WatchRunRequest(_message.Message):
    __slots__ = ("run_id", "after_sequence")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    after_sequence: int
    def __init__(self, run_id: _Optional[str] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class WatchRunResponse(_message.Message):
    __slots__ = ("sequence", "event_time", "run_status", "node")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    RUN_STATUS_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    event_time: _timestamp_pb2.Timestamp
    run_status: RunStatus
    node: NodeRun
    def __init__(self, sequence: _Optional[int] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., run_status: _Optional[_Union[RunStatus, str]] = ..., node: _Optional[_Union[NodeRun, _Mapping]] = ...) -> None: ...

class GetNodeLogRequest(_message.Message):
    __slots__ = ("run_id", "node_name", "attempt", "offset", "follow")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    node_name: str
    attempt: int
    offset: int
    follow: bool
    def __init__(self, run_id: _Optional[str] = ..., node_name: _Optional[str] = ..., attempt: _Optional[int] = ..., offset: _Optional[int] = ..., follow: _Optional[bool] = ...) -> None: ...

class GetNodeLogResponse(_message.Message):
    __slots__ = ("offset", "data", "attempt")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    attempt: int
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ..., attempt: _Optional[int] = ...) -> None: ...

class Notification(_message.Message):
    __slots__ = ("id", "kind", "recipients", "subject", "body", "status", "attempts", "created_at", "next_attempt_at", "error", "sent_at", "run_id", "backfill_id", "node_name")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    RECIPIENTS_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    BACKFILL_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    id: int
    kind: str
    recipients: _containers.RepeatedScalarFieldContainer[str]
    subject: str
    body: str
    status: NotificationStatus
    attempts: int
    created_at: _timestamp_pb2.Timestamp
    next_attempt_at: _timestamp_pb2.Timestamp
    error: str
    sent_at: _timestamp_pb2.Timestamp
    run_id: str
    backfill_id: str
    node_name: str
    def __init__(self, id: _Optional[int] = ..., kind: _Optional[str] = ..., recipients: _Optional[_Iterable[str]] = ..., subject: _Optional[str] = ..., body: _Optional[str] = ..., status: _Optional[_Union[NotificationStatus, str]] = ..., attempts: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_attempt_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[str] = ..., sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., run_id: _Optional[str] = ..., backfill_id: _Optional[str] = ..., node_name: _Optional[str] = ...) -> None: ...

class ListNotificationsRequest(_message.Message):
    __slots__ = ("run_id", "status", "page_size", "page_token")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    status: NotificationStatus
    page_size: int
    page_token: str
    def __init__(self, run_id: _Optional[str] = ..., status: _Optional[_Union[NotificationStatus, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListNotificationsResponse(_message.Message):
    __slots__ = ("notifications", "next_page_token")
    NOTIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    notifications: _containers.RepeatedCompositeFieldContainer[Notification]
    next_page_token: str
    def __init__(self, notifications: _Optional[_Iterable[_Union[Notification, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
