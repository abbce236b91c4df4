"""Diagnostics: what the compiler says about a repository, with a stable code and a place.

Codes are stable: tools and people grep for them. Never renumber; retire a code instead.
FP0xx file and YAML level, FP1xx fields and types, FP2xx graph, FP3xx sources,
FP4xx schedule values, FP5xx templates, FP6xx repository settings.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


class Code(StrEnum):
    """Every diagnostic code the compiler emits, with its meaning in the comment."""

    YAML_SYNTAX = "FP001"  # the file is not well-formed YAML
    FILE_TOO_LARGE = "FP002"  # over the size cap
    NOT_TEXT = "FP003"  # not UTF-8 text
    ALIAS_BUDGET = "FP004"  # anchors/aliases expand beyond the budget (billion laughs)
    UNKNOWN_TAG = "FP005"  # an explicit YAML tag such as !python/object
    TOO_DEEP = "FP006"  # nesting deeper than the limit
    DUPLICATE_KEY = "FP007"  # the same key twice in one mapping
    NOT_ONE_DOCUMENT = "FP008"  # no document, or several
    NOT_A_MAPPING = "FP009"  # the document is not a mapping
    NON_STRING_KEY = "FP010"  # a mapping key that is not a string
    RECURSIVE_ALIAS = "FP011"  # an alias that refers to its own ancestor
    UNREADABLE_FILE = "FP012"  # a workflow file that cannot be read (dangling symlink...)

    UNKNOWN_KEY = "FP101"
    WRONG_TYPE = "FP102"
    MISSING_KEY = "FP103"
    INVALID_NAME = "FP104"  # workflow, node, param or env name not an identifier
    DUPLICATE_WORKFLOW = "FP105"
    DUPLICATE_NODE = "FP106"
    SOURCE_AND_COMMAND = "FP107"  # both or neither of source/command
    INVALID_VALUE = "FP108"  # out of range, not one of the allowed values, a NUL in a value
    INVALID_DURATION = "FP109"
    INVALID_EMAIL = "FP110"
    UNKNOWN_TYPE = "FP111"  # node type cannot be inferred
    ARGS_WITH_COMMAND = "FP112"
    RESERVED_TAG = "FP113"  # a tag key flowplan sets itself (workflow_name, task_name)
    NUMBER_AS_TEXT = "FP114"  # a warning: 01234 or 0x1F where text is meant becomes 1234, 31

    UNKNOWN_UPSTREAM = "FP201"
    SELF_DEPENDENCY = "FP202"
    CYCLE = "FP203"
    UNKNOWN_QUEUE = "FP204"
    EMPTY_WORKFLOW = "FP205"

    SOURCE_MISSING = "FP301"
    SOURCE_NOT_FILE = "FP302"
    SOURCE_OUTSIDE = "FP303"
    SOURCE_NOT_TEXT = "FP304"  # not UTF-8, or too large to embed
    SOURCE_LFS_POINTER = "FP305"  # a Git LFS pointer file, not the source it stands for

    INVALID_CRON = "FP401"
    INVALID_WINDOW = "FP402"
    INVALID_TIME = "FP403"  # an `at` or window time of day
    INVALID_TIMEZONE = "FP404"
    INVALID_START = "FP405"
    INVALID_EVERY = "FP406"
    SCHEDULE_SHAPE = "FP407"  # keys that do not fit together (cron with every, at without day)

    TEMPLATE_SYNTAX = "FP501"
    UNKNOWN_VARIABLE = "FP502"
    UNKNOWN_PARAM = "FP503"
    UNKNOWN_FILTER = "FP504"
    TEMPLATE_UNSAFE = "FP505"  # a private attribute or a mutating method: the sandbox refuses
    TEMPLATE_LIMIT = "FP506"  # literals whose value exceeds a template limit (7 ** (10 ** 8))
    TEMPLATE_UNQUOTABLE = "FP507"  # a value where quoting cannot work (backticks, heredoc...)
    RAW_PARAM = "FP508"  # a warning: `| raw` pastes a param unquoted into a command or SQL
    RAW_MISPLACED = "FP509"  # `| raw` that is not the expression's last filter
    JINJA_BRACES = "FP510"  # a warning: `{{ ds }}`, Jinja's delimiters, is left as text
    SECRET_PARAM_NAME = "FP511"  # a warning: a secret env entry reads a param not named as one

    SETTINGS_UNKNOWN_QUEUE = "FP601"  # defaults.queue names no queue


@dataclass(frozen=True, slots=True, order=True)
class Diagnostic:
    """One finding. `file` is relative to the repository root; line and column are 1-based."""

    file: str
    line: int
    column: int
    code: Code
    message: str
    severity: Severity = Severity.ERROR

    def to_json(self) -> dict[str, str | int]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "code": self.code.value,
            "severity": self.severity.value,
            "message": self.message,
        }

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.code.value} {self.message}"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ` (did you mean 'x'?)` suffix when a close choice exists, else the empty string."""
    matches = difflib.get_close_matches(word, sorted(set(choices)), n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(d.severity is Severity.ERROR for d in diagnostics)
