"""One of each grammar, shared by the compiler, the daemon and the command line
(compiler/grammars.py): e-mail addresses, durations, `--param K=V`."""

from __future__ import annotations

import argparse
import math
import re

import pytest

from flowplan.compiler.grammars import duration_option, is_email_address, param_option
from flowplan.compiler.values import duration


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 90.0), ("0.5", 0.5), ("30s", 30.0), ("5m", 300.0), ("1h30m", 5400.0),
    ("500ms", 0.5), ("1d", 86400.0),
])
def test_a_duration_flag_takes_seconds_or_the_workflow_files_grammar(text: str,
                                                                     seconds: float) -> None:
    assert duration_option(text) == seconds
    if not text.replace(".", "").isdigit():
        assert duration(text) == seconds  # the same grammar as a workflow file's


@pytest.mark.parametrize(("text", "message"), [
    ("0", "'0': the interval must be positive"),
    ("-3", "'-3': the interval must be positive"),
    ("nan", "'nan' is not a duration"), ("inf", "'inf' is not a duration"),
    ("5x", "'5x' is not a duration: give seconds (90) or a duration such as 30s"),
    ("400d", "'400d' is not a duration"), ("", "'' is not a duration"),
])
def test_a_duration_flag_refuses_what_is_not_a_positive_duration(text: str,
                                                                 message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=f"^{re.escape(message)}"):
        duration_option(text)


@pytest.mark.parametrize(("address", "valid"), [
    ("team@example.com", True), ("a.b+c@sub.example.org", True),
    ("ana@example", False), ("@example.com", False), ("ops at example.com", False),
    ("a b@example.com", False), ("é@example.com", False), ("x@" + "a" * 250 + ".com", False),
])
def test_one_e_mail_address_check(address: str, valid: bool) -> None:
    assert is_email_address(address) is valid


@pytest.mark.parametrize(("text", "pair"), [
    ("n=5", ("n", 5)), ("full=true", ("full", True)), ('code="007"', ("code", "007")),
    ("note=a=b", ("note", "a=b")), ("none=null", ("none", None)), ("r=2.5", ("r", 2.5)),
    ("big=123456789012345678901", ("big", "123456789012345678901")),
    ("list=[1, 2]", ("list", "[1, 2]")), ("x=nan", ("x", "nan")), (" k =v", ("k", "v")),
])
def test_param_values_are_json_scalars_when_they_are_one(text: str,
                                                        pair: tuple[str, object]) -> None:
    key, value = param_option(text)
    assert (key, value) == pair
    assert not (isinstance(value, float) and math.isnan(value))


@pytest.mark.parametrize("text", ["novalue", "=v", " =v"])
def test_a_param_without_key_or_equals_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="expected K=V"):
        param_option(text)


def test_an_smtp_sender_may_name_a_host_alone() -> None:
    """The default sender is flowplan@<host name>, and host names often have no dot."""
    assert is_email_address("flowplan@buildhost", host_alone=True)
    assert not is_email_address("flowplan@buildhost")  # a workflow's recipients need a domain
    assert not is_email_address("flowplan@", host_alone=True)
