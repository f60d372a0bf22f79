"""The README's own-loop example runs exactly as written, and CI runs the README's test command."""

import re

from conftest import REPO


def _readme() -> str:
    return (REPO / "README.md").read_text()


def test_readme_example_runs_as_written():
    blocks = re.findall(r"```python\n(.*?)```", _readme(), flags=re.S)
    assert blocks, "README has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    student = namespace["student"]
    assert type(student).__name__ == "ResNet"
    assert all(not m._forward_hooks for m in student.modules())
    assert namespace["loss"].dim() == 0


def test_ci_runs_the_readme_test_command():
    test_command = re.search(r"Run the tests:\n\n    (.+)\n", _readme()).group(1)
    assert test_command in (REPO / ".ci" / "run").read_text()
