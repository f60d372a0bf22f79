"""The config schema's documentation, read from the schema's own source.

Each field of the dataclasses in :mod:`featdistill.config` is documented by the ``# comment`` at the end of
its line; a section (a field whose type is itself a dataclass) by the first sentence of that class's
docstring. Reading them from the source keeps the printed config and the schema from drifting apart.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import sys
import tokenize
import typing
from functools import cache


def _plain(text: str) -> str:
    """Docstring markup removed: ``name`` becomes name."""
    return text.replace("``", "").strip()


@cache
def _line_comments(module_name: str) -> tuple[str, dict[int, str]]:
    """The source of a module and its end-of-line comments by line number."""
    source = inspect.getsource(sys.modules[module_name])
    comments = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    return source, comments


def _class_node(cls: type) -> ast.ClassDef:
    source, _ = _line_comments(cls.__module__)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
            return node
    raise LookupError(f"class {cls.__name__} not found in the source of {cls.__module__}")


def _section_doc(cls: type) -> str:
    first_sentence = (cls.__doc__ or "").strip().split(". ")[0].rstrip(".")
    doc = _plain(first_sentence)
    return doc[:1].lower() + doc[1:]


def field_docs(cls: type) -> dict[str, str]:
    """``{field name: its documentation}`` for one schema dataclass ("" where a field has none)."""
    _, comments = _line_comments(cls.__module__)
    lines = {}
    for statement in _class_node(cls).body:
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            span = range(statement.lineno, (statement.end_lineno or statement.lineno) + 1)
            lines[statement.target.id] = next((comments[n] for n in span if n in comments), "")
    hints = typing.get_type_hints(cls)
    docs = {}
    for f in dataclasses.fields(cls):
        doc = _plain(lines.get(f.name, ""))
        if not doc and dataclasses.is_dataclass(hints[f.name]):
            doc = _section_doc(hints[f.name])
        docs[f.name] = doc
    return docs
