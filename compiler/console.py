"""Terminal output for every `flowplan` command, on `rich`: one palette, one terminal check,
one way to paint text and to draw live.

It lives in the compiler, importing nothing of it, because the compiler's own commands
(`check`, `publish`, the git hooks) colour their output and the compiler must not import the
daemon; the daemon's commands (`up`, `debug`, `serve`) and the client's tables and progress
bar use it from here. What the compiler's commands print and share with `up`, `debug` and
the hooks (diagnostics, a publish report) is in `flowplan.compiler.report`.

- Colours only on a terminal, and never when `NO_COLOR` is set (https://no-color.org) or
  `TERM=dumb`: a pipe, a file or CI gets plain text, byte for byte what a test compares.
- Live views (a redrawn table, a progress bar) only on a terminal that can move its cursor;
  elsewhere the commands print a line per change.
- The status colours are the EMR console's: blue running, green succeeded, red failed,
  yellow retrying, purple pending, grey skipped or cancelled.

`rich` is imported only when something is painted or drawn live, so that plain output (a
client command in a pipe) does not pay for importing it.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Final, TextIO

if TYPE_CHECKING:
    from rich.console import Console
    from rich.style import Style
    from rich.text import Text

STATUS_STYLES: Final[Mapping[str, str]] = {
    "RUNNING": "blue",
    "SUCCEEDED": "green",
    "FAILED": "red",
    "RETRYING": "yellow",
    "PENDING": "magenta",  # purple
    "SKIPPED": "bright_black",  # grey
    "CANCELLED": "bright_black",
}
BOLD: Final = "bold"
DIM: Final = "dim"
ERROR: Final = "red"
WARNING: Final = "yellow"
OK: Final = "green"


def is_terminal(stream: TextIO) -> bool:
    """Whether `stream` is a terminal that can redraw in place (not a pipe, not TERM=dumb)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"


def use_color(stream: TextIO) -> bool:
    """Colour for a terminal, unless NO_COLOR is set (https://no-color.org)."""
    return is_terminal(stream) and "NO_COLOR" not in os.environ


# a colour code as Paint writes it, or one control character (but newline and tab)
_CONTROL = re.compile("\x1b\\[[0-9;]*m|[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str, *, colors: bool) -> str:
    """`text` safe for a terminal: each control character but newline and tab written as
    its escape (`\\x1b`, `\\r`), so that no value people gave (remarks, params, an error)
    can move the cursor, retitle or clear a terminal, or hide text. With `colors`, colour
    codes are kept for Paint's own: a value is escaped without them before it is painted."""
    def one(found: re.Match[str]) -> str:
        code = found.group(0)
        if colors and len(code) > 1:
            return code
        return code.encode("unicode_escape").decode("ascii")

    return _CONTROL.sub(one, text)



@lru_cache(maxsize=64)
def _style(name: str) -> Style:
    from rich.style import Style

    return Style.parse(name)


@dataclasses.dataclass(frozen=True, slots=True)
class Paint:
    """Text painted with a rich style name ("bold", "green", "bold red"), or left as it is
    when colours are off. The escape codes are the 16 standard colours, which every terminal
    shows in its own theme."""

    color: bool

    @classmethod
    def for_stream(cls, stream: TextIO) -> Paint:
        return cls(use_color(stream))

    def __call__(self, style: str, text: str) -> str:
        if not self.color or not style or not text:
            return text
        from rich.color import ColorSystem

        return _style(style).render(text, color_system=ColorSystem.STANDARD)

    def status(self, status: str, text: str | None = None) -> str:
        """`text` (default: the status itself) in the status's colour."""
        return self(STATUS_STYLES.get(status, ""), status if text is None else text)

    def text(self, *parts: str | tuple[str, str]) -> Text:
        """A rich `Text` for a live view: plain strings and (text, style) pairs, the styles
        dropped when colours are off; one line, cropped rather than wrapped."""
        from rich.text import Text

        line = Text(no_wrap=True, overflow="crop", end="")
        for part in parts:
            if isinstance(part, tuple):
                line.append(part[0], style=part[1] if self.color else None)
            else:
                line.append(part)
        return line


def rich_console(stream: TextIO, paint: Paint) -> Console:
    """A rich Console on `stream` for live views: a terminal exactly when `is_terminal` says
    so, coloured exactly when `paint` is (rich's own FORCE_COLOR and NO_COLOR reading is
    overridden, so that every command follows the same rules)."""
    from rich.console import Console

    return Console(file=stream, force_terminal=is_terminal(stream), no_color=not paint.color,
                   color_system="standard" if paint.color else None, highlight=False,
                   markup=False, emoji=False, soft_wrap=False)
