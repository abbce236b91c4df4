"""`flowplan completion bash|zsh`: scripts generated from the very parser the CLI uses, so a
new command or option completes without anyone editing a script. bash is driven as it
completes a word; zsh (installed by .ci/run) must load the script it is given."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import FLOWPLAN, ROOT

from flowplan.daemon.cli import build_parser


def _script(shell: str) -> str:
    return subprocess.run([*FLOWPLAN, "completion", shell],
                          capture_output=True, text=True, check=True, cwd=ROOT).stdout


def _bash_complete(script: Path, *words: str) -> list[str]:
    """COMPREPLY for the command line `words` (the last word being completed)."""
    quoted = " ".join(f"'{w}'" for w in words)
    program = (f"source {script}; COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1};"
               ' _shtab_flowplan; printf "%s\\n" "${COMPREPLY[@]}"')
    out = subprocess.run(["bash", "--norc", "-c", program], capture_output=True, text=True,
                         check=True).stdout
    return out.split()


def _commands() -> list[str]:
    parser = build_parser()
    [subparsers] = [a for a in parser._actions if isinstance(a.choices, dict)]
    return sorted(subparsers.choices)


def test_bash_completes_commands_options_and_choices(tmp_path: Path) -> None:
    script = tmp_path / "flowplan.bash"
    script.write_text(_script("bash"))
    assert _bash_complete(script, "flowplan", "ru") == ["run", "runs"]
    assert sorted(_bash_complete(script, "flowplan", "")) == _commands()
    assert _bash_complete(script, "flowplan", "backfill", "wf", "--re") == [
        "--remarks", "--reprocess"]
    assert _bash_complete(script, "flowplan", "graph", "--format", "") == ["mermaid", "dot"]
    assert _bash_complete(script, "flowplan", "completion", "") == ["bash", "zsh"]


@pytest.mark.skipif(shutil.which("zsh") is None,
                    reason="zsh is not installed (.ci/run installs it)")
def test_zsh_loads_the_script_and_knows_every_command(tmp_path: Path) -> None:
    functions = tmp_path / "functions"
    functions.mkdir()
    (functions / "_flowplan").write_text(_script("zsh"))
    assert subprocess.run(["zsh", "-n", str(functions / "_flowplan")]).returncode == 0
    loaded = subprocess.run(
        ["zsh", "-fc", f"fpath=({functions} $fpath); autoload -U compinit; compinit -u -D;"
                       " print -r -- ${_comps[flowplan]}"],
        capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "_flowplan"  # compinit registered the script for the command
    text = (functions / "_flowplan").read_text()
    assert all(f"\n    {name}:'" in text for name in _commands())


def test_an_unknown_shell_is_a_usage_error() -> None:
    result = subprocess.run([*FLOWPLAN, "completion", "fish"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and "invalid choice: 'fish'" in result.stderr
