"""Who may do what: the roles, and the roles file that gives each token one.

The roles file (`--roles-file`, `[server] roles_file`) has one token a line:

    # ROLE      NAME     TOKEN
    admin       alice    6f1c0d5e8a0b4c7e9d2f3a1b5c6d7e8f
    operator    ci       0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d
    viewer      grafana  11223344556677889900aabbccddeeff

fields separated by spaces or tabs; blank lines and lines starting with `#` are ignored.
ROLE is `viewer` (reads), `operator` (reads; runs, backfills, resumes, cancels, pauses) or
`admin` (everything). NAME (letters, digits, `.`, `_`, `-`) says whose token it is in logs;
it is not secret. TOKEN is at least MIN_TOKEN_LENGTH printable characters without white
space. Names and tokens are unique. A line that breaks a rule stops the daemon with the file
and line; a message never repeats what a line holds (a field in the wrong place could be a
token).

Standard library only: `config.py` (which `flowplan --help` imports) holds the grants.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

MIN_TOKEN_LENGTH: Final = 16
TOKEN_FILE_NAME: Final = "token_file"  # the name of the --token-file token (an admin's)
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_TOKEN = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no space: what a metadata value holds


class Role(enum.IntEnum):
    """A role includes every role below it."""

    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()


ROLE_NAMES: Final = ", ".join(role.label for role in Role)


@dataclass(frozen=True, slots=True)
class Grant:
    """One token and the role it has; `name` says whose it is (in logs, never the token)."""

    name: str
    role: Role
    token: str = field(repr=False)  # never printed, even in a traceback


class RolesFileError(ValueError):
    """A roles file the daemon refuses: the message names the file and line."""


def parse_roles(text: str, path: Path | str) -> tuple[Grant, ...]:
    """The grants of a roles file's `text`; RolesFileError naming `path` and the line."""
    grants: list[Grant] = []
    names: dict[str, int] = {}
    tokens: dict[str, int] = {}
    for number, line in enumerate(text.split("\n"), start=1):  # lines as editors count
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        where = f"{path}:{number}"
        if len(fields) != 3:
            raise RolesFileError(
                f"{where}: has {len(fields)} field(s); a line is `ROLE NAME TOKEN` (3 fields"
                " separated by spaces; a token has no white space)")
        role_text, name, token = fields
        try:
            role = Role[role_text.upper()] if role_text.islower() else None
        except KeyError:
            role = None
        if role is None:
            raise RolesFileError(f"{where}: the first field must be a role: {ROLE_NAMES}"
                                 " (in lower case)")
        if not _NAME.fullmatch(name):
            raise RolesFileError(f"{where}: the second field must be the token's name: 1 to"
                                 " 64 letters, digits, `.`, `_` or `-`")
        if len(token) < MIN_TOKEN_LENGTH or not _TOKEN.fullmatch(token):
            raise RolesFileError(
                f"{where}: the token must be at least {MIN_TOKEN_LENGTH} printable ASCII"
                " characters (e.g. the output of `openssl rand -hex 32`)")
        if name in names:
            raise RolesFileError(f"{where}: the name is already that of line {names[name]};"
                                 " give each token its own name")
        if token in tokens:
            raise RolesFileError(f"{where}: the same token as line {tokens[token]}; give"
                                 " each line its own token")
        names[name], tokens[token] = number, number
        grants.append(Grant(name, role, token))
    if not grants:
        raise RolesFileError(f"{path}: no token in it; give one `ROLE NAME TOKEN` line per"
                             " token")
    return tuple(grants)


def merge_token(grants: tuple[Grant, ...], token: str | None, token_file: str
                ) -> tuple[Grant, ...]:
    """The grants with the single `--token-file` token added as an admin's (named
    TOKEN_FILE_NAME); RolesFileError if the roles file has that token or name too."""
    if token is None:
        return grants
    for grant in grants:
        if grant.token == token:
            raise RolesFileError(f"the token of {token_file} is also in the roles file (name"
                                 f" {grant.name}); keep it in one of them")
        if grant.name == TOKEN_FILE_NAME:
            raise RolesFileError(f"the roles file names a token {TOKEN_FILE_NAME}, the name"
                                 f" of the token of {token_file}: choose another")
    return (*grants, Grant(TOKEN_FILE_NAME, Role.ADMIN, token))
