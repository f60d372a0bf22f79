"""The documentation's code, as the tests read it: the ```` ```python ```` blocks and the ``featdistill ...``
command lines of README.md and docs/**/*.md.

A python block runs as written (tests/test_docs.py) unless the line just above it is an HTML comment:
``<!-- run by tests/test_x.py -->`` (that test runs it with its own set-up and checks its result) or
``<!-- not run: why -->`` (it cannot run here; the reason is required). docs/contributing.md says so too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_BLOCK = re.compile(r"(?:<!-- (?P<marker>[^\n]*?) -->\n)?```python\n(?P<code>.*?)```", flags=re.S)


@dataclass(frozen=True)
class Block:
    """One python block: its page (relative to the repository), first line, code and marker (None: run it)."""

    page: str
    line: int
    code: str
    marker: str | None

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def pages() -> list[str]:
    """README.md and every page of docs/, relative to the repository."""
    docs = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").rglob("*.md"))
    return ["README.md", *docs]


def text(page: str) -> str:
    return (REPO / page).read_text()


def python_blocks(page: str) -> list[Block]:
    source = text(page)
    return [
        Block(page, source.count("\n", 0, m.start("code")) + 1, m.group("code"), m.group("marker"))
        for m in _BLOCK.finditer(source)
    ]


def python_block(page: str, contains: str) -> str:
    """The one python block of ``page`` whose code contains ``contains``."""
    (block,) = [b.code for b in python_blocks(page) if contains in b.code]
    return block


def section(page: str, heading: str) -> str:
    """The text of the ``## heading`` section of ``page``, up to the next ``## `` heading or the end."""
    match = re.search(rf"\n## {re.escape(heading)}\n(.*?)(?=\n## |\Z)", text(page), flags=re.S)
    assert match, f"{page} has no section '## {heading}'"
    return match.group(1)


def command_lines(page: str, heading: str) -> list[str]:
    """The indented ``featdistill ...`` lines of a section (four-space code lines)."""
    return re.findall(r"^    (featdistill .+)$", section(page, heading), flags=re.M)
