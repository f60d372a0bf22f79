"""Imports point one way, bottom up: no circle between modules, no import of a higher layer.

Every import of every module under ``src/featdistill`` is read with ``ast`` (absolute and relative ones, those
inside functions and under ``if TYPE_CHECKING`` too) and checked against :data:`LAYERS`. A module may import its
own layer and the layers below; modules of one layer may import each other, but never in a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "featdistill"

#: The layers, bottom first: each names the modules (a package covers its submodules) it holds.
LAYERS: list[tuple[str, ...]] = [
    ("featdistill.suggest", "featdistill.version"),  # did-you-mean, the version string
    ("featdistill.config", "featdistill.config_docs"),  # the config schema, its validation and docs
    ("featdistill.losses", "featdistill.transforms", "featdistill.taps"),  # compare, align, read features
    ("featdistill.distiller",),  # orchestrate: pairs, methods, α, teachers
    ("featdistill.engine",),  # train: loop, trainer, checkpoints, loaders, DDP
    ("featdistill.integrations",),  # the Distiller inside Lightning / Hugging Face training
    ("featdistill.weights",),  # weights by name (torchvision, timm, hf:), for the tasks' model builders
    ("featdistill.tasks",),  # the task contract and its plug-ins; decoding and pixel preprocessing
    ("featdistill.card",),  # the student card: its data, read, write, checks
    ("featdistill.run",),  # a config to ready trainers
    ("featdistill.export", "featdistill.hf_export", "featdistill.predict"),  # use a trained student
    ("featdistill.sweep",),  # many runs: sweep, compare
    ("featdistill.demo",),  # the demo: a compare of its own
    ("featdistill.cli", "featdistill.__main__"),  # the command line
    ("featdistill",),  # the package's own __init__: the public names, re-exported
]


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    modules = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def layer_of(module: str) -> int:
    """The index in :data:`LAYERS` of the longest prefix naming ``module``."""
    best, index = -1, -1
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, index = len(name), i
    if index < 0:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layering.py")
    return index


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int, str]]:
    """``(imported module, line, source text)`` for every import of the package in ``path``."""
    is_package = path.name == "__init__.py"
    source = path.read_text()
    found = []
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            # ``from pkg import name``: the submodule pkg.name when there is one, else pkg itself
            targets = [
                f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in modules else origin
                for alias in node.names
            ]
        else:
            continue
        text = ast.get_source_segment(source, node) or ""
        for target in dict.fromkeys(targets):  # once per module, however many names it gives
            while target and target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]  # import a.b.c where c is a name: the module a.b
            if target in modules and target != module:
                found.append((target, node.lineno, " ".join(text.split())))
    return found


def import_graph() -> tuple[dict[str, Path], dict[str, list[tuple[str, int, str]]]]:
    modules = module_files()
    return modules, {name: imports_of(name, path, modules) for name, path in modules.items()}


def where(modules: dict[str, Path], module: str, line: int) -> str:
    return f"{modules[module].relative_to(SRC.parent)}:{line}"


def upward_imports(modules: dict[str, Path], graph: dict[str, list[tuple[str, int, str]]]) -> list[str]:
    """Each import of a module in a higher layer, as ``file:line: import (layer -> higher layer)``."""
    found = []
    for module, edges in graph.items():
        own = layer_of(module)
        for target, line, text in edges:
            if layer_of(target) > own:
                found.append(
                    f"{where(modules, module, line)}: {text!r} imports {target}, a higher layer "
                    f"(layer {own} -> layer {layer_of(target)}, see LAYERS)"
                )
    return found


def circles(graph: dict[str, list[tuple[str, int, str]]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target, _, _ in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_layer() -> None:
    for module in module_files():
        layer_of(module)


def test_no_import_points_up() -> None:
    modules, graph = import_graph()
    upward = upward_imports(modules, graph)
    assert not upward, "imports that point up:\n" + "\n".join(upward)


def test_no_import_circle() -> None:
    modules, graph = import_graph()
    described = []
    for component in circles(graph):
        members = set(component)
        ties = [
            f"  {where(modules, module, line)}: {text!r}"
            for module in component
            for target, line, text in graph[module]
            if target in members
        ]
        described.append(f"circle of {', '.join(component)}:\n" + "\n".join(ties))
    assert not described, "import circles:\n" + "\n".join(described)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from ..engine import Trainer", "featdistill.engine"),
        ("from .registry import task_class", "featdistill.tasks.registry"),
        ("from . import registry", "featdistill.tasks.registry"),
        ("import featdistill.engine.trainer as t", "featdistill.engine.trainer"),
        ("from featdistill.card import read_card", "featdistill.card"),
    ],
)
def test_imports_are_read_as_written(tmp_path: Path, source: str, expected: str) -> None:
    """The reader resolves relative, absolute and submodule imports, also inside a function."""
    path = tmp_path / "base.py"
    path.write_text(f"def f():\n    if True:\n        {source}\n")
    modules = module_files()
    (edge,) = imports_of("featdistill.tasks.base", path, modules)
    assert edge[0] == expected and edge[1] == 3


def test_a_circle_and_an_upward_import_are_found() -> None:
    """The checks themselves: a made-up graph with one circle and one import of a higher layer."""
    modules = {name: SRC / PACKAGE / "x.py" for name in ("featdistill.engine.a", "featdistill.engine.b")}
    graph = {
        "featdistill.engine.a": [("featdistill.engine.b", 1, "from .b import x")],
        "featdistill.engine.b": [("featdistill.engine.a", 2, "from .a import y")],
    }
    assert circles(graph) == [["featdistill.engine.a", "featdistill.engine.b"]]
    modules["featdistill.card"] = SRC / PACKAGE / "card.py"
    graph["featdistill.engine.a"].append(("featdistill.card", 3, "from ..card import student_card"))
    graph["featdistill.card"] = []
    (upward,) = upward_imports(modules, graph)
    assert "from ..card import student_card" in upward and "layer 4 -> layer 8" in upward


def test_a_config_checks_its_task_name_without_importing_the_plug_in() -> None:
    """``task: detection`` is checked by name: parsing the config loads no plug-in (nor pycocotools)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from featdistill.config import ConfigError, parse_config\n"
        "parse_config({'task': 'detection', 'data': {'name': 'coco', 'root': '.'}, 'model': {'student': 's'}})\n"
        "try:\n"
        "    parse_config({'task': 'detectoin', 'data': {'name': 'coco', 'root': '.'}, 'model': {'student': 's'}})\n"
        "except ConfigError as err:\n"
        "    assert \"did you mean 'detection'\" in str(err), err\n"
        "else:\n"
        "    raise AssertionError('an unknown task was accepted')\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('pycocotools', 'featdistill.tasks.detection')))\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_no_private_name_is_imported_from_another_module() -> None:
    """A ``_name`` is its module's own: a name other modules use is public, with a docstring saying what it is."""
    modules = module_files()
    found = []
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom) or not (
                node.level or (node.module or "").startswith(PACKAGE)
            ):
                continue
            private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
            if private:
                found.append(f"{where(modules, module, node.lineno)}: imports {', '.join(private)}")
    assert not found, "private names imported across modules:\n" + "\n".join(found)
