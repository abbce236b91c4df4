"""`flowplan serve` settings from the TOML file (`--settings`), FLOWPLAN_* variables and flags,
through the real command: the precedence (flag over variable over file over default), the
refusals that name the key and the file or the variable, `--print-config` with no secret in
it, and a daemon that serves from the file alone."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tomllib
from pathlib import Path

import grpc
import pytest
from certificates import certificates
from conftest import FLOWPLAN, ROOT
from daemon_harness import free_port, pb, pb_grpc, serving

from flowplan.daemon.notify.settings import DEFAULT_TIMEOUT
from flowplan.daemon.server.command import add_serve_arguments
from flowplan.daemon.server.config import SMTP_TIMEOUT
from flowplan.daemon.server.settings import SETTINGS

SECRET = "t0ken-never-printed"
PASSWORD = "pa55word-never-printed"


def serve(*args: str | Path, env: dict[str, str] | None = None, cwd: Path = ROOT
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FLOWPLAN, "serve", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=60,
                          env=environment(env or {}))


def environment(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without serve settings of its own, plus `extra`."""
    prefixes = ("FLOWPLAN_SERVER_", "FLOWPLAN_TLS_", "FLOWPLAN_GIT_", "FLOWPLAN_SMTP_")
    return {**{k: v for k, v in os.environ.items() if not k.startswith(prefixes)}, **extra}


def origins(printed: str) -> dict[str, str]:
    """`[table] key` -> the origin comment of its line in --print-config output."""
    found, table = {}, ""
    for line in printed.splitlines():
        if line.startswith("["):
            table = line.strip("[]")
        elif match := re.match(r"^(?:# )?(\w+)\s+= .*  # (.+)$", line):
            found[f"[{table}] {match[1]}"] = match[2]
    return found


@pytest.fixture
def settings_file(tmp_path: Path) -> Path:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "token").write_text(SECRET + "\n")
    (conf / "flowplan.toml").write_text(
        '[server]\nstore = "../plans"\nstate = "../state"\nlisten = "127.0.0.1:50111"\n'
        'token_file = "token"\nkill_grace = 3\nmax_connections = 7\nidle_timeout = "2m"\n'
        'http_max_connections = 30\n'
        '[git]\nbranch = "release"\n')
    return conf / "flowplan.toml"


def test_flags_win_over_variables_over_the_file_over_defaults(settings_file: Path) -> None:
    result = serve("--settings", settings_file, "--max-connections", "9", "--print-config",
                   env={"FLOWPLAN_SERVER_KILL_GRACE": "4", "FLOWPLAN_SERVER_MAX_CONNECTIONS": "8",
                        "FLOWPLAN_GIT_SYNC_INTERVAL": "90s",
                        "FLOWPLAN_SERVER_HTTP_MAX_CONNECTIONS": "12",
                        "FLOWPLAN_SERVER_CONSOLE_LAYOUTS": "browser"})
    assert result.returncode == 0, result.stderr
    printed = tomllib.loads(result.stdout)
    conf = settings_file.parent
    assert printed["server"] == {
        "store": str(conf.parent / "plans"), "state": str(conf.parent / "state"),
        "listen": "127.0.0.1:50111", "token_file": str(conf / "token"), "insecure": False,
        "synchronous": "NORMAL", "kill_grace": 4.0, "log_format": "json",
        "max_connections": 9, "http_max_connections": 12, "handshake_timeout": 10.0,
        "idle_timeout": 120.0, "console_layouts": "browser"}
    assert printed["git"] == {"branch": "release", "sync_interval": 90.0}  # url: not set
    assert printed["tls"] == {}
    where = origins(result.stdout)
    assert where["[server] max_connections"] == "flag --max-connections"
    assert where["[server] kill_grace"] == "env FLOWPLAN_SERVER_KILL_GRACE"
    assert where["[server] http_max_connections"] == "env FLOWPLAN_SERVER_HTTP_MAX_CONNECTIONS"
    assert where["[git] sync_interval"] == "env FLOWPLAN_GIT_SYNC_INTERVAL"
    assert where["[server] listen"] == where["[git] branch"] == "file"
    assert where["[server] handshake_timeout"] == where["[git] url"] == "default"
    assert f"# settings file: {settings_file}" in result.stdout


def test_print_config_prints_settings_that_would_not_serve_then_says_why(tmp_path: Path
                                                                         ) -> None:
    result = serve("--print-config", "--max-connections", "9", env={})
    assert result.returncode == 2
    printed = tomllib.loads(result.stdout)
    assert printed["server"]["max_connections"] == 9 and "store" not in printed["server"]
    assert result.stderr == ("flowplan serve: these settings would not serve: give the plan"
                             " store's folder: --store DIR, FLOWPLAN_SERVER_STORE or [server]"
                             " store in the --settings file\n")


def test_print_config_shows_no_secret(settings_file: Path, tmp_path: Path) -> None:
    keys = certificates(tmp_path / "pki")
    (tmp_path / "smtp-password").write_text(PASSWORD + "\n")
    result = serve("--settings", settings_file, "--print-config",
                   "--tls-cert", tmp_path / "pki/server_cert.pem",
                   "--tls-key", tmp_path / "pki/server_key.pem",
                   env={"FLOWPLAN_SMTP_HOST": "mail.example.com",
                        "FLOWPLAN_SMTP_STARTTLS": "true",  # a login needs it off loopback
                        "FLOWPLAN_SMTP_USER": "flow",
                        "FLOWPLAN_SMTP_PASSWORD_FILE": str(tmp_path / "smtp-password")})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert SECRET not in out and PASSWORD not in out
    assert "PRIVATE KEY" not in out and keys["server_key"].decode() not in out
    printed = tomllib.loads(out)
    assert printed["tls"] == {"cert": str(tmp_path / "pki/server_cert.pem"),
                              "key": str(tmp_path / "pki/server_key.pem")}  # paths are fine
    assert printed["smtp"]["password_file"] == str(tmp_path / "smtp-password")


@pytest.mark.parametrize(("file", "env", "message"), [
    ('[server]\nkill_grace = "x"\n', {},
     '{file}: [server] kill_grace: must be the seconds between SIGTERM and SIGKILL as a number'
     ' >= 0, got "x"'),
    ('[server]\nlisten = "localhost"\n', {},
     '{file}: [server] listen: must be host:port with a port from 0 to 65535'),
    ('[smtp]\nport = 70000\n', {}, "{file}: [smtp] port: must be a port from 1 to 65535, got"
                                   " 70000"),
    ("[server]\nsynchronous = 'OFF'\n", {},
     '{file}: [server] synchronous: must be NORMAL or FULL, got "OFF"'),
    ("[sever]\nlisten = '127.0.0.1:1'\n", {},
     "{file}: unknown table [sever]; known: [server], [tls], [git], [smtp]"),
    ("[server]\nkillgrace = 1\n", {}, "{file}: unknown key(s) in [server]: killgrace; known:"),
    ("[server]\nkill_grace = 1\n", {"FLOWPLAN_SERVER_MAX_CONNECTIONS": "0"},
     'FLOWPLAN_SERVER_MAX_CONNECTIONS: must be a whole number >= 1, got "0"'),
    ("[server]\nhttp_max_connections = 0\n", {},
     "{file}: [server] http_max_connections: must be a whole number >= 1, got 0"),
    ("", {"FLOWPLAN_SERVER_INSECURE": "maybe"},
     'FLOWPLAN_SERVER_INSECURE: must be true or false, got "maybe"'),
    ("", {"FLOWPLAN_SERVER_KILLGRACE": "1"},
     "FLOWPLAN_SERVER_KILLGRACE: not a setting of flowplan serve; the [server] ones:"),
    ("[tls]\ncert = 'cert.pem'\n", {},
     "these settings would not serve: [tls] cert of {file} and --tls-key go together"),
    ("[server]\nstore = 'flowplan.toml'\n", {},
     "these settings would not serve: {file}: [server] store {folder}/flowplan.toml is a"
     " file: give a folder"),
    ("[server]\ntoken_file = 'missing'\n", {},
     "these settings would not serve: cannot read {folder}/missing ([server] token_file of"
     " {file}): No such file"),
], ids=["type", "listen", "port", "choice", "table", "key", "env", "http-cap", "env-bool",
        "env-unknown",
        "tls-pair", "store-file", "token-missing"])
def test_a_refused_setting_names_the_file_and_key_or_the_variable(
        tmp_path: Path, file: str, env: dict[str, str], message: str) -> None:
    settings = tmp_path / "flowplan.toml"
    settings.write_text(file)
    (tmp_path / "cert.pem").write_text("")
    folders = ["--state", tmp_path / "state"]
    if "store =" not in file:
        folders += ["--store", tmp_path / "plans"]
    result = serve("--settings", settings, *folders, "--print-config", env=env)
    assert result.returncode == 2
    if message.startswith("these settings would not serve"):  # read, then found wanting
        assert tomllib.loads(result.stdout)["server"]["state"] == str(tmp_path / "state")
    else:
        assert result.stdout == ""
    assert result.stderr.startswith(
        "flowplan serve: " + message.format(file=settings, folder=tmp_path)), result.stderr


def test_a_daemon_serves_from_the_settings_file_alone(tmp_path: Path) -> None:
    (tmp_path / "plans").mkdir()
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "token").write_text(SECRET + "\n")
    address = f"127.0.0.1:{free_port()}"
    (tmp_path / "etc" / "flowplan.toml").write_text(
        f'[server]\nstore = "{tmp_path}/plans"\nstate = "{tmp_path}/state"\n'
        f'listen = "{address}"\ntoken_file = "token"\nlog_format = "text"\n')
    log = tmp_path / "daemon.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [*FLOWPLAN, "serve", "--settings", "etc/flowplan.toml"],
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, env=environment({}))
    try:
        with grpc.insecure_channel(address) as channel:
            serving(channel, process, log)  # listening where the file says
            stub = pb_grpc.WorkflowServiceStub(channel)
            with pytest.raises(grpc.RpcError) as refused:
                stub.ListWorkflows(pb.ListWorkflowsRequest(), timeout=10)
            assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
            answer = stub.ListWorkflows(pb.ListWorkflowsRequest(), timeout=10,
                                        metadata=[("authorization", f"Bearer {SECRET}")])
            assert list(answer.workflows) == []
        assert (tmp_path / "state" / "state.sqlite3").exists()
        assert " INFO flowplan.daemon: listening " in log.read_text()  # log_format = "text"
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0


def test_every_setting_is_documented_with_its_flag_variable_and_key() -> None:
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    for setting in SETTINGS:
        assert any(f"`{setting.flag}" in row and f"`{setting.env}`" in row
                   and f"`{setting.key}`" in row for row in rows), setting


def test_every_flag_of_serve_is_a_setting_and_every_setting_a_flag() -> None:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    flags = {action.option_strings[0]: action.dest for action in parser._actions
             if action.option_strings and action.dest not in ("help", "settings",
                                                              "print_config")}
    assert flags == {setting.flag: setting.dest for setting in SETTINGS}
    assert SMTP_TIMEOUT == DEFAULT_TIMEOUT  # the help's default is the one SmtpSettings has
