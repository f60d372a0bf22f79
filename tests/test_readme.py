"""The README's own-loop example runs exactly as written, and CI runs the README's test command."""

import re

from conftest import REPO
from doc_blocks import python_block, text


def test_readme_example_runs_as_written():
    namespace: dict = {}
    exec(compile(python_block("README.md", "fd.Distiller("), "README.md", "exec"), namespace)
    student = namespace["student"]
    assert type(student).__name__ == "ResNet"
    assert all(not m._forward_hooks for m in student.modules())
    assert namespace["loss"].dim() == 0


def test_getting_started_shows_the_readme_example():
    """docs/getting_started.md repeats the example above, so running it once covers both."""
    example = python_block("README.md", "fd.Distiller(")
    assert python_block("docs/getting_started.md", "fd.Distiller(") == example


def test_ci_runs_the_readme_test_command():
    test_command = re.search(r"Run the tests:\n\n    (.+)\n", text("README.md")).group(1)
    assert test_command in (REPO / ".ci" / "run").read_text()
