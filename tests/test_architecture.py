"""The layering a reader relies on: the compiler never imports the daemon, and the daemon
uses only the compiler's public contract (see compiler/__init__.py).

Inside the daemon, each package (or top-level module) sits in one layer and imports only
from layers below its own (imports inside functions count too), so there is no import cycle
between them:

  6. daemon.cli                        the `flowplan` entry point
  5. daemon.debug, daemon.up           commands that run a daemon's parts in process
  4. daemon.server, daemon.client      the gRPC server (`flowplan serve`); the client commands
  3. daemon.scheduler, daemon.notify   ticks, manual runs and backfills; e-mail
  2. daemon.engine, daemon.watcher     running runs and their nodes; the plan catalog
  1. daemon.state                      the SQLite state store
  0. daemon.domain, daemon.ids         the domain model (runs, nodes, attempts, backfills,
                                       the store's errors) and run ids: nothing of the daemon

Below them all: the compiler's contract, and the standard library. The generated gRPC code
(`flowplan.v1`, `grpc`) is the edge: only layers 4 and up import it. docs/README.md has the
same map for readers.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PUBLIC = {"compiler", "compiler.plan", "compiler.store", "compiler.templating",
          "compiler.compile", "compiler.repo", "compiler.cli", "compiler.git",
          "compiler.console", "compiler.report", "compiler.values", "compiler.files",
          "compiler.grammars"}

LAYERS: list[set[str]] = [
    {"daemon.domain", "daemon.ids"},
    {"daemon.state"},
    {"daemon.engine", "daemon.watcher"},
    {"daemon.scheduler", "daemon.notify"},
    {"daemon.server", "daemon.client"},
    {"daemon.debug", "daemon.up"},
    {"daemon.cli"},
]
EDGE = 4  # the first layer that may import the generated gRPC code


def _imports(folder: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names |= {f"{node.module}.{alias.name}" for alias in node.names}
        found[str(path.relative_to(ROOT))] = {_folder_name(name) for name in names}
    return found


def _folder_name(name: str) -> str:
    """`flowplan.compiler.x` as `compiler.x` and `flowplan.daemon.x` as `daemon.x`: this
    test names modules by the folders they live in (pyproject.toml maps the folders into the
    `flowplan` namespace); `flowplan.v1`, the generated code, keeps its name."""
    for folder in ("compiler", "daemon"):
        if name == f"flowplan.{folder}" or name.startswith(f"flowplan.{folder}."):
            return name.removeprefix("flowplan.")
    return name


def test_compiler_never_imports_daemon_or_generated_code():
    for file, names in _imports(ROOT / "compiler").items():
        bad = {n for n in names if n.split(".")[0] in ("daemon", "flowplan", "grpc")}
        assert not bad, f"{file} imports {bad}"


def test_daemon_uses_only_the_compiler_contract():
    for file, names in _imports(ROOT / "daemon").items():
        used = {n for n in names if n.startswith("compiler.") and n.count(".") == 1}
        assert used <= PUBLIC | {f"compiler.{m}" for m in ("__version__", "cli")}, (
            f"{file} imports compiler internals {used - PUBLIC}")


def test_commands_are_not_a_printing_library():
    """compiler/cli.py is the compiler's commands, not what others print with: no compiler
    module imports it (the hooks did, a cycle), and the daemon only adds its commands."""
    for file, names in _imports(ROOT / "compiler").items():
        assert file == "compiler/cli.py" or "compiler.cli" not in names, file
    users = {file for file, names in _imports(ROOT / "daemon").items()
             if {"compiler.cli", "compiler.cli.register"} & names}
    assert users <= {"daemon/cli.py", "daemon/debug.py"}, users


def test_terminal_output_goes_through_the_console_module():
    """One palette and one terminal check: only compiler/console.py writes escape codes or
    asks whether a stream is a terminal."""
    for folder in ("compiler", "daemon"):
        for path in (ROOT / folder).rglob("*.py"):
            if path == ROOT / "compiler" / "console.py":
                continue
            text = path.read_text(encoding="utf-8")
            for needle in ("\\033[", "\\x1b[", "isatty(", "get_terminal_size("):
                assert needle not in text, f"{path.relative_to(ROOT)} uses {needle}"


def _unit(name: str) -> str | None:
    """The daemon package or top-level module an imported name belongs to."""
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "daemon" and len(parts) > 1 else None


def _layer_of() -> dict[str, int]:
    return {unit: level for level, units in enumerate(LAYERS) for unit in units}


def test_every_daemon_module_has_a_layer():
    layer = _layer_of()
    for file in _imports(ROOT / "daemon"):
        unit = _unit(Path(file).with_suffix("").as_posix().replace("/", "."))
        if unit is None or unit == "daemon.__init__":
            continue
        assert unit in layer, f"{file}: place {unit} in a layer of LAYERS (this test's docstring)"


def test_no_daemon_package_imports_one_above_or_beside_it():
    layer = _layer_of()
    for file, names in _imports(ROOT / "daemon").items():
        own = _unit(Path(file).with_suffix("").as_posix().replace("/", "."))
        if own is None or own not in layer:
            continue
        for name in names:
            other = _unit(name)
            if other is None or other == own or other not in layer:
                continue  # `from daemon import ids` names daemon.ids too: it is checked
            assert layer[other] < layer[own], (
                f"{file} ({own}, layer {layer[own]}) imports {name} ({other}, layer"
                f" {layer[other]}): a package imports only from layers below its own")


def test_the_domain_model_imports_nothing_of_the_daemon():
    for file in ("daemon/domain.py", "daemon/ids.py"):
        names = _imports(ROOT / "daemon")[file]
        bad = {n for n in names if n.split(".")[0] in ("daemon", "compiler", "flowplan", "grpc")}
        assert not bad, f"{file} is the leaf of the daemon and imports {bad}"


def test_generated_grpc_code_is_imported_only_at_the_edge():
    layer = _layer_of()
    for file, names in _imports(ROOT / "daemon").items():
        own = _unit(Path(file).with_suffix("").as_posix().replace("/", "."))
        if own is None or layer.get(own, EDGE) >= EDGE:
            continue
        bad = {n for n in names if n.split(".")[0] in ("flowplan", "grpc", "google")}
        assert not bad, f"{file} ({own}, layer {layer[own]}) imports {bad}: protobuf and gRPC"\
                        " are translated at the edge (daemon/server/convert.py)"
