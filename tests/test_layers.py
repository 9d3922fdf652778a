"""The import graph, read from the source with `ast`: imports point one way
(reactor -> transports, process -> options, logs -> handlers -> store), and
the client beside the server imports none of it."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SETUP = {"process", "options", "logs"}
SERVER = {"reactor", "transports", "handlers", "store", "commands"} | SETUP


def sources(name):
    """The files of a top-level module or package (none if it is absent)."""
    package = ROOT / name
    if package.is_dir():
        return sorted(package.rglob("*.py"))
    module = ROOT / f"{name}.py"
    return [module] if module.exists() else []


def imported(name):
    """The top-level names the module or package imports (relative imports
    stay inside it and are left out)."""
    names = set()
    for path in sources(name):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def test_store_imports_no_upper_layer():
    assert not imported("store") & (SERVER - {"store"})


def test_commands_imports_neither_handlers_nor_reactor():
    assert sources("commands")
    assert not imported("commands") & ({"handlers", "reactor", "transports"} | SETUP)


def test_handlers_imports_neither_the_loop_nor_the_set_up():
    assert not imported("handlers") & ({"reactor", "transports"} | SETUP)


def test_cli_imports_none_of_the_servers_modules():
    assert not imported("cli") & SERVER


@pytest.mark.parametrize("module", sorted(SETUP))
def test_the_set_up_modules_do_not_import_the_reactor(module):
    assert not imported(module) & {"reactor", "transports"}


def test_transports_import_nothing_of_the_server():
    assert not imported("transports") & SERVER
